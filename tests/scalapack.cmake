# The ScaLAPACK path: distributed factorisation and row-split SparseGPT sweep against the
# serial LAPACK path, forced on small matrices, on 1x2, 1x3 and 2x2 BLACS grids.
mp_add_unit_test(test_scalapack SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_scalapack.c
                 NP 2 LABELS scalapack mpi TIMEOUT 120)
mp_add_unit_test(test_scalapack NP 3 LABELS scalapack mpi TIMEOUT 120)
mp_add_unit_test(test_scalapack NP 4 LABELS scalapack mpi TIMEOUT 120)
