# prune: acceptance against the reference numbers of the fixture README, output format checks,
# and bad input.
set(MP_PRUNE_WORK ${CMAKE_CURRENT_BINARY_DIR}/prune_work)
foreach(case "sparsegpt;0.5" "sparsegpt;2:4" "wanda;0.5" "magnitude;0.5")
  list(GET case 0 method)
  list(GET case 1 target)
  string(REPLACE ":" "of" tname "${method}_${target}")
  mp_add_cli_test(prune_accept_${tname} TIMEOUT 900 LABELS "prune;accept"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_prune.py
            ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_PRUNE_WORK}
            ${method} ${target})
  set_tests_properties(prune_accept_${tname} PROPERTIES PROCESSORS 2)
endforeach()

# --compute bf16: rank counts, resume, the emulation, perplexity against the float32 reference.
mp_add_cli_test(prune_bf16 TIMEOUT 600 LABELS "prune;bf16"
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_bf16.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_PRUNE_WORK}/bf16)
set_tests_properties(prune_bf16 PROPERTIES PROCESSORS 2)

# Dead inputs (an input zero on every calibration token) through the SparseGPT pipeline.
mp_add_cli_test(prune_dead_inputs TIMEOUT 300 LABELS "prune"
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_dead_inputs.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_PRUNE_WORK}/dead)
set_tests_properties(prune_dead_inputs PROPERTIES PROCESSORS 2)
