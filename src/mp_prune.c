#include "mp_alloc.h"
#include "mp_prune.h"
#include "mp_sweepk.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran ABI). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda,
                    int *info, size_t uplo_len, size_t diag_len);

/* The serial factorisation of A = H + λI: U upper with A⁻¹ = UᵀU. *info > 0: A not positive
 * definite.
 *
 * The reference computes U as chol(inv(A)) (potrf, potri, potrf: 4n³/3 flops). U is also
 * R⁻¹ for the "upper-lower" factor A = R Rᵀ, R upper: then A⁻¹ = R⁻ᵀR⁻¹ and R⁻¹ is upper with
 * a positive diagonal, so it is that same unique factor, for potrf + trtri (2n³/3 flops). With
 * J the order reversal, J A J = L Lᵀ gives R = J L J and U = J L⁻¹ J. Reversing the flat n×n
 * array is J·J, and A is symmetric, so F = the reversed array of A, factored and inverted in
 * place (column-major, lower), holds U[a][b] at F[n² − 1 − a − b·n]: one pass in (the reversed
 * copy) and one out (lapack_factor_out), no pass in between. */
static mp_status lapack_factor(const double *H, int64_t n, double lambda, double *F, int *info)
{
    int N = (int)n, lapack_info = 0;
    int64_t nn = n * n;
    for (int64_t k = 0; k < nn; k++)
        F[k] = H[nn - 1 - k];
    for (int64_t j = 0; j < n; j++)
        F[j * n + j] += lambda;
    dpotrf_("L", &N, F, &N, &lapack_info, 1);
    if (lapack_info == 0)
        dtrtri_("L", "N", &N, F, &N, &lapack_info, 1, 1);
    *info = lapack_info;
    if (lapack_info < 0)
        return mp_error(MP_ERR_INTERNAL, "LAPACK argument %d invalid", -lapack_info);
    return MP_OK;
}

/* hinv[a, b] = U[a][b] (row-major, zero below the diagonal) from lapack_factor's F, in tiles
 * (one side of the copy strides by n). */
static void lapack_factor_out(const double *F, int64_t n, float *hinv)
{
    enum { T = 32 };
    int64_t last = n * n - 1;
    for (int64_t a0 = 0; a0 < n; a0 += T)
        for (int64_t b0 = 0; b0 < n; b0 += T) {
            int64_t a1 = a0 + T < n ? a0 + T : n, b1 = b0 + T < n ? b0 + T : n;
            for (int64_t a = a0; a < a1; a++)
                for (int64_t b = b0; b < b1; b++)
                    hinv[a * n + b] = b >= a ? (float)F[last - a - b * n] : 0.0f;
        }
}

/* mp_obs_prepare and mp_obs_prepare_dist: c == NULL factors with LAPACK here, else with
 * ScaLAPACK over c (block size nb). Everything else is the same code on every rank, and every
 * decision depends only on H and the (agreed) factorisation info, so all ranks take the same
 * branches and enter the same collectives. */
