#include "mp_sweepk.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MP_SWEEPK_X86 1
#endif

typedef float vf __attribute__((vector_size(4 * MP_SWEEPK_VL)));
typedef int32_t vi __attribute__((vector_size(4 * MP_SWEEPK_VL)));
typedef double vd __attribute__((vector_size(4 * MP_SWEEPK_VL)));  /* half the lanes */
typedef unsigned char vb __attribute__((vector_size(MP_SWEEPK_VL)));

#define INLINE static inline __attribute__((always_inline))
#define BC(u) ((vf){(u), (u), (u), (u), (u), (u), (u), (u)})

INLINE void ldv(vf *v, const float *p) { memcpy(v, p, sizeof *v); }
INLINE void stv(float *p, const vf *v) { memcpy(p, v, sizeof *v); }

/* MPIPRUNE_SWEEP_KERNEL: "scalar" (no kernel: the column loop), "generic" (the kernel without
 * AVX2), anything else or unset: the best the CPU runs. For tests and measurements: every
 * setting gives the same weights. */
static bool mode_is(const char *name)
{
    const char *v = getenv("MPIPRUNE_SWEEP_KERNEL");
    return v && strcmp(v, name) == 0;
}

bool mp_sweepk_fits(int n, int m)
{
    if (mode_is("scalar"))
        return false;
    return n == 0 || (m > 0 && (MP_SWEEPK_G % m == 0 || m % MP_SWEEPK_G == 0));
}

/* The N:M choice at column i for the vector's rows: the n of each row's m weights i.. with the
 * least w²/d² (ties: lower index), from wt as updated so far. */
INLINE void choose(const float *wt, unsigned char *mt, int64_t ld, const float *Ub,
                   int64_t ucols, int64_t i, int64_t r0, int n, int m)
{
    for (int64_t r = r0; r < r0 + MP_SWEEPK_VL; r++) {
        unsigned char pick[64];
        for (int t = 0; t < m; t++)
            pick[t] = 0;
        for (int k = 0; k < n; k++) {
            int best = -1;
            float bs = 0.0f;
            for (int t = 0; t < m; t++) {
                float w = wt[(i + t) * ld + r], d = Ub[(i + t) * ucols + i + t];
                float s = (w * w) / (d * d);
                if (!pick[t] && (best < 0 || s < bs)) {
                    best = t;
                    bs = s;
                }
            }
            if (best >= 0)
                pick[best] = 1;
        }
        for (int t = 0; t < m; t++)
            mt[(i + t) * ld + r] = pick[t];
    }
}

INLINE void rows_body(float *wt, float *et, unsigned char *mt, int64_t ld, const float *Ub,
                      int64_t ucols, int64_t j0, int64_t nfull, int64_t jend, int64_t r0, int n,
                      int m, double *acc)
{
    enum { G = MP_SWEEPK_G };
    vd a0 = {0}, a1 = {0};
    const vi izero = {0};
    for (int64_t i0 = j0; i0 < j0 + nfull; i0 += G) {
        vf w[G], e[G];
        for (int g = 0; g < G; g++)
            ldv(&w[g], wt + (i0 + g) * ld + r0);
        for (int g = 0; g < G; g++) {
            int64_t i = i0 + g;
            if (n > 0 && i % m == 0) {
                /* The choice reads memory: write back the group's weights as updated so far
                 * (the earlier ones are final already). */
                for (int h = g; h < G; h++)
                    stv(wt + (i0 + h) * ld + r0, &w[h]);
                choose(wt, mt, ld, Ub, ucols, i, r0, n, m);
            }
            const float *urow = Ub + i * ucols;
            float d = urow[i];
            vb mb;
            memcpy(&mb, mt + i * ld + r0, sizeof mb);
            vi pruned = __builtin_convertvector(mb, vi) != izero;
            vf q = (vf)((vi)w[g] & ~pruned); /* 0.0f where pruned, else w */
            vf ev = (w[g] - q) / BC(d);
            stv(et + i * ld + r0, &ev);
            stv(wt + i * ld + r0, &q);
            vd lo = __builtin_convertvector(__builtin_shufflevector(ev, ev, 0, 1, 2, 3), vd);
            vd hi = __builtin_convertvector(__builtin_shufflevector(ev, ev, 4, 5, 6, 7), vd);
            a0 += lo * lo;
            a1 += hi * hi;
            e[g] = ev;
            for (int h = g + 1; h < G; h++)
                w[h] = w[h] - ev * BC(urow[i0 + h]);
        }
        for (int64_t j = i0 + G; j < jend; j++) {
            vf x;
            ldv(&x, wt + j * ld + r0);
            for (int g = 0; g < G; g++)
                x = x - e[g] * BC(Ub[(i0 + g) * ucols + j]);
            stv(wt + j * ld + r0, &x);
        }
    }
    for (int k = 0; k < 4; k++) {
        acc[k] += a0[k];
        acc[4 + k] += a1[k];
    }
}

