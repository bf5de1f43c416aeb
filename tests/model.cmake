# The model forward: kernels and whole small models against float64 references.
mp_add_unit_test(test_layers SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_layers.c
                 LABELS model TIMEOUT 60)
mp_add_unit_test(test_model_ref SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_ref.c
                 LABELS model TIMEOUT 120)
# Status messages and the allocation hook.
mp_add_unit_test(test_status SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_status.c
                 LABELS status TIMEOUT 30)