static mp_status obs_prepare(const mp_comm *c, int nb, double *H, int64_t n, float *W,
                             int64_t rows, double damp, float *hinv, mp_obs_info *info)
{
    mp_status st = MP_OK;
    double *A = NULL;
    memset(info, 0, sizeof *info);
    if (n <= 0 || n > INT_MAX)
        return mp_error(MP_ERR_RANGE, "Hessian dimension %lld out of range", (long long)n);
    for (int64_t j = 0; j < n; j++) {
        if (!isfinite(H[j * n + j]))
            return mp_error(MP_ERR_NUMERIC, "Hessian has a non-finite diagonal entry");
        if (H[j * n + j] == 0.0) {
            H[j * n + j] = 1.0;
            info->dead++;
            if (W)
                for (int64_t r = 0; r < rows; r++)
                    W[r * n + j] = 0.0f;
        }
    }
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    mean /= (double)n;
    A = mp_malloc((size_t)(n * n) * sizeof(double));
    if (c) {
        mp_status global = MP_OK;
        int who = -1;
        MP_TRY(mp_comm_agree(c, A ? MP_OK : MP_ERR_NOMEM, &global, &who));
        if (global != MP_OK)
            MP_FAIL(global, "cannot allocate a %lld x %lld factor on rank %d", (long long)n,
                    (long long)n, who);
    } else if (!A) {
        return mp_error(MP_ERR_NOMEM, "cannot allocate a %lld x %lld factor", (long long)n,
                        (long long)n);
    }
    double frac = damp;
    for (int attempt = 0;; attempt++) {
        double lambda = frac * mean;
        int finfo = 0;
        if (c) {
            memcpy(A, H, (size_t)(n * n) * sizeof(double));
            for (int64_t j = 0; j < n; j++)
                A[j * n + j] += lambda;
            MP_TRY(mp_comm_chol_inv_chol(c, A, n, nb, A, &finfo));
        } else {
            MP_TRY(lapack_factor(H, n, lambda, A, &finfo));
        }
        if (finfo == 0)
            break;
        if (attempt == MP_DAMP_ESCALATIONS)
            MP_FAIL(MP_ERR_NUMERIC, "Hessian not positive definite even with damping %g of "
                    "mean(diag H)", frac);
        frac *= 10.0;
        info->escalations++;
    }
    info->damp = frac;
    info->lambda = frac * mean;
    if (c) {
        /* Row-major upper triangle of A now holds U with H⁻¹ = UᵀU. */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                hinv[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
    } else {
        lapack_factor_out(A, n, hinv);
    }
done:
    free(A);
    return st;
}

mp_status mp_obs_prepare(double *H, int64_t n, float *W, int64_t rows, double damp, float *hinv,
                         mp_obs_info *info)
{
    return obs_prepare(NULL, 0, H, n, W, rows, damp, hinv, info);
}

mp_status mp_obs_prepare_dist(const mp_comm *c, double *H, int64_t n, float *W, int64_t rows,
                              double damp, int nb, float *hinv, mp_obs_info *info)
{
    return obs_prepare(c, nb, H, n, W, rows, damp, hinv, info);
}

float mp_kth_smallest(float *v, int64_t n, int64_t k)
{
    /* Quickselect (Hoare partition, middle pivot); deterministic. */
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* A float's bits as an unsigned key in the order of the values (negatives reversed below the
 * positives; -0 just below +0, which compare equal as values). */
static inline uint32_t float_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static inline float key_float(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? k & 0x7fffffffu : ~k;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float mp_kth_smallest_radix(const float *v, int64_t n, int64_t k)
{
    /* Radix select on the keys, 11 + 11 + 10 bits: each pass counts the candidates (the keys
     * whose higher bits equal the prefix found so far) by their next digit and keeps the
     * digit whose bucket holds rank k; no data movement, where a quickselect's partitions
     * branch unpredictably on every element (the sweep selects once per block of columns,
     * over rows x blocksize scores). The second pass also copies its few candidates out, so
     * that the third reads only them (without the memory, it reads everything again). */
    static const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint32_t prefix = 0, mask = 0, *cand = NULL;
    int64_t rank = k, cnt[2048], ncand = 0;
    /* The first pass counts every key into four interleaved histograms: scores bunch in a few
     * top buckets, and one histogram makes each count wait on the previous increment of the
     * same bucket. */
    uint32_t part[4][2048];
    for (int p = 0; p < 3; p++) {
        int64_t nb = (int64_t)1 << width[p];
        uint32_t dmask = (uint32_t)(nb - 1);
        memset(cnt, 0, (size_t)nb * sizeof cnt[0]);
        if (p == 0 && n <= (int64_t)UINT32_MAX) {
            memset(part, 0, sizeof part);
            int64_t i = 0;
            for (; i + 4 <= n; i += 4)
                for (int t = 0; t < 4; t++)
                    part[t][float_key(v[i + t]) >> shift[0]]++;
            for (; i < n; i++)
                part[0][float_key(v[i]) >> shift[0]]++;
            for (int64_t b = 0; b < nb; b++)
                cnt[b] = (int64_t)part[0][b] + part[1][b] + part[2][b] + part[3][b];
        } else if (p == 2 && cand) {
            for (int64_t i = 0; i < ncand; i++)
                if ((cand[i] & mask) == prefix)
                    cnt[cand[i] & dmask]++;
        } else {
            for (int64_t i = 0; i < n; i++) {
                uint32_t key = float_key(v[i]);
                if ((key & mask) == prefix) {
                    cnt[(key >> shift[p]) & dmask]++;
                    if (cand)
                        cand[ncand++] = key;
                }
            }
        }
        int64_t b = 0;
        while (b < nb - 1 && rank >= cnt[b])
            rank -= cnt[b++];
        if (p == 0)
            cand = mp_malloc((size_t)(cnt[b] + 1) * sizeof *cand);
        prefix |= (uint32_t)b << shift[p];
        mask |= dmask << shift[p];
    }
    free(cand);
    return key_float(prefix);
}

enum { RECON_CHUNK = 256, SWEEP_ROWS = 64 };

static inline float obs_score(float w, float d) { return (w * w) / (d * d); }

/* Marks in mask[0..m) the n lowest scores (ties: lower index first). */
static void lowest_n(const float *score, int m, int n, unsigned char *mask)
{
    for (int i = 0; i < m; i++)
        mask[i] = 0;
    for (int t = 0; t < n; t++) {
        int best = -1;
        for (int i = 0; i < m; i++)
            if (!mask[i] && (best < 0 || score[i] < score[best]))
                best = i;
        if (best >= 0)
            mask[best] = 1;
    }
}

/* Workspace of one sweep over `rows` rows with block size B: allocated before any collective,
 * so that a distributed sweep can agree on an allocation failure first. */
typedef struct {
    float *err;           /* [rows, B] */
    float *scores;        /* [rows * B] */
    float *tmp;           /* [rows * B]: the block transposed */
    unsigned char *mask;  /* [rows * B] */
} sweep_ws;

static void sweep_ws_free(sweep_ws *ws)
{
    free(ws->err);
    free(ws->scores);
    free(ws->tmp);
    free(ws->mask);
    memset(ws, 0, sizeof *ws);
}

/* The leading dimension of the transposed block: rows padded so that consecutive columns do
 * not lie a power of two apart (at 1024 rows, 4 KiB: every column of a tile in one cache set,
 * the transposes and updates about 20 % slower). */
static int64_t sweep_ld(int64_t rows) { return (rows + 15) / 16 * 16 + 16; }

static mp_status sweep_ws_alloc(sweep_ws *ws, int64_t rows, int64_t B)
{
    size_t cnt = (size_t)(sweep_ld(rows) * B + 1);
    ws->err = mp_malloc(cnt * sizeof(float));
    ws->scores = mp_malloc(cnt * sizeof(float));
    ws->tmp = mp_malloc(cnt * sizeof(float));
    ws->mask = mp_malloc(cnt);
    if (!ws->err || !ws->scores || !ws->tmp || !ws->mask) {
        sweep_ws_free(ws);
        return mp_error(MP_ERR_NOMEM, "cannot allocate SparseGPT workspace for %lld rows",
                        (long long)rows);
    }
    /* mp_sweepk works on whole vectors of rows: the padding rows stay zero (nothing else
     * writes them, and zero weights with zero flags give zero errors). */
    memset(ws->err, 0, cnt * sizeof(float));
    memset(ws->tmp, 0, cnt * sizeof(float));
    memset(ws->mask, 0, cnt);
    return MP_OK;
}

mp_status mp_sparsity_check(const mp_sparsity *sp, int64_t cols)
{
    if (!(sp->sparsity >= 0.0 && sp->sparsity < 1.0))
        return mp_error(MP_ERR_ARG, "sparsity %g outside [0, 1)", sp->sparsity);
    if (sp->n < 0 || (sp->n > 0 && (sp->m > MP_NM_MAX_M || sp->n >= sp->m)))
        return mp_error(MP_ERR_ARG, "%d:%d is not N:M with 0 < N < M <= %d", sp->n, sp->m,
                        MP_NM_MAX_M);
    if (sp->n > 0 && cols > 0 && cols % sp->m != 0)
        return mp_error(MP_ERR_ARG, "%d:%d pattern does not fit %lld columns", sp->n, sp->m,
                        (long long)cols);
    return MP_OK;
}

/* A decimal number of 1..2 digits at *p (N and M are at most 64); advances p. */
static int parse_small(const char **p)
{
    int v = 0, k = 0;
    while (**p >= '0' && **p <= '9' && k < 3) {
        v = v * 10 + (**p - '0');
        (*p)++;
        k++;
    }
    return k == 0 || k == 3 ? -1 : v;
}

mp_status mp_sparsity_parse_nm(const char *text, mp_sparsity *sp)
{
    const char *p = text;
    int n = parse_small(&p), m = -1;
    if (n >= 0 && *p == ':') {
        p++;
        m = parse_small(&p);
    }
    mp_sparsity v = {.n = n, .m = m, .sparsity = m > 0 ? (double)n / (double)m : 0.0};
    if (n <= 0 || m <= 0 || *p != '\0' || mp_sparsity_check(&v, 0) != MP_OK)
        return mp_error(MP_ERR_ARG, "'%s' is not N:M with 0 < N < M <= %d", text, MP_NM_MAX_M);
    *sp = v;
    return MP_OK;
}

static mp_status sweep_check(int64_t rows, int64_t cols, int64_t B, const mp_sparsity *sp)
{
    mp_status st = mp_sparsity_check(sp, cols);
    if (st != MP_OK)
        return st;
    if (B <= 0 || (sp->n > 0 && B % sp->m != 0))
        return mp_error(MP_ERR_ARG, "block size %lld and %d:%d pattern do not fit %lld columns",
                        (long long)B, sp->n, sp->m, (long long)cols);
    if (rows < 0 || rows > INT_MAX || cols > INT_MAX)
        return mp_error(MP_ERR_RANGE, "layer too large for BLAS int");
    return MP_OK;
}

/* The scalar sweep of the sub-block's columns [i_from, jend) for rows [ra, rb), updates
 * carried up to column jend: the columns a kernel group does not fill, and N:M patterns the
 * kernel does not take. Rows are independent inside a sub-block (its mask is either fixed for
 * the block or chosen per row), so it is swept a chunk of SWEEP_ROWS rows at a time: the
 * chunk's columns stay in L1 while every column updates the later ones. */
static double sweep_rows_scalar(float *restrict wt, float *restrict et,
                                unsigned char *restrict mt, int64_t ld, const float *Ub,
                                int64_t ucols, int64_t i_from, int64_t jend, int64_t rows,
                                const mp_sparsity *sp)
{
    double acc = 0.0;
    for (int64_t ra = 0; ra < rows; ra += SWEEP_ROWS) {
        int64_t rb = rows - ra < SWEEP_ROWS ? rows : ra + SWEEP_ROWS;
        for (int64_t i = i_from; i < jend; i++) {
            const float *urow = Ub + i * ucols;
            float *restrict wi = wt + i * ld;
            float *restrict ei = et + i * ld;
            unsigned char *restrict mi = mt + i * ld;
            if (sp->n > 0 && i % sp->m == 0) {
                float sc[64];
                unsigned char pick[64];
                for (int64_t r = ra; r < rb; r++) {
                    for (int t = 0; t < sp->m; t++)
                        sc[t] = obs_score(wt[(i + t) * ld + r], Ub[(i + t) * ucols + i + t]);
                    lowest_n(sc, sp->m, sp->n, pick);
                    for (int t = 0; t < sp->m; t++)
                        mt[(i + t) * ld + r] = pick[t];
                }
            }
            float d = urow[i];
            double sq = 0.0;
            for (int64_t r = ra; r < rb; r++) {
                float q = mi[r] ? 0.0f : wi[r];
                float e = (wi[r] - q) / d;
                ei[r] = e;
                sq += (double)e * (double)e;
                wi[r] = q;
            }
            acc += sq;
            for (int64_t j = i + 1; j < jend; j++) {
                float u = urow[j];
                float *restrict wj = wt + j * ld;
                for (int64_t r = ra; r < rb; r++)
                    wj[r] -= ei[r] * u;
            }
        }
    }
    return acc;
}

/* The sweep itself, arguments checked and workspace allocated. With a global threshold, fn is
 * called once per block on every rank whatever its row count (zero included).
 *
 * Each block of B columns is worked on transposed, Wt[B, rows], so that the column-by-column
 * OBS updates run over many rows at once (as the reference's tensor operations do). Within the
 * block, sub-blocks of sb columns: the updates stay inside a sub-block, where mp_sweepk runs
 * them on a vector of rows and a group of columns in registers, and one matrix product carries
 * the sub-block's errors to the rest of the block; after the block, one matrix product carries
 * the block's errors to the later columns (lazy batch update). Every weight sees the same
 * updates in the same order as the column loop of the reference. N:M groups never straddle a
 * sub-block, so each group is chosen on fully updated weights. The unstructured scores are
 * taken in the transposed layout (the k-th smallest does not depend on the order). */
static mp_status sweep_run(float *W, int64_t rows, int64_t cols, const float *U, int64_t B,
                           const mp_sparsity *sp, const mp_threshold_fn *global, sweep_ws *ws,
                           double *loss)
{
    mp_status st = MP_OK;
    double acc = 0.0, lanes[MP_SWEEPK_VL] = {0};
    int64_t ld = sweep_ld(rows);
    float *restrict et = ws->err;    /* [B, ld]: errors, transposed */
    float *restrict wt = ws->tmp;    /* [B, ld]: the block, transposed */
    float *restrict scores = ws->scores; /* [nb, rows] */
    unsigned char *restrict mt = ws->mask; /* [B, ld]: prune flags, transposed */
    int64_t sb = sp->n > 0 ? sp->m * ((64 + sp->m - 1) / sp->m) : 64;
    bool vec = mp_sweepk_fits(sp->n, sp->m) && sb % MP_SWEEPK_G == 0;
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        int64_t nb = cols - i1 < B ? cols - i1 : B;
        const float *Ub = U + i1 * cols + i1;
        mp_sweepk_transpose(W + i1, cols, wt, ld, rows, nb);
        if (sp->n == 0) {
            int64_t cnt = rows * nb;
            for (int64_t c = 0; c < nb; c++) {
                float d = Ub[c * cols + c];
                const float *restrict wc = wt + c * ld;
                float *restrict sc = scores + c * rows;
                for (int64_t r = 0; r < rows; r++)
                    sc[r] = obs_score(wc[r], d);
            }
            float thresh;
            if (global && global->fn) {
                int64_t k = (int64_t)((double)(global->total_rows * nb) * sp->sparsity);
                MP_TRY(global->fn(global->ud, scores, cnt, k, &thresh));
            } else {
                int64_t k = (int64_t)((double)cnt * sp->sparsity);
                thresh = k < cnt ? mp_kth_smallest_radix(scores, cnt, k) : INFINITY;
            }
            for (int64_t c = 0; c < nb; c++) {
                const float *restrict sc = scores + c * rows;
                unsigned char *restrict mc = mt + c * ld;
                for (int64_t r = 0; r < rows; r++)
                    mc[r] = sc[r] <= thresh;
            }
        }
        for (int64_t j0 = 0; j0 < nb; j0 += sb) {
            int64_t ns = nb - j0 < sb ? nb - j0 : sb;
            int64_t nfull = vec ? ns / MP_SWEEPK_G * MP_SWEEPK_G : 0;
            for (int64_t r0 = 0; nfull > 0 && r0 < rows; r0 += MP_SWEEPK_VL)
                mp_sweepk_rows(wt, et, mt, ld, Ub, cols, j0, nfull, j0 + ns, r0, sp->n, sp->m,
                               lanes);
            if (nfull < ns)
                acc += sweep_rows_scalar(wt, et, mt, ld, Ub, cols, j0 + nfull, j0 + ns, rows,
                                         sp);
            int64_t after = nb - (j0 + ns);
            if (after > 0 && rows > 0)
                /* wt[j0+ns.., :] -= U[sub, after]ᵀ · et[sub, :] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)after, (int)rows,
                            (int)ns, -1.0f, Ub + j0 * cols + j0 + ns, (int)cols,
                            et + j0 * ld, (int)ld, 1.0f, wt + (j0 + ns) * ld, (int)ld);
        }
        mp_sweepk_transpose(wt, ld, W + i1, cols, nb, rows);
        int64_t rest = cols - (i1 + nb);
        if (rest > 0 && rows > 0)
            /* W[:, after the block] -= etᵀ · U[block, after the block] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)rest, (int)nb,
                        -1.0f, et, (int)ld, U + i1 * cols + i1 + nb, (int)cols, 1.0f,
                        W + i1 + nb, (int)cols);
    }
    for (int k = 0; k < MP_SWEEPK_VL; k++)
        acc += lanes[k];
    if (loss)
        *loss = acc;
done:
    return st;
}

mp_status mp_sparsegpt_sweep(float *W, int64_t rows, int64_t cols, const float *U,
                             int64_t blocksize, const mp_sparsity *sp,
                             const mp_threshold_fn *global, double *loss)
{
    mp_status st = sweep_check(rows, cols, blocksize, sp);
    if (st != MP_OK)
        return st;
    sweep_ws ws = {0};
    st = sweep_ws_alloc(&ws, rows, blocksize);
    if (st != MP_OK)
        return st;
    st = sweep_run(W, rows, cols, U, blocksize, sp, global, &ws, loss);
    sweep_ws_free(&ws);
    return st;
}

/* The distributed threshold: all ranks' scores of the block, in rank (= row) order, and their
 * k-th smallest, the same value on every rank and the same as the serial sweep's. */
typedef struct {
    const mp_comm *c;
    float *all; /* [total_rows * B] */
} dist_threshold;

static mp_status dist_threshold_fn(void *ud, const float *scores, int64_t count, int64_t k,
                                   float *thresh)
{
    dist_threshold *d = ud;
    int64_t total = 0;
    mp_status st = mp_comm_allgatherv_f32(d->c, scores, count, d->all, &total);
    if (st != MP_OK)
        return st;
    *thresh = k < total ? mp_kth_smallest_radix(d->all, total, k) : INFINITY;
    return MP_OK;
}

/* Σ over the ranks of c of one value each, added in rank order on rank 0 and broadcast, so the
 * sum is the same on every rank and for every run with this rank count. Collective. */
static mp_status sum_ranks(const mp_comm *c, double v, double *sum)
{
    int P = mp_comm_size(c);
    int64_t *counts = mp_malloc((size_t)P * sizeof *counts);
    double *all = mp_malloc((size_t)P * sizeof *all);
    mp_status local = counts && all ? MP_OK : mp_error(MP_ERR_NOMEM, "cannot allocate a "
                                                       "gather of %d values", P);
    mp_status st, global = MP_OK;
    int who = -1;
    st = mp_comm_agree(c, local, &global, &who);
    if (st == MP_OK && global != MP_OK)
        st = local != MP_OK ? local : mp_error(global, "gather setup failed on rank %d", who);
    if (st == MP_OK) {
        for (int r = 0; r < P; r++)
            counts[r] = 1;
        st = mp_comm_gatherv_f64(c, &v, 1, all, counts, 0);
    }
    double s = 0.0;
    if (st == MP_OK && mp_comm_rank(c) == 0)
        for (int r = 0; r < P; r++)
            s += all[r];
    if (st == MP_OK)
        st = mp_comm_bcast(c, &s, (int64_t)sizeof s, 0);
    if (st == MP_OK)
        *sum = s;
    free(counts);
    free(all);
    return st;
}

mp_status mp_sparsegpt_sweep_dist(const mp_comm *c, float *W, int64_t rows, int64_t cols,
                                  const float *U, int64_t blocksize, const mp_sparsity *sp,
                                  double *loss)
{
    mp_status st = sweep_check(rows, cols, blocksize, sp);
    if (st != MP_OK)
        return st; /* the arguments are the same on every rank */
    int P = mp_comm_size(c), rank = mp_comm_rank(c);
    int64_t base = rows / P, extra = rows % P;
    int64_t r0 = rank * base + (rank < extra ? rank : extra);
    int64_t nr = base + (rank < extra);
    sweep_ws ws = {0};
    dist_threshold d = {c, NULL};
    float *full = NULL;
    mp_status local = sweep_ws_alloc(&ws, nr, blocksize);
    if (local == MP_OK) {
        d.all = mp_malloc((size_t)(rows * blocksize + 1) * sizeof(float));
        full = mp_malloc((size_t)(rows * cols + 1) * sizeof(float));
        if (!d.all || !full)
            local = mp_error(MP_ERR_NOMEM, "cannot allocate the distributed sweep's buffers "
                             "for %lld x %lld", (long long)rows, (long long)cols);
    }
    mp_status global = MP_OK;
    int who = -1;
    MP_TRY(mp_comm_agree(c, local, &global, &who));
    if (global != MP_OK) {
        st = local != MP_OK ? local
                            : mp_error(global, "distributed sweep setup failed on rank %d", who);
        goto done;
    }
    mp_threshold_fn fn = {dist_threshold_fn, &d, rows};
    double part = 0.0;
    local = sweep_run(W + r0 * cols, nr, cols, U, blocksize, sp, &fn, &ws, &part);
    MP_TRY(mp_comm_agree(c, local, &global, &who));
    if (global != MP_OK) {
        st = local != MP_OK ? local : mp_error(global, "distributed sweep failed on rank %d", who);
        goto done;
    }
    if (loss)
        MP_TRY(sum_ranks(c, part, loss));
    int64_t total = 0;
    MP_TRY(mp_comm_allgatherv_f32(c, W + r0 * cols, nr * cols, full, &total));
    if (total != rows * cols)
        MP_FAIL(MP_ERR_INTERNAL, "distributed sweep gathered %lld of %lld weights",
                (long long)total, (long long)(rows * cols));
    memcpy(W, full, (size_t)(rows * cols) * sizeof(float));
done:
    sweep_ws_free(&ws);
    free(d.all);
    free(full);
    return st;
}

typedef struct {
    float score;
    int64_t idx;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score < y->score)
        return -1;
    if (x->score > y->score)
        return 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}


static void prune_nm(float *W, int64_t rows, int64_t cols, const double *colscale,
                     const mp_sparsity *sp)
{
    float sc[64];
    unsigned char mk[64];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += sp->m) {
            float *w = W + r * cols + c0;
            for (int t = 0; t < sp->m; t++)
                sc[t] = (float)(fabs((double)w[t]) * (colscale ? colscale[c0 + t] : 1.0));
            lowest_n(sc, sp->m, sp->n, mk);
            for (int t = 0; t < sp->m; t++)
                if (mk[t])
                    w[t] = 0.0f;
        }
}

mp_status mp_wanda_prune(float *W, int64_t rows, int64_t cols, const double *hdiag,
                         const mp_sparsity *sp)
{
    mp_status st = mp_sparsity_check(sp, cols);
    if (st != MP_OK)
        return st;
    double *scale = mp_malloc((size_t)cols * sizeof(double));
    float *sc = mp_malloc((size_t)(2 * cols) * sizeof(float)); /* scores, then a scratch copy */
    if (!scale || !sc) {
        free(scale);
        free(sc);
        return mp_error(MP_ERR_NOMEM, "cannot allocate Wanda scores");
    }
    for (int64_t j = 0; j < cols; j++)
        scale[j] = sqrt(hdiag[j] > 0.0 ? hdiag[j] : 0.0);
    if (sp->n > 0) {
        prune_nm(W, rows, cols, scale, sp);
    } else {
        /* Per row: the k-th smallest score by selection (O(cols)), then every score below it
         * and, among those equal to it, the lowest indices: the same set as a stable sort. */
        int64_t k = (int64_t)((double)cols * sp->sparsity);
        float *tmp = sc + cols;
        for (int64_t r = 0; r < rows && k > 0; r++) {
            float *w = W + r * cols;
            for (int64_t j = 0; j < cols; j++)
                sc[j] = (float)(fabs((double)w[j]) * scale[j]);
            memcpy(tmp, sc, (size_t)cols * sizeof(float));
            float th = mp_kth_smallest(tmp, cols, k - 1);
            int64_t below = 0;
            for (int64_t j = 0; j < cols; j++)
                below += sc[j] < th;
            int64_t ties = k - below;
            for (int64_t j = 0; j < cols; j++)
                if (sc[j] < th || (sc[j] == th && ties-- > 0))
                    w[j] = 0.0f;
        }
    }
    free(scale);
    free(sc);
    return MP_OK;
}

mp_status mp_magnitude_prune(float *W, int64_t rows, int64_t cols, const mp_sparsity *sp)
{
    mp_status st = mp_sparsity_check(sp, cols);
    if (st != MP_OK)
        return st;
    if (sp->n > 0) {
        prune_nm(W, rows, cols, NULL, sp);
        return MP_OK;
    }
    int64_t n = rows * cols, k = (int64_t)((double)n * sp->sparsity);
    scored *all = mp_malloc((size_t)n * sizeof(scored));
    if (!all)
        return mp_error(MP_ERR_NOMEM, "cannot allocate magnitude scores for %lld weights",
                        (long long)n);
    for (int64_t i = 0; i < n; i++) {
        all[i].score = fabsf(W[i]);
        all[i].idx = i;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_scored);
    for (int64_t t = 0; t < k; t++)
        W[all[t].idx] = 0.0f;
    free(all);
    return MP_OK;
}

/* Σ_r a_r H a_rᵀ over the rows of A = W − What (What NULL: A = W), a chunk of rows at a time
 * with ssymm (BLAS 3, float32 like the weights; Hf the float32 H) and the row dot products
 * summed in float64: a report figure, accurate to about 1e-6 relative. */
static void quad_form(const float *W, const float *What, int64_t rows, int64_t cols,
                      const float *Hf, float *a, float *ah, double *out)
{
    double total = 0.0;
    for (int64_t r0 = 0; r0 < rows; r0 += RECON_CHUNK) {
        int64_t nr = rows - r0 < RECON_CHUNK ? rows - r0 : RECON_CHUNK;
        for (int64_t i = 0; i < nr * cols; i++) {
            int64_t k = r0 * cols + i;
            a[i] = What ? W[k] - What[k] : W[k];
        }
        cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)nr, (int)cols, 1.0f, Hf,
                    (int)cols, a, (int)cols, 0.0f, ah, (int)cols);
        double sum = 0.0;
        for (int64_t i = 0; i < nr * cols; i++)
            sum += (double)a[i] * (double)ah[i];
        total += sum;
    }
    *out = total;
}

