/* mp_blasinfo: whether the BLAS library runs kernels made for this CPU.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels at load time from the CPU it recognises;
 * a CPU newer than the build (Debian's 0.3.21 on recent Xeons) falls back to the generic
 * Prescott (SSE3) kernels, several times slower than its AVX2 / AVX-512 ones. The variable
 * OPENBLAS_CORETYPE, read when the library loads, selects others.
 */
#ifndef MP_BLASINFO_H
#define MP_BLASINFO_H

#include <stdbool.h>
#include <stddef.h>

#include "mp_comm.h"

/* The kernel set OpenBLAS runs ("Prescott", "SkylakeX", ...). */
const char *mp_blas_corename(void);
/* Whether kernels named `core` are generic ones (no AVX2) on a CPU that has AVX2 or AVX-512
 * (`avx2`, `avx512`): true with *suggest the OPENBLAS_CORETYPE to use ("SkylakeX" for AVX-512,
 * "Haswell" for AVX2); false when they fit, and then *suggest is NULL. */
bool mp_blas_kernels_lag(const char *core, bool avx2, bool avx512, const char **suggest);
/* A one-sentence warning in buf[len] when this process's BLAS kernels lag its CPU (see
 * above); false (buf untouched) when they fit or the CPU is not x86-64. */
bool mp_blas_kernel_warning(char *buf, size_t len);

/* OpenBLAS's threads per rank, set unless the user chose them (OPENBLAS_NUM_THREADS,
 * GOTO_NUM_THREADS or OMP_NUM_THREADS set): the CPUs this rank may run on, shared out among the
 * ranks of this node that may run on the same CPUs. OpenBLAS by itself starts one thread per
 * CPU in every rank, so `mpirun -n 2` on 2 cores ran 4 spinning threads on 2 cores. A note of
 * what was chosen goes to note[len]. Collective over c. Returns the thread count in use. */
int mp_blas_fit_threads(const mp_comm *c, char *note, size_t len);
/* OpenBLAS's threads in this process now. */
int mp_blas_threads(void);
/* The note of the last mp_blas_fit_threads ("" before it). */
const char *mp_blas_threads_note(void);

#endif
