# search/: the global selection, schedule and normalisation (pure functions, no MPI).
mp_add_unit_test(test_search SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_search.c
                 LABELS search TIMEOUT 60)