/* The float32 H and the two chunk buffers of quad_form; NULLs on failure (all freed). */
static mp_status recon_ws(const double *H, int64_t cols, float **Hf, float **a, float **ah)
{
    *Hf = mp_malloc((size_t)(cols * cols) * sizeof(float));
    *a = mp_malloc((size_t)(RECON_CHUNK * cols) * sizeof(float));
    *ah = mp_malloc((size_t)(RECON_CHUNK * cols) * sizeof(float));
    if (!*Hf || !*a || !*ah) {
        free(*Hf);
        free(*a);
        free(*ah);
        *Hf = *a = *ah = NULL;
        return mp_error(MP_ERR_NOMEM, "cannot allocate reconstruction workspace");
    }
    for (int64_t i = 0; i < cols * cols; i++)
        (*Hf)[i] = (float)H[i];
    return MP_OK;
}

/* num = tr(ΔW H ΔWᵀ) and, when den != NULL, den = tr(W H Wᵀ), in float32 products. */
static mp_status recon_terms(const float *W, const float *What, int64_t rows, int64_t cols,
                             const double *H, double *num, double *den)
{
    float *Hf, *a, *ah;
    mp_status st = recon_ws(H, cols, &Hf, &a, &ah);
    if (st != MP_OK)
        return st;
    *num = 0.0;
    quad_form(W, What, rows, cols, Hf, a, ah, num);
    if (den) {
        *den = 0.0;
        quad_form(W, NULL, rows, cols, Hf, a, ah, den);
    }
    free(Hf);
    free(a);
    free(ah);
    return MP_OK;
}

