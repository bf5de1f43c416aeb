# Structured pruning (--method structured): the whole run on the bundled stories260K checked
# against its budget, the float64 reference, transformers, 2 ranks, the uniform allocation, a
# FLOPs budget, --then sparsegpt and FLAP's --bias-compensation (tests/check_structured.py); a
# search stopped by SIGTERM and a final pass killed with SIGKILL resume to the same bytes, on
# 2 ranks with --bias-compensation (check_structured_resume.py); bad
# structured options and budgets are refused with one line and no output.
add_test(NAME structured_search
         COMMAND ${MP_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_structured.py
                 ${MPIEXEC_EXECUTABLE} ${MP_CLI} $<TARGET_FILE:make_pruned_model>
                 ${MP_FIXTURE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/work/structured)
set_tests_properties(structured_search PROPERTIES TIMEOUT 600 LABELS "structured;python;hf"
                     PROCESSORS 2 ENVIRONMENT "${MP_TEST_ENV}")
# On 2 ranks with --bias-compensation: its biases are broadcast and checkpointed too.
set(MP_RESUME_EXTRA_1 "")
set(MP_RESUME_EXTRA_2 --bias-compensation)
foreach(np 1 2)
  add_test(NAME structured_resume_np${np}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_structured_resume.py
                   ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR}
                   ${CMAKE_CURRENT_BINARY_DIR}/work/structured_resume_np${np} ${np}
                   ${MP_RESUME_EXTRA_${np}})
  set_tests_properties(structured_resume_np${np} PROPERTIES TIMEOUT 600 LABELS "structured;ckpt"
                       PROCESSORS ${np} ENVIRONMENT "${MP_TEST_ENV}")
endforeach()

# Bad options: exit 2, one line, no OUT.
mp_pio_fail_test(structured_bad_target EXIT 2 REGEX "--target: 'params=1.5'|kept fraction"
  ARGS --method structured --target params=1.5)
mp_pio_fail_test(structured_bad_target_kind EXIT 2 REGEX "--target: 'latency=0.5' is not"
  ARGS --method structured --target latency=0.5)
mp_pio_fail_test(structured_bad_units EXIT 2 REGEX "--units: 'neurons' is not a unit"
  ARGS --method structured --units kv-groups,neurons)
mp_pio_fail_test(structured_bad_units_empty EXIT 2 REGEX "--units: 'heads,,ffn' has an empty"
  ARGS --method structured --units heads,,ffn)
mp_pio_fail_test(structured_bad_min_keep EXIT 2 REGEX "--min-keep: 'ffn=x' is not"
  ARGS --method structured --min-keep kv=1,ffn=x)
mp_pio_fail_test(structured_bad_then EXIT 2 REGEX "--then: 'wanda' is not one of sparsegpt"
  ARGS --method structured --then wanda)
# A budget the floors forbid: refused after the first round's scores, before OUT exists.
mp_pio_fail_test(structured_budget_unreachable EXIT 2 REGEX "--target params=0.05 cannot be met"
  NP 2 ARGS --method structured --target params=0.05 --rounds 1)
# N:M after the search needs every planned input width to be a multiple of M.
mp_pio_fail_test(structured_then_nm_width EXIT 2 REGEX "--nm 2:64: .* not a multiple of 64"
  ARGS --method structured --target params=0.9 --rounds 1 --units ffn --ffn-multiple 8
       --then sparsegpt --nm 2:64)

# NViT's EMA of gradient scores across rounds (--score-ema): the EMA state travels in the
# search checkpoint, so a search stopped after round 1 resumes to the same bytes.
add_test(NAME structured_resume_ema
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_structured_resume.py
                 ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/work/structured_resume_ema 1 --score nvit
                 --score-ema 0.5 --nsamples 16)
set_tests_properties(structured_resume_ema PROPERTIES TIMEOUT 600 LABELS "structured;ckpt"
                     PROCESSORS 1 ENVIRONMENT "${MP_TEST_ENV}")
mp_pio_fail_test(structured_bad_ema EXIT 2 REGEX "--score-ema averages gradient scores"
  ARGS --method structured --score obs --score-ema 0.5)

# --method kwon (Kwon et al.'s mask search, rearrangement and mask tuning): killed in the final
# pass on 2 ranks, the resumed job recomputes the unpruned model's hidden states for its mask
# tuning and writes the same bytes.
add_test(NAME structured_resume_kwon
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_structured_resume.py
                 ${MPIEXEC_EXECUTABLE} ${MP_CLI} ${MP_FIXTURE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/work/structured_resume_kwon 2 kwon)
set_tests_properties(structured_resume_kwon PROPERTIES TIMEOUT 600 LABELS "structured;ckpt"
                     PROCESSORS 2 ENVIRONMENT "${MP_TEST_ENV}")
mp_pio_fail_test(kwon_bad_score EXIT 2 REGEX "--method kwon ranks by the Fisher of mask variables"
  ARGS --method kwon --score nvit)
mp_pio_fail_test(kwon_bad_allocation EXIT 2 REGEX "--method kwon searches globally"
  ARGS --method kwon --allocation uniform)
mp_pio_fail_test(kwon_bad_sublayers EXIT 2 REGEX "--units sublayers is for --method structured"
  ARGS --method kwon --units kv-groups,ffn,sublayers)
mp_pio_fail_test(structured_bad_scale EXIT 2 REGEX "--compensation scale \\(mask tuning\\) is part of --method kwon"
  ARGS --method structured --compensation scale)
# Floors above the budget: refused after the gradient pass, before OUT exists.
mp_pio_fail_test(kwon_budget_unreachable EXIT 2 REGEX "--target params=0.05 cannot be met"
  NP 2 ARGS --method kwon --target params=0.05)
