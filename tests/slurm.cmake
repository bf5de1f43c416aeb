# slurm: slurm/mpiprune.sbatch on a private one-node Slurm (tests/slurm_local.sh): signal ->
# checkpoint -> exit 75 -> requeue -> resume, byte-identical output. Needs root and the Debian
# packages slurmctld slurmd slurm-client munge (scripts/install-deps.sh --test); without them
# the tests are not registered. Run them alone with `ctest -L slurm`, leave them out with
# `ctest -LE slurm`. About 3 minutes; they run serially and use both CPUs of the node.
option(MPIPRUNE_SLURM_TESTS "register the Slurm tests when Slurm is installed" ON)

find_program(MP_SLURMCTLD slurmctld PATHS /usr/sbin)
find_program(MP_SBATCH sbatch)
find_program(MP_MUNGED munged PATHS /usr/sbin)

if(NOT MPIPRUNE_SLURM_TESTS)
  return()
endif()
if(NOT MP_SLURMCTLD OR NOT MP_SBATCH OR NOT MP_MUNGED)
  if(DEFINED ENV{CI})
    message(FATAL_ERROR "CI must run the Slurm tests: run scripts/install-deps.sh --test")
  endif()
  message(STATUS "Slurm not installed: slurm tests not registered (scripts/install-deps.sh --test)")
  return()
endif()

# One private cluster per build tree: its own directory (short, for Slurm's socket paths) and
# port pair, so that two build trees can run their slurm tests at the same time.
string(MD5 mp_slurm_hash "${CMAKE_CURRENT_BINARY_DIR}")
string(SUBSTRING "${mp_slurm_hash}" 0 3 mp_slurm_h3)
math(EXPR mp_slurm_port "20000 + 2 * 0x${mp_slurm_h3}")
string(SUBSTRING "${mp_slurm_hash}" 0 8 mp_slurm_h8)
set(MP_SLURM_DIR /tmp/mpiprune-slurm-${mp_slurm_h8})

set(MP_SLURM_WORK ${CMAKE_CURRENT_BINARY_DIR}/slurm_work)
set(MP_SLURM_ENV ${MP_TEST_ENV} MPIEXEC=${MPIEXEC_EXECUTABLE}
    MP_SLURM_DIR=${MP_SLURM_DIR} MP_SLURM_PORT=${mp_slurm_port})

function(mp_add_slurm_test case)
  add_test(NAME slurm_${case}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_slurm.sh ${case}
                   ${MP_SLURM_WORK} ${MP_CLI} ${MP_FIXTURE_DIR})
  set_tests_properties(slurm_${case} PROPERTIES LABELS "slurm;cli" TIMEOUT 600 RUN_SERIAL TRUE
                       PROCESSORS 2 SKIP_RETURN_CODE 77 ENVIRONMENT "${MP_SLURM_ENV}")
endfunction()

mp_add_slurm_test(setup)
mp_add_slurm_test(cleanup)
mp_add_slurm_test(reference)
mp_add_slurm_test(standin)
mp_add_slurm_test(signal)
mp_add_slurm_test(signal_mpirun)
mp_add_slurm_test(requeue)
mp_add_slurm_test(kill)
set_tests_properties(slurm_setup PROPERTIES FIXTURES_SETUP slurm_cluster)
set_tests_properties(slurm_cleanup PROPERTIES FIXTURES_CLEANUP slurm_cluster)
set_tests_properties(slurm_reference PROPERTIES FIXTURES_SETUP slurm_ref)
set_tests_properties(slurm_standin PROPERTIES FIXTURES_REQUIRED slurm_cluster)
set_tests_properties(slurm_signal slurm_signal_mpirun slurm_requeue slurm_kill PROPERTIES
                     FIXTURES_REQUIRED "slurm_cluster;slurm_ref")
