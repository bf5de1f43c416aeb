# eval: the acceptance numbers on the bundled model, and the CLI's usage errors.
mp_add_cli_test(eval_fixture_p123 TIMEOUT 600 LABELS eval
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_eval.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_FIXTURE_DIR}/eval_dev.bin)
mp_add_cli_test(eval_help COMMAND bash -c "\"$0\" eval --help | grep -q 'seqlen N.*default: 2048'" ${MP_CLI})
mp_add_cli_test(top_help COMMAND bash -c "\"$0\" --help | grep -q 'Exit codes'" ${MP_CLI})
mp_add_fail_test(usage_bad_seqlen EXIT 2 REGEX "--seqlen: 'abc' is not an integer"
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data x --seqlen abc)
mp_add_fail_test(usage_seqlen_too_small EXIT 2 REGEX "--seqlen: 1 is outside"
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data x --seqlen 1)
mp_add_fail_test(usage_missing_model EXIT 2 REGEX "--model is required"
  COMMAND ${MP_CLI} eval --data x)
mp_add_fail_test(usage_unknown_option EXIT 2 REGEX "unknown option '--sparsityy'"
  COMMAND ${MP_CLI} eval --model m --data x --sparsityy 3)
mp_add_fail_test(usage_unknown_command EXIT 2 REGEX "unknown command 'evaluate'"
  COMMAND ${MP_CLI} evaluate)
mp_add_fail_test(usage_bad_seqlen_np2 EXIT 2 NP 2 REGEX "--seqlen: 'abc' is not an integer"
  COMMAND ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data x --seqlen abc)
# OpenBLAS's threads per rank: the CPUs shared out among a node's ranks unless the user set them.
mp_add_cli_test(blas_threads TIMEOUT 300 LABELS eval
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_blas_threads.py
          ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR})
set_tests_properties(blas_threads PROPERTIES PROCESSORS 2)
