# The model forward: kernels and whole small models against float64 references.
mp_add_unit_test(test_layers SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_layers.c
                 LABELS model TIMEOUT 60)
mp_add_unit_test(test_model_ref SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_ref.c
                 LABELS model TIMEOUT 120)
# The float64 backward pass against finite differences.
mp_add_unit_test(test_grad SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_grad.c
                 LABELS model grad TIMEOUT 120)
# Status messages and the allocation hook.
mp_add_unit_test(test_status SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_status.c
                 LABELS status TIMEOUT 30)
# `mpiprune scores` (the gradient pass) on stories260K against Hugging Face transformers in
# float64 with mask variables, autograd per window; 1 and 2 ranks bit-identical.
add_test(NAME grad_scores_reference
         COMMAND ${MP_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_grad.py ${MPIEXEC_EXECUTABLE} ${MP_CLI}
                 ${MP_FIXTURE_DIR} ${MP_FIXTURE_DIR}/calib.bin
                 ${CMAKE_CURRENT_BINARY_DIR}/work/grad_scores)
set_tests_properties(grad_scores_reference PROPERTIES TIMEOUT 300 LABELS "model;grad;python;hf"
                     PROCESSORS 2 ENVIRONMENT "${MP_TEST_ENV}")
# `scores` refuses bad input with one line.
mp_add_fail_test(scores_missing_data EXIT 3 REGEX "/nonexistent/calib.bin: no such file"
  COMMAND ${MP_CLI} scores --model ${MP_FIXTURE_DIR} --data /nonexistent/calib.bin --seqlen 64)
mp_add_fail_test(scores_seqlen_max_pos EXIT 3 REGEX "config.json: --seqlen 100000 exceeds"
  COMMAND ${MP_CLI} scores --model ${MP_FIXTURE_DIR} --data ${MP_FIXTURE_DIR}/calib.bin
          --seqlen 100000)
mp_add_fail_test(scores_bad_memory EXIT 2 REGEX "--max-memory: 0 is outside"
  COMMAND ${MP_CLI} scores --model ${MP_FIXTURE_DIR} --data ${MP_FIXTURE_DIR}/calib.bin
          --max-memory 0)
# --compute bf16's products against float64 on the rounded inputs, with the default backend
# (oneDNN where the CPU has bf16 kernels) and with the emulation.
mp_add_unit_test(test_bf16 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bf16.c
                 LABELS "model;bf16" TIMEOUT 120)
add_test(NAME test_bf16_emulated COMMAND test_bf16)
set_tests_properties(test_bf16_emulated PROPERTIES TIMEOUT 120 LABELS "unit;model;bf16"
                     ENVIRONMENT "${MP_TEST_ENV};MPIPRUNE_BF16_EMULATE=1")
# mp_alloc_keep_freed: large blocks from the heap and kept there (and glibc's defaults under
# MPIPRUNE_MALLOC_DEFAULT). Not under the sanitizers: their allocator replaces glibc's.
mp_add_unit_test(test_alloc_keep SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_alloc_keep.c
                 LABELS "status;nosanitize" TIMEOUT 30)
add_test(NAME test_alloc_keep_default COMMAND test_alloc_keep default)
set_tests_properties(test_alloc_keep_default PROPERTIES TIMEOUT 30
                     LABELS "unit;status;nosanitize"
                     ENVIRONMENT "${MP_TEST_ENV};MPIPRUNE_MALLOC_DEFAULT=1")
