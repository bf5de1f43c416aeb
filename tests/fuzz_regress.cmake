# The fuzzers' kept inputs (tests/fuzz/regress/<target>/), replayed through the harness entry
# points in the normal build; and the allocation-failure sweeps of eval and prune.
mp_add_unit_test(test_fuzz_regress
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_fuzz_regress.c ${PROJECT_SOURCE_DIR}/fuzz/mp_fuzz.c
  LABELS "io;fuzz" TIMEOUT 120 ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/regress)
target_include_directories(test_fuzz_regress PRIVATE ${PROJECT_SOURCE_DIR}/fuzz
                           ${HDF5_C_INCLUDE_DIRS})

# Sweeps: every N (or a strided sample, printed) of MPIPRUNE_FAIL_ALLOC must end in success or
# exit 4 with one error line; runs are slower under the sanitizers, so fewer there.
# (Measured on the shared 2-core machine at load ~11: 150 runs of eval took 106 s here; under
# ASan, with the slow unwinding the leak suppressions need, 40 runs took 440 s, hence 24.)
if(MPIPRUNE_SANITIZE)
  set(MP_OOM_RUNS 24)
else()
  set(MP_OOM_RUNS 150)
endif()
foreach(mode eval prune structured gradient kwon)
  mp_add_cli_test(oom_sweep_${mode} TIMEOUT 600 LABELS "badinput;oom"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_oom_sweep.py ${mode}
            ${MP_CLI} ${MP_FIXTURE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/oom_${mode} ${MP_OOM_RUNS})
endforeach()
