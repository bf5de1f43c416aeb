# prune_io: what `mpiprune prune` leaves on disk. The output read back with the reference
# safetensors package (tests/check_output.py), selective pruning, and bad input: every refusal
# exits with its code and one error line, and leaves neither OUT nor OUT.tmp-* behind
# (tests/expect_no_output.sh around the command); a prune stopped mid-run leaves no OUT
# (tests/check_prune_midrun.py).
set(MP_PIO_WORK ${CMAKE_CURRENT_BINARY_DIR}/prune_io_work)
set(MP_PIO_CALIB ${MP_FIXTURE_DIR}/calib.bin)
set(MP_PIO_CHECK ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_output.py)
set(MP_PIO_ARGS ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_PIO_CALIB})

# The whole output, P = 2: SparseGPT 2:4 and Wanda 0.5.
mp_add_cli_test(prune_io_check_output_sparsegpt_2of4 LABELS "prune;io" TIMEOUT 300
  COMMAND ${MP_PIO_CHECK} ${MP_PIO_ARGS} ${MP_PIO_WORK}/sparsegpt_2of4 2
          --method sparsegpt --nm 2:4)
mp_add_cli_test(prune_io_check_output_wanda_0.5 LABELS "prune;io" TIMEOUT 300
  COMMAND ${MP_PIO_CHECK} ${MP_PIO_ARGS} ${MP_PIO_WORK}/wanda_0.5 2
          --method wanda --sparsity 0.5)
# Selective: only the named layers of the named blocks change; the report lists exactly them.
mp_add_cli_test(prune_io_selective LABELS "prune;io" TIMEOUT 300
  COMMAND ${MP_PIO_CHECK} --expect-pruned 4 ${MP_PIO_ARGS} ${MP_PIO_WORK}/selective 2
          --blocks 1-2 --layers q_proj,down_proj)
mp_add_cli_test(prune_io_selective_list LABELS "prune;io" TIMEOUT 300
  COMMAND ${MP_PIO_CHECK} --expect-pruned 6 ${MP_PIO_ARGS} ${MP_PIO_WORK}/selective_list 2
          --method magnitude --blocks 0,3-4 --layers q_proj,down_proj)
set_tests_properties(prune_io_check_output_sparsegpt_2of4 prune_io_check_output_wanda_0.5
                     prune_io_selective prune_io_selective_list PROPERTIES PROCESSORS 2)

# Stopped once the first pruned block is on disk (P = 1 and 2): killed with SIGKILL, no OUT;
# its temporary directory removed under it (an I/O error), exit 3, one error line, no OUT and
# no OUT.tmp-*.
foreach(mode kill vanish)
  foreach(np 1 2)
    mp_add_cli_test(prune_io_midrun_${mode}_np${np} LABELS "prune;io" TIMEOUT 300
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_prune_midrun.py ${mode}
              ${MP_PIO_ARGS} ${MP_PIO_WORK}/midrun_${mode}_np${np} ${np})
    set_tests_properties(prune_io_midrun_${mode}_np${np} PROPERTIES PROCESSORS ${np})
  endforeach()
endforeach()

# mp_pio_fail_test(NAME EXIT code REGEX re [NP n] [EXISTING] [OUT dir] [FIXTURES f...]
#                  ARGS prune-args...)
# `mpiprune prune --model FIXTURE --calib calib.bin --seqlen 256 --nsamples 8 --out OUT
# <prune-args>` must fail as mp_add_fail_test demands and leave no OUT and no OUT.tmp-*
# (OUT: work/NAME/out); EXISTING: OUT exists beforehand and must be left untouched. OUT dir:
# pass --out dir instead (somewhere under OUT, which is still the directory watched). Later
# options in ARGS replace these.
function(mp_pio_fail_test name)
  cmake_parse_arguments(T "EXISTING" "EXIT;REGEX;NP;OUT" "FIXTURES;ARGS" ${ARGN})
  set(out ${MP_PIO_WORK}/${name}/out)
  set(out_arg ${out})
  if(T_OUT)
    set(out_arg ${T_OUT})
  endif()
  set(wrap bash ${CMAKE_CURRENT_SOURCE_DIR}/expect_no_output.sh)
  if(T_EXISTING)
    list(APPEND wrap --existing)
  endif()
  set(cmd ${MP_CLI})
  if(T_NP)
    set(cmd ${MP_MPIEXEC} ${MPIEXEC_NUMPROC_FLAG} ${T_NP} ${MP_CLI})
  endif()
  set(fix)
  if(T_FIXTURES)
    set(fix FIXTURES ${T_FIXTURES})
  endif()
  # NP is not passed on: mpiexec must run inside the wrapper, not the wrapper on every rank.
  mp_add_fail_test(${name} EXIT ${T_EXIT} REGEX ${T_REGEX} ${fix} LABELS "prune;io"
    COMMAND ${wrap} ${out} -- ${cmd} prune --model ${MP_FIXTURE_DIR} --calib ${MP_PIO_CALIB}
            --seqlen 256 --nsamples 8 --quiet --out ${out_arg} ${T_ARGS})
  if(T_NP)
    set_tests_properties(${name} PROPERTIES PROCESSORS ${T_NP})
  endif()
