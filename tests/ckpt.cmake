# Checkpoints: kill -9 at random moments and inside checkpoint writes, resume on another rank
# count, damaged checkpoints and checkpoints of other jobs refused.
set(MP_CKPT_WORK ${CMAKE_CURRENT_BINARY_DIR}/ckpt_work)
# Debian's h5py lives with the system Python.
find_program(MP_SYSTEM_PYTHON python3 PATHS /usr/bin NO_DEFAULT_PATH REQUIRED)
set(MP_FAULTS
  "ckpt_block_written:2,ckpt_hidden_partial:1,ckpt_hidden_written:1,ckpt_main_written:3,ckpt_main_renamed:2")
mp_add_cli_test(ckpt_kill_resume_p2 TIMEOUT 1200 LABELS ckpt
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_kill_resume.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/p2 2 0 16 ${MP_FAULTS})
mp_add_cli_test(ckpt_kill_resume_p1 TIMEOUT 900 LABELS ckpt
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_kill_resume.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/p1 1 100 4
          "ckpt_hidden_partial:1,ckpt_main_written:2")
mp_add_cli_test(ckpt_refuse_and_move TIMEOUT 900 LABELS ckpt
  COMMAND ${MP_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_ckpt.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/refuse)
set_tests_properties(ckpt_kill_resume_p2 ckpt_refuse_and_move PROPERTIES PROCESSORS 2)

# A nearly full file system (a small tmpfs mounted by the test; root only, else skipped): a
# checkpoint or output write that runs out of room ends with one error line naming the file,
# no crash, and nothing half-written.
foreach(mode ckpt out)
  mp_add_cli_test(ckpt_small_fs_${mode} TIMEOUT 600 LABELS "ckpt;io"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_small_fs.py ${mode}
            ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/small_fs_${mode} 2)
  set_tests_properties(ckpt_small_fs_${mode} PROPERTIES PROCESSORS 2 SKIP_RETURN_CODE 77)
endforeach()

# Crafted checkpoints (h5py): attributes and datasets of unexpected rank, size or type, /report
# records of unknown layers; each refused by status and by a resume with one line, exit 3.
mp_add_cli_test(ckpt_crafted TIMEOUT 900 LABELS "ckpt;badinput"
  COMMAND ${MP_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_ckpt_crafted.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/crafted)
set_tests_properties(ckpt_crafted PROPERTIES PROCESSORS 2)

# Durability: each checkpoint file is synced before its rename and its folder after it (strace).
mp_add_cli_test(ckpt_fsync TIMEOUT 300 LABELS ckpt
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_ckpt_fsync.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_CKPT_WORK}/fsync)
set_tests_properties(ckpt_fsync PROPERTIES SKIP_RETURN_CODE 77)