mp_status mp_recon_error(const float *W, const float *What, int64_t rows, int64_t cols,
                         const double *H, double *err)
{
    double num = 0.0, den = 0.0;
    mp_status st = recon_terms(W, What, rows, cols, H, &num, &den);
    if (st == MP_OK)
        *err = den > 0.0 ? num / den : 0.0;
    return st;
}

mp_status mp_recon_error_den(const float *W, const float *What, int64_t rows, int64_t cols,
                             const double *H, double den, double *err)
{
    double num = 0.0;
    mp_status st = recon_terms(W, What, rows, cols, H, &num, NULL);
    if (st == MP_OK)
        *err = den > 0.0 ? num / den : 0.0;
    return st;
}

mp_status mp_recon_error_obs(const float *W, const float *What, int64_t rows, int64_t cols,
                             const double *H, double loss, double lambda, double den,
                             double *err)
{
    /* 1.0 for a live column, 0.0 for a dead one. */
    double *live = mp_malloc((size_t)(cols + 1) * sizeof *live);
    if (!live)
        return mp_error(MP_ERR_NOMEM, "cannot allocate the live columns of %lld",
                        (long long)cols);
    for (int64_t j = 0; j < cols; j++)
        live[j] = H[j * cols + j] != 0.0 ? 1.0 : 0.0;
    double dw2 = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            double d = (double)W[r * cols + j] - (double)What[r * cols + j];
            s += live[j] * d * d;
        }
        dw2 += s;
    }
    free(live);
    double num = loss - lambda * dw2;
    /* Rounding can take a near-zero error below zero. */
    num = num > 0.0 ? num : 0.0;
    *err = den > 0.0 ? num / den : 0.0;
    return MP_OK;
}
