# Solvers: SparseGPT (mp_obs_prepare + mp_sparsegpt_sweep) against an independent float64
# brute-force reference, dead inputs, damping escalation, Wanda, magnitude, mp_kth_smallest,
# mp_recon_error and mp_hessian. Serial, no MPI ranks.
mp_add_unit_test(test_prune SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_prune.c
                 LABELS solvers TIMEOUT 120)
# Structured OBS: removing input groups against the least-squares optimum in float64.
mp_add_unit_test(test_struct SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_struct.c
                 LABELS solvers TIMEOUT 60)
# A block's removal chains (structured scorers), their costs and plans.
mp_add_unit_test(test_chain SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_chain.c
                 LABELS solvers TIMEOUT 60)
# OpenBLAS's generic kernels on an AVX2/AVX-512 CPU: the rule, and the warning `eval` prints
# under OPENBLAS_CORETYPE=Prescott exactly when this CPU has AVX2 (and never under --quiet).
mp_add_unit_test(test_blasinfo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_blasinfo.c
                 LABELS solvers TIMEOUT 30)
add_test(NAME blas_kernel_warning
         COMMAND bash -c "set -o pipefail
  args=(eval --model \"$1\" --data \"$1/eval_dev.bin\" --seqlen 256 --max-windows 2)
  err=$(OPENBLAS_CORETYPE=Prescott \"$0\" \"\${args[@]}\" 2>&1 >/dev/null) || exit 1
  quiet=$(OPENBLAS_CORETYPE=Prescott \"$0\" \"\${args[@]}\" --quiet 2>&1 >/dev/null) || exit 1
  if grep -qw avx2 /proc/cpuinfo; then
    grep -q 'warning: OpenBLAS runs its Prescott kernels .* OPENBLAS_CORETYPE=' <<<\"$err\" || exit 1
  else
    ! grep -q 'warning: OpenBLAS' <<<\"$err\" || exit 1
  fi
  [ -z \"$quiet\" ]" ${MP_CLI} ${MP_FIXTURE_DIR})
set_tests_properties(blas_kernel_warning PROPERTIES TIMEOUT 60 LABELS "solvers;cli"
                     ENVIRONMENT "${MP_TEST_ENV}")
