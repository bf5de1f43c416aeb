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