static void rows_generic(float *wt, float *et, unsigned char *mt, int64_t ld, const float *Ub,
                         int64_t ucols, int64_t j0, int64_t nfull, int64_t jend, int64_t r0,
                         int n, int m, double *acc)
{
    rows_body(wt, et, mt, ld, Ub, ucols, j0, nfull, jend, r0, n, m, acc);
}

INLINE void transpose_scalar(const float *restrict src, int64_t lds, float *restrict dst,
                             int64_t ldd, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++)
            dst[c * ldd + r] = src[r * lds + c];
}

/* Tiles of 32 x 32: a plain transpose strides through memory and thrashes the TLB. */
enum { TILE = 32 };

static void transpose_generic(const float *restrict src, int64_t lds, float *restrict dst,
                              int64_t ldd, int64_t nr, int64_t nc)
{
    for (int64_t r0 = 0; r0 < nr; r0 += TILE)
        for (int64_t c0 = 0; c0 < nc; c0 += TILE) {
            int64_t r1 = r0 + TILE < nr ? r0 + TILE : nr, c1 = c0 + TILE < nc ? c0 + TILE : nc;
            transpose_scalar(src, lds, dst, ldd, r0, r1, c0, c1);
        }
}

#ifdef MP_SWEEPK_X86
__attribute__((target("avx2"))) static void
rows_avx2(float *wt, float *et, unsigned char *mt, int64_t ld, const float *Ub, int64_t ucols,
          int64_t j0, int64_t nfull, int64_t jend, int64_t r0, int n, int m, double *acc)
{
    rows_body(wt, et, mt, ld, Ub, ucols, j0, nfull, jend, r0, n, m, acc);
}

/* 8 x 8 tiles transposed in registers (unpack, shuffle, lane permute). */
__attribute__((target("avx2"))) static void
transpose_avx2(const float *restrict src, int64_t lds, float *restrict dst, int64_t ldd,
               int64_t nr, int64_t nc)
{
    int64_t nr8 = nr / 8 * 8, nc8 = nc / 8 * 8;
    for (int64_t r = 0; r < nr8; r += 8) {
        for (int64_t c = 0; c < nc8; c += 8) {
            const float *s = src + r * lds + c;
            __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + lds),
                   a2 = _mm256_loadu_ps(s + 2 * lds), a3 = _mm256_loadu_ps(s + 3 * lds),
                   a4 = _mm256_loadu_ps(s + 4 * lds), a5 = _mm256_loadu_ps(s + 5 * lds),
                   a6 = _mm256_loadu_ps(s + 6 * lds), a7 = _mm256_loadu_ps(s + 7 * lds);
            __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1),
                   t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3),
                   t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5),
                   t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + c * ldd + r;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        transpose_scalar(src, lds, dst, ldd, r, r + 8, nc8, nc);
    }
    transpose_scalar(src, lds, dst, ldd, nr8, nr, 0, nc);
}

static bool have_avx2(void) { return !mode_is("generic") && __builtin_cpu_supports("avx2"); }
#endif

void mp_sweepk_rows(float *wt, float *et, unsigned char *mt, int64_t ld, const float *Ub,
                    int64_t ucols, int64_t j0, int64_t nfull, int64_t jend, int64_t r0, int n,
                    int m, double *acc)
{
#ifdef MP_SWEEPK_X86
    if (have_avx2()) {
        rows_avx2(wt, et, mt, ld, Ub, ucols, j0, nfull, jend, r0, n, m, acc);
        return;
    }
#endif
    rows_generic(wt, et, mt, ld, Ub, ucols, j0, nfull, jend, r0, n, m, acc);
}

void mp_sweepk_transpose(const float *restrict src, int64_t lds, float *restrict dst,
                         int64_t ldd, int64_t nr, int64_t nc)
{
#ifdef MP_SWEEPK_X86
    if (have_avx2()) {
        transpose_avx2(src, lds, dst, ldd, nr, nc);
        return;
    }
#endif
    transpose_generic(src, lds, dst, ldd, nr, nc);
}
