# Export with per-block widths: models made from the fixture with mpiprune's own code path
# (tests/make_pruned_model.c), evaluated by `mpiprune eval` against a float64 reference and
# loaded by Hugging Face transformers (Debian's python3-torch, so /usr/bin/python3).
add_executable(make_pruned_model ${CMAKE_CURRENT_SOURCE_DIR}/make_pruned_model.c)
target_link_libraries(make_pruned_model PRIVATE mpiprune)
set(MP_SYSTEM_PYTHON /usr/bin/python3 CACHE FILEPATH
    "Python with torch and transformers for the loader tests (Debian's python3-torch)")
add_test(NAME hf_export_loaders
         COMMAND ${MP_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_hf_export.py
                 $<TARGET_FILE:make_pruned_model> ${MP_CLI} ${MP_FIXTURE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/work/hf_export)
set_tests_properties(hf_export_loaders PROPERTIES TIMEOUT 300 LABELS "io;python;hf"
                     ENVIRONMENT "${MP_TEST_ENV}")