endfunction()

mp_pio_fail_test(prune_io_bad_out_exists EXIT 2 REGEX "out.*already exists" EXISTING ARGS)
mp_pio_fail_test(prune_io_bad_out_exists_np2 EXIT 2 REGEX "out.*already exists" EXISTING NP 2
  ARGS)
mp_pio_fail_test(prune_io_bad_max_memory EXIT 4 REGEX "memory plan"
  ARGS --max-memory 0.00001)
mp_pio_fail_test(prune_io_bad_max_memory_np2 EXIT 4 REGEX "memory plan" NP 2
  ARGS --max-memory 0.00001)
mp_pio_fail_test(prune_io_bad_nsamples EXIT 3
  REGEX "calib\\.bin.*128 windows.*fewer than --nsamples 200" ARGS --nsamples 200)
mp_pio_fail_test(prune_io_bad_nsamples_np2 EXIT 3
  REGEX "calib\\.bin.*128 windows.*fewer than --nsamples 200" NP 2 ARGS --nsamples 200)
mp_pio_fail_test(prune_io_bad_nm_order EXIT 2 REGEX "--nm.*'4:2' is not N:M" ARGS --nm 4:2)
mp_pio_fail_test(prune_io_bad_nm_text EXIT 2 REGEX "--nm.*'abc' is not N:M" ARGS --nm abc)
# R6: one rule for N:M everywhere (N == M was refused by SparseGPT only; overlong digits were
# undefined behaviour in sscanf).
mp_pio_fail_test(prune_io_bad_nm_equal_wanda EXIT 2 REGEX "--nm.*'4:4' is not N:M"
  ARGS --method wanda --nm 4:4)
mp_pio_fail_test(prune_io_bad_nm_equal_magnitude EXIT 2 REGEX "--nm.*'4:4' is not N:M"
  ARGS --method magnitude --nm 4:4)
mp_pio_fail_test(prune_io_bad_nm_overlong EXIT 2
  REGEX "--nm.*'99999999999999999999:4' is not N:M" ARGS --nm 99999999999999999999:4)
mp_pio_fail_test(prune_io_bad_nm_trailing EXIT 2 REGEX "--nm.*'2:4x' is not N:M" ARGS --nm 2:4x)
mp_pio_fail_test(prune_io_bad_nm_big_m EXIT 2 REGEX "--nm.*'2:65' is not N:M" ARGS --nm 2:65)
mp_pio_fail_test(prune_io_bad_sparsity EXIT 2 REGEX "--sparsity.*1\\.5.*outside"
  ARGS --sparsity 1.5)
mp_pio_fail_test(prune_io_bad_method EXIT 2 REGEX "--method.*'foo'" ARGS --method foo)
mp_pio_fail_test(prune_io_bad_blocks EXIT 2 REGEX "--blocks.*9.*0-4" ARGS --blocks 9)
mp_pio_fail_test(prune_io_bad_blocks_np2 EXIT 2 REGEX "--blocks.*9.*0-4" NP 2 ARGS --blocks 9)
mp_pio_fail_test(prune_io_bad_layers EXIT 2 REGEX "--layers.*'foo_proj'"
  ARGS --layers foo_proj)
# eval_dev with token 600 (>= vocab 512) at position 1234, inside the first 8 windows.
mp_pio_fail_test(prune_io_bad_calib_oov EXIT 3 REGEX "tok_oov\\.bin.*600"
  FIXTURES bad_config_tokens ARGS --calib ${MP_BAD_DIR}/ct/tok_oov.bin)
mp_pio_fail_test(prune_io_bad_calib_oov_np2 EXIT 3 REGEX "tok_oov\\.bin.*600" NP 2
  FIXTURES bad_config_tokens ARGS --calib ${MP_BAD_DIR}/ct/tok_oov.bin)
mp_pio_fail_test(prune_io_bad_model_missing EXIT 3 REGEX "pio_no_such_model_dir"
  ARGS --model ${MP_BAD_DIR}/pio_no_such_model_dir)
# OUT's parent does not exist: refused when the temporary directory cannot be created.
mp_pio_fail_test(prune_io_bad_out_parent_missing EXIT 3
  REGEX "out/no_parent/out\\.tmp-[0-9]+: cannot create"
  OUT ${MP_PIO_WORK}/prune_io_bad_out_parent_missing/out/no_parent/out ARGS)

# R7: an MPI failure on one rank (injected into its 3rd broadcast) while the other waits in that
# broadcast: the job aborts with one error line instead of hanging in MPI_Finalize.
mp_add_fail_test(prune_io_mpi_failure_aborts EXIT 1 REGEX "MPI_Bcast failed" NP 2
  LABELS "prune;io"
  COMMAND env MPIPRUNE_FAULT_MPI=1:3 ${MP_CLI} prune --model ${MP_FIXTURE_DIR}
          --calib ${MP_PIO_CALIB} --seqlen 64 --nsamples 4 --quiet
          --out ${MP_PIO_WORK}/mpi_failure/out)
set_tests_properties(prune_io_mpi_failure_aborts PROPERTIES TIMEOUT 60)
