# cmake --install: binary, library, headers and pkg-config file usable by another program.
# Not under the sanitizers: the test program is built without them.
add_test(NAME install_pkgconfig
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_install.sh ${PROJECT_BINARY_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/install_work)
set_tests_properties(install_pkgconfig PROPERTIES LABELS "nosanitize;install" TIMEOUT 120)
