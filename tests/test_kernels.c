/* test_kernels.c — the runtime kernels against naive references written here.
 *
 * Every kernel runs in float and double on many shapes (odd sizes, block
 * boundaries, transposes, strides, padding); references accumulate in long
 * double.  An element passes when |got − ref| <= tol·(Σ|terms| + |ref|), with
 * tol 1e-5 for float and 1e-12 for double: a relative error bound that stays
 * meaningful when a sum cancels. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "kernels_impl.h"
#include "host/fpmode.h"
#include "host/parallel_kernels.h"
#include "host/train.h"
#include "testutil.h"

/* ---- helpers: deterministic randoms, buffers of float or double ---- */

static uint64_t rng = 88172645463325252ull;

static double urand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

static size_t esize(int dbl) { return dbl ? sizeof(double) : sizeof(float); }

static void *talloc(int dbl, size_t n)
{
    void *p = malloc((n ? n : 1) * esize(dbl));
    ck_assert_ptr_nonnull(p);
    return p;
}

static double tget(int dbl, const void *p, size_t i)
{
    return dbl ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static void tset(int dbl, void *p, size_t i, double v)
{
    if (dbl)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

static void *trand(int dbl, size_t n)
{
    void *p = talloc(dbl, n);
    for (size_t i = 0; i < n; i++) tset(dbl, p, i, urand());
    return p;
}

static void tfill(int dbl, void *p, size_t n, double v)
{
    for (size_t i = 0; i < n; i++) tset(dbl, p, i, v);
}

static double tol_of(int dbl) { return dbl ? 1e-12 : 1e-5; }

/* Check's ck_assert records a checkpoint on every success, which costs a
 * write per element here; EXPECT only talks to Check on failure. */
#define EXPECT(cond, ...)                          \
    do {                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);    \
    } while (0)

/* Asserts got ≈ ref within tol·mag, naming the failing element. */
#define CHECK_CLOSE(got, ref, mag, dbl, what, idx)                                              \
    EXPECT(fabs((double)(got) - (double)(ref)) <= tol_of(dbl) * ((mag) + fabs((double)(ref))) + 1e-300 && \
                      (got) == (got),                                                           \
                  "%s[%zu]: got %.17g want %.17g (mag %g, %s)", what, (size_t)(idx), (double)(got), \
                  (double)(ref), (double)(mag), (dbl) ? "f64" : "f32")

/* The epilogue activations in long double, from the same table the kernels
 * expand (runtime/activations.h), at their default arguments. */
#define KDA_T long double
#define KDA_FN(n) act_ref_##n
#define KDA_M(fn) fn##l
#define KDA_RELU(a) ((a) <= 0 ? 0 : (a))
#include "activations_c.h"
#undef KDA_T
#undef KDA_FN
#undef KDA_M
#undef KDA_RELU

static long double act_ref(long double x, int act) { return act_ref_fused(act, x); }

/* A work buffer of `n` elements that starts one element past an aligned
 * address (kernels must not need alignment), followed by a canary. */
enum { CANARY = 16 };
struct work {
    void *base, *p;
    int dbl;
    size_t n;
};

static struct work work_new(int dbl, size_t n)
{
    struct work w = {talloc(dbl, n + 1 + CANARY), NULL, dbl, n};
    w.p = (char *)w.base + esize(dbl);
    tfill(dbl, w.base, n + 1 + CANARY, 7777.0);
    return w;
}

static void work_free(struct work *w)
{
    for (size_t i = 0; i < CANARY; i++)
        EXPECT(tget(w->dbl, w->p, w->n + i) == 7777.0, "work buffer overrun (size %zu)", w->n);
    free(w->base);
}

/* ---- GEMM ---- */

struct gemm_case {
    int M, N, K, ta, tb;
    double beta;
    int bias, act;
    int pad; /* extra elements on every leading dimension */
};

enum { VIA_PUBLIC, VIA_NOWORK, VIA_PART2, VIA_PART3, VIA_ISA0 };

static void run_gemm(int dbl, const struct gemm_case *g, int via, const void *A, int lda,
                     const void *B, int ldb, void *C, int ldc, const void *bias)
{
    int M = g->M, N = g->N, K = g->K;
    size_t ws = dbl ? kdk_dgemm_work_size(M, N, K) : kdk_sgemm_work_size(M, N, K);
    if (via == VIA_PART2 || via == VIA_PART3) {
        int np = via == VIA_PART2 ? 2 : 3;
        for (int part = 0; part < np; part++) {
            struct work w = work_new(dbl, ws);
            if (dbl)
                kdk_dgemm_part(part, np, M, N, K, A, lda, g->ta, B, ldb, g->tb, g->beta, C, ldc, bias,
                               g->act, w.p);
            else
                kdk_sgemm_part(part, np, M, N, K, A, lda, g->ta, B, ldb, g->tb, (float)g->beta, C, ldc,
                               bias, g->act, w.p);
            work_free(&w);
        }
        return;
    }
    struct work w = work_new(dbl, ws);
    if (via >= VIA_ISA0) {
        struct kdk_gemm_task t = {
            .m = M, .n = N, .k = K, .akind = KDK_A_MAT, .a = A, .lda = lda, .transa = g->ta,
            .b = B, .ldb = ldb, .transb = g->tb, .c = C, .ldc = ldc,
            .bias = bias, .act = g->act,
        };
        if (dbl) t.beta.d = g->beta;
        else t.beta.s = (float)g->beta;
        if (dbl)
            kdk_dgemm_task_isa(&t, w.p, via - VIA_ISA0);
        else
            kdk_sgemm_task_isa(&t, w.p, via - VIA_ISA0);
    } else {
        void *wp = via == VIA_NOWORK ? NULL : w.p;
        if (dbl)
            kdk_dgemm(M, N, K, A, lda, g->ta, B, ldb, g->tb, g->beta, C, ldc, bias, g->act, wp);
        else
            kdk_sgemm(M, N, K, A, lda, g->ta, B, ldb, g->tb, (float)g->beta, C, ldc, bias, g->act, wp);
    }
    work_free(&w);
}

/* Checks C = act(op(A)·op(B) + beta·C + bias) once for each way in vias[]
 * (the reference is computed once, in double, from op(A) and op(B)ᵀ). */
static void check_gemm_vias(int dbl, const struct gemm_case *g, const int *vias, int nvias)
{
    int M = g->M, N = g->N, K = g->K;
    int arows = g->ta ? K : M, acols = g->ta ? M : K;
    int brows = g->tb ? N : K, bcols = g->tb ? K : N;
    int lda = acols + g->pad, ldb = bcols + g->pad, ldc = N + g->pad;
    size_t nc = (size_t)M * ldc;
    void *A = trand(dbl, (size_t)arows * lda + 1), *B = trand(dbl, (size_t)brows * ldb + 1);
    void *C = talloc(dbl, nc + 1), *C0 = talloc(dbl, nc + 1);
    void *bias = g->bias ? trand(dbl, N) : NULL;
    double *opa = malloc(((size_t)M * K + 1) * sizeof *opa), *opbt = malloc(((size_t)N * K + 1) * sizeof *opbt);
    double *ref = malloc((size_t)M * N * sizeof *ref), *mag = malloc((size_t)M * N * sizeof *mag);
    for (size_t i = 0; i < nc; i++) {
        int inside = (int)(i % ldc) < N;
        tset(dbl, C0, i, !inside ? 12345.0 : g->beta == 0 ? NAN : urand());
    }
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            opa[(size_t)i * K + k] = tget(dbl, A, g->ta ? (size_t)k * lda + i : (size_t)i * lda + k);
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++)
            opbt[(size_t)j * K + k] = tget(dbl, B, g->tb ? (size_t)j * ldb + k : (size_t)k * ldb + j);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const double *a = opa + (size_t)i * K, *b = opbt + (size_t)j * K;
            double sum = 0, m = 0;
            for (int k = 0; k < K; k++) {
                sum += a[k] * b[k];
                m += fabs(a[k] * b[k]);
            }
            if (g->beta != 0) {
                double c = g->beta * tget(dbl, C0, (size_t)i * ldc + j);
                sum += c;
                m += fabs(c);
            }
            if (bias) {
                sum += tget(dbl, bias, j);
                m += fabs(tget(dbl, bias, j));
            }
            ref[(size_t)i * N + j] = (double)act_ref(sum, g->act);
            mag[(size_t)i * N + j] = m + fabs(sum);
        }

    for (int v = 0; v < nvias; v++) {
        memcpy(C, C0, nc * esize(dbl));
        run_gemm(dbl, g, vias[v], A, lda, B, ldb, C, ldc, bias);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double got = tget(dbl, C, (size_t)i * ldc + j), want = ref[(size_t)i * N + j];
                EXPECT(fabs(got - want) <= tol_of(dbl) * mag[(size_t)i * N + j] + 1e-300,
                              "gemm %s M=%d N=%d K=%d ta=%d tb=%d beta=%g bias=%d act=%d pad=%d via=%d: "
                              "C[%d][%d] = %.10g, want %.10g",
                              dbl ? "f64" : "f32", M, N, K, g->ta, g->tb, g->beta, g->bias, g->act,
                              g->pad, vias[v], i, j, got, want);
            }
        /* the padding of C's rows is never written */
        for (size_t i = 0; i < nc; i++)
            if ((int)(i % ldc) >= N) EXPECT(tget(dbl, C, i) == 12345.0, "gemm wrote C[%zu] past column N", i);
    }
    free(A);
    free(B);
    free(C);
    free(C0);
    free(bias);
    free(opa);
    free(opbt);
    free(ref);
    free(mag);
}

static void check_gemm(int dbl, const struct gemm_case *g, int via)
{
    check_gemm_vias(dbl, g, &via, 1);
}

/* Every way of running a GEMM: public entry, no-work path, each ISA variant. */
static void check_gemm_all(const struct gemm_case *g)
{
    int vias[2 + KDK_ISA_COUNT], n = 0;
    vias[n++] = VIA_PUBLIC;
    vias[n++] = VIA_NOWORK;
    for (int isa = 0; isa < KDK_ISA_COUNT; isa++)
        if (kdk_gemm_isa_supported(isa)) vias[n++] = VIA_ISA0 + isa;
    for (int dbl = 0; dbl < 2; dbl++) check_gemm_vias(dbl, g, vias, n);
}

START_TEST(test_gemm_shapes)
{
    static const int dims[] = {1, 7, 17, 33, 100};
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
                for (int c = 0; c < 5; c++) {
                    struct gemm_case g = {dims[a], dims[b], dims[c], t & 1, t >> 1, 0, 0, 0, 0};
                    check_gemm_all(&g);
                }
}
END_TEST

START_TEST(test_gemm_beta_bias_act)
{
    static const int shapes[][3] = {{1, 1, 1}, {5, 9, 3}, {13, 31, 40}, {33, 70, 17}, {64, 10, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int act = KDK_ACT_NONE; act < KDK_ACT_COUNT; act++) {
                struct gemm_case g = {shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t >> 1,
                                      (t & 1) ? 1.0 : 0.0, 1, act, 3};
                check_gemm_all(&g);
                g.beta = 0.5;
                g.bias = 0;
                check_gemm_all(&g);
            }
}
END_TEST

/* Shapes past every block size (KC 256, MC 144, NC 1024): the epilogue must
 * run once, after the last K block, and beta only on the first. */
START_TEST(test_gemm_blocking)
{
    struct gemm_case cases[] = {
        {150, 1030, 520, 0, 0, 1.0, 1, KDK_ACT_RELU, 0},
        {289, 65, 300, 1, 0, 0.0, 1, KDK_ACT_RELU, 1},
        {145, 129, 257, 0, 1, 1.0, 0, KDK_ACT_NONE, 0},
        {97, 200, 1000, 1, 1, 0.0, 1, KDK_ACT_TANH, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_gemm_all(&cases[i]);
}
END_TEST

/* The MLP 784-256-128-10 at batch 64: forward, dW = Xᵀ·dY, dX = dY·Wᵀ. */
START_TEST(test_gemm_mlp_shapes)
{
    struct gemm_case cases[] = {
        {64, 256, 784, 0, 0, 0.0, 1, KDK_ACT_RELU, 0},
        {64, 128, 256, 0, 0, 0.0, 1, KDK_ACT_RELU, 0},
        {64, 10, 128, 0, 0, 0.0, 1, KDK_ACT_NONE, 0},
        {784, 256, 64, 1, 0, 0.0, 0, KDK_ACT_NONE, 0},
        {128, 10, 64, 1, 0, 1.0, 0, KDK_ACT_NONE, 0},
        {64, 256, 128, 0, 1, 0.0, 0, KDK_ACT_NONE, 0},
        {64, 784, 256, 0, 1, 0.0, 0, KDK_ACT_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_gemm_all(&cases[i]);
}
END_TEST

/* Few rows (the GEMV path, M <= 4) and transposed A (packed): every
 * transpose, ragged N below, at and above a vector (10 < 16, 23, 40),
 * beta, bias and each activation, batch-1 MLP shapes. */
START_TEST(test_gemm_small_m)
{
    static const int ms[] = {1, 2, 3, 4, 5};
    static const int ns[][2] = {{10, 128}, {23, 7}, {40, 33}, {256, 784}, {1, 3}, {3, 2}};
    for (int mi = 0; mi < 5; mi++)
        for (int ni = 0; ni < 6; ni++)
            for (int t = 0; t < 4; t++) {
                struct gemm_case g = {ms[mi], ns[ni][0], ns[ni][1], t & 1, t >> 1, 0.0, 1,
                                      (mi + ni + t) % 4, (mi + t) % 3};
                check_gemm_all(&g);
                g.beta = 0.5;
                g.bias = 0;
                g.act = KDK_ACT_RELU;
                check_gemm_all(&g);
            }
    struct gemm_case cases[] = {
        {1, 256, 784, 0, 0, 0.0, 1, KDK_ACT_RELU, 0},
        {1, 128, 256, 0, 0, 0.0, 1, KDK_ACT_RELU, 0},
        {1, 10, 128, 0, 0, 0.0, 1, KDK_ACT_NONE, 0},
        {4, 784, 256, 0, 1, 1.0, 0, KDK_ACT_NONE, 0},
        {256, 128, 64, 1, 0, 0.0, 0, KDK_ACT_NONE, 0},
        {131, 10, 300, 1, 0, 1.0, 1, KDK_ACT_SIGMOID, 5},
        {1, 300, 5, 0, 0, 0.0, 1, KDK_ACT_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_gemm_all(&cases[i]);
        for (int dbl = 0; dbl < 2; dbl++) {
            check_gemm(dbl, &cases[i], VIA_PART2);
            check_gemm(dbl, &cases[i], VIA_PART3);
        }
    }
}
END_TEST

START_TEST(test_gemm_parts)
{
    struct gemm_case cases[] = {
        {64, 256, 100, 0, 0, 0.0, 1, KDK_ACT_RELU, 0},  /* splits N */
        {300, 70, 33, 1, 0, 1.0, 1, KDK_ACT_NONE, 2},   /* splits M */
        {17, 17, 17, 0, 1, 0.0, 1, KDK_ACT_SIGMOID, 1}, /* fewer blocks than parts */
        {1, 200, 5, 1, 1, 1.0, 0, KDK_ACT_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int dbl = 0; dbl < 2; dbl++) {
            check_gemm(dbl, &cases[i], VIA_PART2);
            check_gemm(dbl, &cases[i], VIA_PART3);
        }
}
END_TEST

/* The thread pool's split: any number of parts computes exactly the bytes
 * one call does (parts start on the micro-tiles of the instruction set in
 * use, kdk_gemm_split_cols), whether N or M is split, with ragged ends. */
START_TEST(test_gemm_parts_bit_identical)
{
    struct { int M, N, K, ta, tb, act; } cases[] = {
        {64, 256, 784, 0, 0, KDK_ACT_RELU}, /* a dense layer's forward: 16 column parts on AVX2 */
        {64, 200, 130, 0, 1, KDK_ACT_NONE}, /* N not a multiple of the tile */
        {784, 256, 64, 1, 0, KDK_ACT_NONE}, /* a weight gradient: splits M */
        {33, 70, 20, 0, 0, KDK_ACT_SIGMOID},
    };
    int unit = kdk_gemm_split_cols();
    ck_assert_msg(unit == 8 || unit == 16 || unit == 32, "split unit %d", unit);
    if (kdk_gemm_isa_supported(KDK_ISA_AVX2) && !kdk_gemm_isa_supported(KDK_ISA_AVX512)) ck_assert_int_eq(unit, 16);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int M = cases[i].M, N = cases[i].N, K = cases[i].K, ta = cases[i].ta, tb = cases[i].tb;
        int lda = ta ? M : K, ldb = tb ? K : N;
        float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
        float *bias = malloc(sizeof(float) * (size_t)N), *one = malloc(sizeof(float) * (size_t)M * N);
        float *parts = malloc(sizeof(float) * (size_t)M * N);
        float *work = malloc(sizeof(float) * kdk_sgemm_work_size(M, N, K) + 64);
        uint32_t r = 12345u + (uint32_t)i;
        for (int k = 0; k < M * K; k++) A[k] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (int k = 0; k < K * N; k++) B[k] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (int k = 0; k < N; k++) bias[k] = (float)k * 0.01f;
        kdk_sgemm(M, N, K, A, lda, ta, B, ldb, tb, 0.0f, one, N, bias, cases[i].act, work);
        int nps[] = {2, 3, 5, 16};
        for (int q = 0; q < 4; q++) {
            for (int k = 0; k < M * N; k++) parts[k] = NAN;
            for (int part = 0; part < nps[q]; part++)
                kdk_sgemm_part(part, nps[q], M, N, K, A, lda, ta, B, ldb, tb, 0.0f, parts, N, bias, cases[i].act, work);
            for (int k = 0; k < M * N; k++)
                ck_assert_msg(memcmp(&parts[k], &one[k], sizeof(float)) == 0,
                              "%dx%dx%d in %d parts: C[%d] = %.9g, one call %.9g", M, N, K, nps[q], k, parts[k], one[k]);
        }
        free(A), free(B), free(bias), free(one), free(parts), free(work);
    }
}
END_TEST

/* K = 0: C = act(beta·C + bias); M or N = 0 touches nothing. */
START_TEST(test_gemm_degenerate)
{
    struct gemm_case g = {5, 6, 0, 0, 0, 1.0, 1, KDK_ACT_RELU, 0};
    check_gemm_all(&g);
    g.beta = 0;
    check_gemm_all(&g);
    float c = 3.0f;
    kdk_sgemm(0, 1, 4, NULL, 4, 0, NULL, 1, 0, 0.0f, &c, 1, NULL, 0, NULL);
    kdk_sgemm(1, 0, 4, NULL, 4, 0, NULL, 1, 0, 0.0f, &c, 1, NULL, 0, NULL);
    ck_assert(c == 3.0f);
    ck_assert_uint_eq(kdk_sgemm_work_size(0, 5, 5), 0);
}
END_TEST

/* Work sizes are bounded by the blocking, not by M·N·K, and grow with the shape. */
START_TEST(test_gemm_work_size)
{
    size_t big = kdk_sgemm_work_size(100000, 100000, 100000);
    ck_assert_uint_le(big, (size_t)KDK_KC * (KDK_NC + KDK_NR_MAX + KDK_MC + KDK_MR_MAX) + 64);
    ck_assert_uint_le(kdk_sgemm_work_size(64, 256, 784), big);
    ck_assert_uint_le(kdk_sgemm_work_size(10, 10, 10), kdk_sgemm_work_size(20, 20, 20));
    ck_assert_uint_eq(kdk_dgemm_work_size(64, 256, 784) - 8, kdk_sgemm_work_size(64, 256, 784) - 16);
}
END_TEST

/* ---- op(B) packed once (kdk_?gemm_pack_b, kdk_?gemm_packed_b) ---- */

struct packed_case {
    int M, N, K, tb, bias, act;
    double beta;
};

/* The operands of one packed case: B and a second B2 of the same shape
 * (calls given B2 with B's packing show which one the driver read). */
struct packed_ops {
    int dbl, ldb;
    void *A, *B, *B2, *bias, *C0;
};

static struct packed_ops packed_ops_new(int dbl, const struct packed_case *g)
{
    struct packed_ops o = {dbl, g->tb ? g->K : g->N, NULL, NULL, NULL, NULL, NULL};
    o.A = trand(dbl, (size_t)g->M * g->K);
    o.B = trand(dbl, (size_t)g->K * g->N);
    o.B2 = trand(dbl, (size_t)g->K * g->N);
    o.bias = g->bias ? trand(dbl, (size_t)g->N) : NULL;
    o.C0 = trand(dbl, (size_t)g->M * g->N);
    return o;
}

static void packed_ops_free(struct packed_ops *o)
{
    free(o->A), free(o->B), free(o->B2), free(o->bias), free(o->C0);
}

/* A buffer of kdk_?gemm_packed_b_size(max_m, N, K) elements (a work
 * buffer: misaligned, with a canary) holding op(B) packed for variant isa. */
static struct work packed_new(int dbl, int isa, int max_m, int N, int K, const void *B, int ldb, int tb)
{
    size_t n = dbl ? kdk_dgemm_packed_b_size(max_m, N, K) : kdk_sgemm_packed_b_size(max_m, N, K);
    ck_assert_uint_gt(n, 0);
    struct work w = work_new(dbl, n);
    if (dbl)
        kdk_dgemm_pack_b_isa(N, K, B, ldb, tb, w.p, isa);
    else
        kdk_sgemm_pack_b_isa(N, K, B, ldb, tb, w.p, isa);
    return w;
}

/* C (a fresh buffer from o->C0) of variant isa's driver for dims M×N×K of
 * case g, B (ldb o->ldb) and packed (or NULL). */
static void *packed_run(const struct packed_ops *o, const struct packed_case *g, int isa, int N, int K,
                        const void *B, const void *packed)
{
    int dbl = o->dbl;
    void *C = talloc(dbl, (size_t)g->M * g->N);
    memcpy(C, o->C0, (size_t)g->M * g->N * esize(dbl));
    size_t ws = dbl ? kdk_dgemm_work_size(g->M, N, K) : kdk_sgemm_work_size(g->M, N, K);
    struct work w = work_new(dbl, ws);
    struct kdk_gemm_task t = {
        .m = g->M, .n = N, .k = K, .akind = KDK_A_MAT, .a = o->A, .lda = g->K,
        .b = B, .ldb = o->ldb, .transb = g->tb, .bpacked = packed,
        .c = C, .ldc = g->N, .bias = o->bias, .act = g->act,
    };
    if (dbl) {
        t.beta.d = g->beta;
        kdk_dgemm_task_isa(&t, w.p, isa);
    } else {
        t.beta.s = (float)g->beta;
        kdk_sgemm_task_isa(&t, w.p, isa);
    }
    work_free(&w);
    return C;
}

static void same_c(const struct packed_case *g, int dbl, const void *got, const void *want, const char *what, int isa)
{
    size_t n = (size_t)g->M * g->N;
    EXPECT(memcmp(got, want, n * esize(dbl)) == 0, "%s %s isa %d: M=%d N=%d K=%d tb=%d bias=%d act=%d beta=%g",
           what, dbl ? "f64" : "f32", isa, g->M, g->N, g->K, g->tb, g->bias, g->act, g->beta);
}

/* For each variant this CPU runs: the driver given op(B) packed once gives
 * the bits of the one that packs it; past the GEMV path (M > 4) it reads
 * every panel from the packing (B2 given, B's result); a buffer packed for
 * another variant's NR is ignored (B2's result). Then the public entries
 * against kdk_?gemm, from M 1 on. */
static void check_packed_b(const struct packed_case *g)
{
    for (int dbl = 0; dbl < 2; dbl++) {
        struct packed_ops o = packed_ops_new(dbl, g);
        for (int isa = 0; isa < KDK_ISA_COUNT; isa++) {
            if (!kdk_gemm_isa_supported(isa)) continue;
            struct work pk = packed_new(dbl, isa, KDK_MAX(g->M, KDK_GEMV_MAX_M + 1), g->N, g->K, o.B, o.ldb, g->tb);
            void *want = packed_run(&o, g, isa, g->N, g->K, o.B, NULL);
            void *got = packed_run(&o, g, isa, g->N, g->K, o.B, pk.p);
            same_c(g, dbl, got, want, "packed B", isa);
            free(got);
            if (g->M > KDK_GEMV_MAX_M) {
                got = packed_run(&o, g, isa, g->N, g->K, o.B2, pk.p);
                same_c(g, dbl, got, want, "panels read from the packing", isa);
                free(got);
            }
            free(want);
            for (int other = 0; other < KDK_ISA_COUNT && !dbl; other++) {
                if (other == isa || !kdk_gemm_isa_supported(other)) continue;
                want = packed_run(&o, g, other, g->N, g->K, o.B2, NULL);
                got = packed_run(&o, g, other, g->N, g->K, o.B2, pk.p);
                same_c(g, dbl, got, want, "packed for another variant, ignored", other);
                free(got);
                free(want);
            }
            work_free(&pk);
        }
        /* the public entries: this CPU's variant, every path from M 1 on */
        size_t n = dbl ? kdk_dgemm_packed_b_size(g->M, g->N, g->K) : kdk_sgemm_packed_b_size(g->M, g->N, g->K);
        struct work pk = work_new(dbl, n);
        void *want = talloc(dbl, (size_t)g->M * g->N), *got = talloc(dbl, (size_t)g->M * g->N);
        size_t ws = dbl ? kdk_dgemm_work_size(g->M, g->N, g->K) : kdk_sgemm_work_size(g->M, g->N, g->K);
        struct work w = work_new(dbl, ws);
        memcpy(want, o.C0, (size_t)g->M * g->N * esize(dbl));
        memcpy(got, o.C0, (size_t)g->M * g->N * esize(dbl));
        const void *packed = n ? pk.p : NULL;
        if (dbl) {
            if (n) kdk_dgemm_pack_b(g->N, g->K, o.B, o.ldb, g->tb, pk.p);
            kdk_dgemm(g->M, g->N, g->K, o.A, g->K, 0, o.B, o.ldb, g->tb, g->beta, want, g->N, o.bias, g->act, w.p);
            kdk_dgemm_packed_b(g->M, g->N, g->K, o.A, g->K, 0, o.B, o.ldb, g->tb, packed, g->beta, got, g->N,
                               o.bias, g->act, w.p);
        } else {
            if (n) kdk_sgemm_pack_b(g->N, g->K, o.B, o.ldb, g->tb, pk.p);
            kdk_sgemm(g->M, g->N, g->K, o.A, g->K, 0, o.B, o.ldb, g->tb, (float)g->beta, want, g->N, o.bias,
                      g->act, w.p);
            kdk_sgemm_packed_b(g->M, g->N, g->K, o.A, g->K, 0, o.B, o.ldb, g->tb, packed, (float)g->beta, got,
                               g->N, o.bias, g->act, w.p);
        }
        same_c(g, dbl, got, want, "kdk_?gemm_packed_b", -1);
        work_free(&w);
        work_free(&pk);
        free(want);
        free(got);
        packed_ops_free(&o);
    }
}

/* The MLP 784-256-128-10's layers from batch 1 to 100 (GEMV, B read in
 * place, packed by the first tile, several row blocks), ragged N, K over
 * two and three KC blocks, N over NC; B row-major and transposed; with and
 * without bias, ReLU, beta. */
START_TEST(test_gemm_packed_b_bits)
{
    static const int ms[] = {1, 5, 16, 17, 64, 100};
    static const int layers[][2] = {{256, 784}, {128, 256}, {10, 128}};
    int c = 0;
    for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++)
        for (int l = 0; l < 3; l++)
            for (int tb = 0; tb < 2; tb++, c++) {
                struct packed_case g = {ms[m], layers[l][0], layers[l][1], tb, c % 2,
                                        c % 3 ? KDK_ACT_RELU : KDK_ACT_NONE, c % 5 ? 0.0 : 1.0};
                check_packed_b(&g);
            }
    struct packed_case cases[] = {
        {5, 33, 70, 0, 1, KDK_ACT_RELU, 0.0},  {17, 33, 70, 1, 1, KDK_ACT_NONE, 0.5},
        {64, 33, 70, 0, 0, KDK_ACT_RELU, 1.0}, {64, 1, 40, 0, 1, KDK_ACT_RELU, 0.0},
        {64, 1, 40, 1, 1, KDK_ACT_NONE, 0.0},  {7, 1, 40, 0, 0, KDK_ACT_NONE, 0.0},
        {64, 17, 50, 0, 1, KDK_ACT_RELU, 0.0}, {9, 17, 50, 1, 0, KDK_ACT_RELU, 0.0},
        {64, 33, 300, 0, 1, KDK_ACT_RELU, 0.0}, {64, 33, 600, 1, 1, KDK_ACT_RELU, 1.0},
        {100, 40, 600, 0, 0, KDK_ACT_NONE, 0.0}, {12, 40, 300, 0, 1, KDK_ACT_RELU, 0.0},
        {20, 1030, 300, 0, 1, KDK_ACT_RELU, 0.0}, {20, 1030, 300, 1, 1, KDK_ACT_NONE, 0.0},
        {150, 1030, 40, 0, 0, KDK_ACT_RELU, 1.0}, {6, 1030, 40, 1, 1, KDK_ACT_RELU, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_packed_b(&cases[i]);
}
END_TEST

/* A buffer packed for other dims or the other transB (or not packed at all)
 * is ignored: the result is B2's, not the packing's, bit for bit. */
START_TEST(test_gemm_packed_b_mismatch)
{
    struct packed_case g = {64, 64, 100, 0, 1, KDK_ACT_RELU, 0.0};
    for (int dbl = 0; dbl < 2; dbl++)
        for (int isa = 0; isa < KDK_ISA_COUNT; isa++) {
            if (!kdk_gemm_isa_supported(isa)) continue;
            struct packed_ops o = packed_ops_new(dbl, &g);
            struct work pk = packed_new(dbl, isa, g.M, g.N, g.K, o.B, o.ldb, 0);
            struct { int N, K, tb; } calls[] = {{63, 100, 0}, {64, 99, 0}, {64, 100, 1}};
            for (int c = 0; c < 3; c++) {
                struct packed_case h = g;
                h.tb = calls[c].tb;
                void *want = packed_run(&o, &h, isa, calls[c].N, calls[c].K, o.B2, NULL);
                void *got = packed_run(&o, &h, isa, calls[c].N, calls[c].K, o.B2, pk.p);
                same_c(&h, dbl, got, want, "packed for other dims, ignored", isa);
                free(want);
                free(got);
            }
            /* a damaged header */
            void *want = packed_run(&o, &g, isa, g.N, g.K, o.B2, NULL);
            ((unsigned char *)pk.p)[0] ^= 1;
            void *got = packed_run(&o, &g, isa, g.N, g.K, o.B2, pk.p);
            same_c(&g, dbl, got, want, "damaged header, ignored", isa);
            free(got);
            ((unsigned char *)pk.p)[0] ^= 1;
            got = packed_run(&o, &g, isa, g.N, g.K, o.B2, pk.p);
            EXPECT(memcmp(got, want, (size_t)g.M * g.N * esize(dbl)) != 0, "the header restored, the packing is read");
            free(got);
            free(want);
            work_free(&pk);
            packed_ops_free(&o);
        }
}
END_TEST

/* Sizes: none up to M 4 (the GEMV path reads B in place); above, a 64-byte
 * header and K rows of N rounded up to AVX-512's 32 floats (16 doubles),
 * whatever max_m. */
START_TEST(test_gemm_packed_b_size)
{
    for (int m = -1; m <= KDK_GEMV_MAX_M; m++) {
        ck_assert_uint_eq(kdk_sgemm_packed_b_size(m, 256, 784), 0);
        ck_assert_uint_eq(kdk_dgemm_packed_b_size(m, 256, 784), 0);
    }
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(5, 256, 784), 16 + 784 * 256);
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(100000, 256, 784), 16 + 784 * 256);
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(64, 10, 128), 16 + 128 * 32);
    ck_assert_uint_eq(kdk_dgemm_packed_b_size(64, 10, 128), 8 + 128 * 16);
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(64, 1030, 300), 16 + 300 * 1056);
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(64, 0, 300), 0);
    ck_assert_uint_eq(kdk_sgemm_packed_b_size(64, 10, 0), 0);
}
END_TEST

START_TEST(test_colsum)
{
    for (int dbl = 0; dbl < 2; dbl++) {
        int M = 37, N = 19, ld = 23;
        void *X = trand(dbl, (size_t)M * ld), *out = trand(dbl, N), *out0 = talloc(dbl, N);
        memcpy(out0, out, N * esize(dbl));
        for (int acc = 1; acc >= 0; acc--) {
            if (dbl)
                kdk_dcolsum(M, N, X, ld, out, acc);
            else
                kdk_scolsum(M, N, X, ld, out, acc);
            for (int j = 0; j < N; j++) {
                long double s = acc ? tget(dbl, out0, j) : 0, mag = fabsl(s);
                for (int i = 0; i < M; i++) {
                    s += tget(dbl, X, (size_t)i * ld + j);
                    mag += fabs(tget(dbl, X, (size_t)i * ld + j));
                }
                CHECK_CLOSE(tget(dbl, out, j), s, (double)mag, dbl, "colsum", j);
            }
        }
        free(X);
        free(out);
        free(out0);
    }
}
END_TEST

/* ---- Conv2D ---- */

struct conv_case {
    int n, h, w, c, oh, ow, f, kh, kw, sh, sw, pt, pl;
};

#define CGEOM(g) (g)->n, (g)->h, (g)->w, (g)->c, (g)->oh, (g)->ow, (g)->f, (g)->kh, (g)->kw, \
                 (g)->sh, (g)->sw, (g)->pt, (g)->pl

/* Keras padding: 'valid' or 'same' (pad_top = total/2, the rest at the bottom). */
static struct conv_case conv_make(int n, int h, int w, int c, int f, int kh, int kw, int sh, int sw,
                                  int same)
{
    struct conv_case g = {n, h, w, c, 0, 0, f, kh, kw, sh, sw, 0, 0};
    if (same) {
        g.oh = (h + sh - 1) / sh;
        g.ow = (w + sw - 1) / sw;
        g.pt = KDK_MAX((g.oh - 1) * sh + kh - h, 0) / 2;
        g.pl = KDK_MAX((g.ow - 1) * sw + kw - w, 0) / 2;
    } else {
        g.oh = (h - kh) / sh + 1;
        g.ow = (w - kw) / sw + 1;
    }
    return g;
}

/* Calls the input element of output (b, oy, ox) and tap (ky, kx): its index in x, or -1. */
static long conv_in(const struct conv_case *g, int b, int oy, int ox, int ky, int kx)
{
    int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return (((long)b * g->h + iy) * g->w + ix) * g->c;
}

enum { CONV_FWD, CONV_DATA, CONV_FILTER };

static size_t conv_ws(int dbl, const struct conv_case *g, int which)
{
    if (which == CONV_FWD)
        return dbl ? kdk_dconv2d_fwd_work_size(CGEOM(g)) : kdk_sconv2d_fwd_work_size(CGEOM(g));
    if (which == CONV_DATA)
        return dbl ? kdk_dconv2d_bwd_data_work_size(CGEOM(g)) : kdk_sconv2d_bwd_data_work_size(CGEOM(g));
    return dbl ? kdk_dconv2d_bwd_filter_work_size(CGEOM(g)) : kdk_sconv2d_bwd_filter_work_size(CGEOM(g));
}

/* Runs one conv kernel as nparts parts (nparts 0: the plain entry point),
 * with or without work. */
static void conv_run(int dbl, const struct conv_case *g, int which, int nparts, int use_work,
                     const void *in1, const void *in2, const void *bias, int act, void *out, int acc)
{
    int np = nparts ? nparts : 1;
    for (int part = 0; part < np; part++) {
        struct work w = work_new(dbl, conv_ws(dbl, g, which));
        void *wp = use_work ? w.p : NULL;
        if (which == CONV_FWD) {
            if (!nparts && dbl) kdk_dconv2d_fwd(CGEOM(g), in1, in2, bias, act, out, wp);
            else if (!nparts) kdk_sconv2d_fwd(CGEOM(g), in1, in2, bias, act, out, wp);
            else if (dbl) kdk_dconv2d_fwd_part(part, np, CGEOM(g), in1, in2, bias, act, out, wp);
            else kdk_sconv2d_fwd_part(part, np, CGEOM(g), in1, in2, bias, act, out, wp);
        } else if (which == CONV_DATA) {
            if (!nparts && dbl) kdk_dconv2d_bwd_data(CGEOM(g), in1, in2, out, acc, wp);
            else if (!nparts) kdk_sconv2d_bwd_data(CGEOM(g), in1, in2, out, acc, wp);
            else if (dbl) kdk_dconv2d_bwd_data_part(part, np, CGEOM(g), in1, in2, out, acc, wp);
            else kdk_sconv2d_bwd_data_part(part, np, CGEOM(g), in1, in2, out, acc, wp);
        } else {
            if (!nparts && dbl) kdk_dconv2d_bwd_filter(CGEOM(g), in1, in2, out, acc, wp);
            else if (!nparts) kdk_sconv2d_bwd_filter(CGEOM(g), in1, in2, out, acc, wp);
            else if (dbl) kdk_dconv2d_bwd_filter_part(part, np, CGEOM(g), in1, in2, out, acc, wp);
            else kdk_sconv2d_bwd_filter_part(part, np, CGEOM(g), in1, in2, out, acc, wp);
        }
        work_free(&w);
    }
}

static void check_conv(int dbl, const struct conv_case *g, int nparts, int use_work)
{
    size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * g->f;
    size_t nw = (size_t)g->kh * g->kw * g->c * g->f;
    void *x = trand(dbl, nx), *wt = trand(dbl, nw), *bias = trand(dbl, g->f), *dy = trand(dbl, ny);
    void *y = talloc(dbl, ny), *dx = talloc(dbl, nx), *dw = talloc(dbl, nw);
    long double *rx = calloc(nx, sizeof *rx), *mx = calloc(nx, sizeof *mx);
    long double *rw = calloc(nw, sizeof *rw), *mw = calloc(nw, sizeof *mw);
    char what[160];
    snprintf(what, sizeof what, "conv n%d %dx%dx%d->%dx%dx%d k%dx%d s%d,%d p%d,%d parts %d work %d",
             g->n, g->h, g->w, g->c, g->oh, g->ow, g->f, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
             nparts, use_work);

    /* forward, bias + relu; y starts as NaN: nothing may read it */
    tfill(dbl, y, ny, NAN);
    conv_run(dbl, g, CONV_FWD, nparts, use_work, x, wt, bias, KDK_ACT_RELU, y, 0);
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int o = 0; o < g->f; o++) {
                    long double s = tget(dbl, bias, o), mag = fabsl(s);
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            long xi = conv_in(g, b, oy, ox, ky, kx);
                            if (xi < 0) continue;
                            for (int ci = 0; ci < g->c; ci++) {
                                long double t = (long double)tget(dbl, x, xi + ci) *
                                                tget(dbl, wt, (((size_t)ky * g->kw + kx) * g->c + ci) * g->f + o);
                                s += t;
                                mag += fabsl(t);
                            }
                        }
                    size_t yi = (((size_t)b * g->oh + oy) * g->ow + ox) * g->f + o;
                    CHECK_CLOSE(tget(dbl, y, yi), act_ref(s, KDK_ACT_RELU), (double)mag, dbl, what, yi);
                }

    /* reference gradients */
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ky = 0; ky < g->kh; ky++)
                    for (int kx = 0; kx < g->kw; kx++) {
                        long xi = conv_in(g, b, oy, ox, ky, kx);
                        if (xi < 0) continue;
                        size_t yi = (((size_t)b * g->oh + oy) * g->ow + ox) * g->f;
                        for (int ci = 0; ci < g->c; ci++)
                            for (int o = 0; o < g->f; o++) {
                                size_t wi = (((size_t)ky * g->kw + kx) * g->c + ci) * g->f + o;
                                long double d = tget(dbl, dy, yi + o);
                                long double tx = d * tget(dbl, wt, wi), tw = d * tget(dbl, x, xi + ci);
                                rx[xi + ci] += tx;
                                mx[xi + ci] += fabsl(tx);
                                rw[wi] += tw;
                                mw[wi] += fabsl(tw);
                            }
                    }

    /* data gradient: overwrite (dx NaN) then accumulate onto 1.0 */
    for (int acc = 0; acc < 2; acc++) {
        tfill(dbl, dx, nx, acc ? 1.0 : NAN);
        conv_run(dbl, g, CONV_DATA, nparts, use_work, dy, wt, NULL, 0, dx, acc);
        for (size_t i = 0; i < nx; i++)
            CHECK_CLOSE(tget(dbl, dx, i), rx[i] + acc, (double)mx[i] + acc, dbl, what, i);
    }
    /* filter gradient */
    for (int acc = 0; acc < 2; acc++) {
        tfill(dbl, dw, nw, acc ? 1.0 : NAN);
        conv_run(dbl, g, CONV_FILTER, nparts, use_work, x, dy, NULL, 0, dw, acc);
        for (size_t i = 0; i < nw; i++)
            CHECK_CLOSE(tget(dbl, dw, i), rw[i] + acc, (double)mw[i] + acc, dbl, what, i);
    }
    free(x);
    free(wt);
    free(bias);
    free(dy);
    free(y);
    free(dx);
    free(dw);
    free(rx);
    free(mx);
    free(rw);
    free(mw);
}

static struct conv_case conv_cases[16];

static int conv_case_list(void)
{
    int k = 0;
    conv_cases[k++] = conv_make(2, 28, 28, 1, 8, 3, 3, 1, 1, 0);   /* the CNN's first layer */
    conv_cases[k++] = conv_make(2, 13, 13, 32, 64, 3, 3, 1, 1, 0); /* second: kk = 288 > KC */
    conv_cases[k++] = conv_make(3, 9, 11, 3, 5, 3, 3, 2, 2, 1);    /* stride 2, 'same' */
    conv_cases[k++] = conv_make(2, 8, 8, 4, 6, 5, 5, 1, 1, 1);     /* 'same', pad 2 */
    conv_cases[k++] = conv_make(1, 7, 7, 5, 7, 1, 1, 1, 1, 0);     /* 1×1: plain GEMM path */
    conv_cases[k++] = conv_make(2, 10, 9, 3, 4, 4, 2, 2, 3, 1);    /* uneven kernel and strides */
    conv_cases[k++] = conv_make(2, 12, 12, 17, 33, 3, 3, 2, 2, 0); /* stride 2 'valid', odd c, f */
    conv_cases[k++] = conv_make(1, 20, 37, 3, 4, 3, 3, 2, 2, 1);   /* wide rows: strided gathers */
    conv_cases[k++] = conv_make(2, 9, 10, 9, 5, 3, 3, 1, 1, 1);    /* c >= 8 read in place, 'same' */
    conv_cases[k++] = conv_make(1, 11, 19, 12, 40, 3, 3, 2, 2, 1); /* the same with stride 2 */
    conv_cases[k++] = conv_make(1, 7, 9, 32, 8, 3, 3, 1, 1, 1);    /* whole vectors per tap, 'same' */
    /* windows that lie wholly in the padding */
    conv_cases[k++] = (struct conv_case){1, 4, 4, 2, 8, 8, 3, 3, 3, 1, 1, 3, 3};
    return k;
}

START_TEST(test_conv)
{
    int ncases = conv_case_list();
    for (int i = 0; i < ncases; i++)
        for (int dbl = 0; dbl < 2; dbl++) {
            check_conv(dbl, &conv_cases[i], 0, 1);
            check_conv(dbl, &conv_cases[i], 0, 0);
            check_conv(dbl, &conv_cases[i], 2, 1);
            check_conv(dbl, &conv_cases[i], 3, 1);
        }
}
END_TEST

/* Every instruction-set variant has its own im2col packing and direct paths:
 * run forward and filter-gradient tasks on each against the scratch-free loops. */
START_TEST(test_conv_isa_variants)
{
    int ncases = conv_case_list();
    for (int isa = 0; isa < KDK_ISA_COUNT; isa++) {
        if (!kdk_gemm_isa_supported(isa)) continue;
        for (int i = 0; i < ncases; i++) {
            const struct conv_case *g = &conv_cases[i];
            struct kdk_conv_geom geom = {CGEOM(g)};
            int kk = g->kh * g->kw * g->c, pix = g->n * g->oh * g->ow;
            float *x = trand(0, (size_t)g->n * g->h * g->w * g->c), *dy = trand(0, (size_t)pix * g->f);
            float *wt = trand(0, (size_t)kk * g->f), *y = talloc(0, (size_t)pix * g->f);
            float *y_ref = talloc(0, (size_t)pix * g->f);
            float *dw = talloc(0, (size_t)kk * g->f), *dw_ref = talloc(0, (size_t)kk * g->f);
            struct work w = work_new(0, kdk_sgemm_work_size(pix, g->f, kk));
            struct kdk_gemm_task t = {
                .m = pix, .n = g->f, .k = kk, .akind = KDK_A_IM2COL, .a = x, .g = &geom,
                .b = wt, .ldb = g->f, .beta.s = 0, .c = y, .ldc = g->f, .act = KDK_ACT_NONE,
            };
            kdk_sgemm_task_isa(&t, w.p, isa);
            work_free(&w);
            w = work_new(0, kdk_sgemm_work_size(kk, g->f, pix));
            struct kdk_gemm_task tf = {
                .m = kk, .n = g->f, .k = pix, .akind = KDK_A_IM2COL_T, .a = x, .g = &geom,
                .b = dy, .ldb = g->f, .beta.s = 0, .c = dw, .ldc = g->f, .act = KDK_ACT_NONE,
            };
            kdk_sgemm_task_isa(&tf, w.p, isa);
            work_free(&w);
            kdk_sconv2d_fwd(CGEOM(g), x, wt, NULL, KDK_ACT_NONE, y_ref, NULL);
            kdk_sconv2d_bwd_filter(CGEOM(g), x, dy, dw_ref, 0, NULL);
            for (size_t j = 0; j < (size_t)pix * g->f; j++)
                CHECK_CLOSE(y[j], y_ref[j], 1.0, 0, "im2col forward", j);
            for (size_t j = 0; j < (size_t)kk * g->f; j++)
                CHECK_CLOSE(dw[j], dw_ref[j], 10.0, 0, "im2col filter gradient", j);
            free(x);
            free(dy);
            free(wt);
            free(y);
            free(y_ref);
            free(dw);
            free(dw_ref);
        }
    }
}
END_TEST

/* ---- pooling ---- */

struct pool_case {
    int n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl;
};

#define PGEOM(g) (g)->n, (g)->h, (g)->w, (g)->c, (g)->oh, (g)->ow, (g)->kh, (g)->kw, (g)->sh, \
                 (g)->sw, (g)->pt, (g)->pl

static struct pool_case pool_make(int n, int h, int w, int c, int k, int s, int same)
{
    struct conv_case cg = conv_make(n, h, w, c, 1, k, k, s, s, same);
    struct pool_case g = {n, h, w, c, cg.oh, cg.ow, k, k, s, s, cg.pt, cg.pl};
    return g;
}

static void check_pool(int dbl, const struct pool_case *g, int ties)
{
    size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * g->c;
    size_t hwc = (size_t)g->h * g->w * g->c;
    void *x = talloc(dbl, nx), *y = talloc(dbl, ny), *dy = trand(dbl, ny), *dx = talloc(dbl, nx);
    int32_t *am = malloc(ny * sizeof *am);
    int32_t *ref_am = malloc(ny * sizeof *ref_am);
    double *ref_dx = calloc(nx, sizeof *ref_dx), *ref_adx[2] = {calloc(nx, 8), calloc(nx, 8)};
    char what[160];
    snprintf(what, sizeof what, "pool n%d %dx%dx%d->%dx%d k%d s%d p%d,%d ties %d", g->n, g->h, g->w,
             g->c, g->oh, g->ow, g->kh, g->sh, g->pt, g->pl, ties);
    for (size_t i = 0; i < nx; i++) tset(dbl, x, i, ties ? floor((urand() + 1) * 1.5) : urand());

    /* max pool forward */
    if (dbl)
        kdk_dmaxpool2d_fwd(PGEOM(g), x, y, am);
    else
        kdk_smaxpool2d_fwd(PGEOM(g), x, y, am);
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int ci = 0; ci < g->c; ci++) {
                    size_t o = (((size_t)b * g->oh + oy) * g->ow + ox) * g->c + ci;
                    double best = 0, sum = 0;
                    int at = -1, cnt = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                            int idx = (iy * g->w + ix) * g->c + ci;
                            double v = tget(dbl, x, b * hwc + idx);
                            if (at < 0 || v > best) {
                                best = v;
                                at = idx;
                            }
                            sum += v;
                            cnt++;
                        }
                    ref_am[o] = at;
                    CHECK_CLOSE(tget(dbl, y, o), best, 0.0, dbl, what, o);
                    EXPECT(am[o] == at, "%s: argmax[%zu] = %d, want %d", what, o, am[o], at);
                    if (at >= 0) ref_dx[b * hwc + at] += tget(dbl, dy, o);
                    for (int cp = 0; cp < 2; cp++) {
                        int div = cp ? g->kh * g->kw : cnt;
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                                ref_adx[cp][b * hwc + (iy * g->w + ix) * g->c + ci] +=
                                    tget(dbl, dy, o) / div;
                            }
                    }
                    (void)sum;
                }

    /* max pool backward: with argmax, and recomputing it; overwrite and accumulate */
    for (int mode = 0; mode < 4; mode++) {
        int acc = mode & 1, use_am = mode >> 1;
        tfill(dbl, dx, nx, acc ? 2.0 : NAN);
        if (dbl)
            kdk_dmaxpool2d_bwd(PGEOM(g), use_am ? NULL : x, use_am ? am : NULL, dy, dx, acc);
        else
            kdk_smaxpool2d_bwd(PGEOM(g), use_am ? NULL : x, use_am ? am : NULL, dy, dx, acc);
        for (size_t i = 0; i < nx; i++)
            CHECK_CLOSE(tget(dbl, dx, i), ref_dx[i] + 2 * acc, 4.0, dbl, what, i);
    }

    /* average pool, counting only valid positions (Keras) and counting padding */
    for (int cp = 0; cp < 2; cp++) {
        if (dbl)
            kdk_davgpool2d_fwd(PGEOM(g), cp, x, y);
        else
            kdk_savgpool2d_fwd(PGEOM(g), cp, x, y);
        for (int b = 0; b < g->n; b++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++)
                    for (int ci = 0; ci < g->c; ci++) {
                        double sum = 0, mag = 0;
                        int cnt = 0;
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = oy * g->sh + ky - g->pt, ix = ox * g->sw + kx - g->pl;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                                double v = tget(dbl, x, b * hwc + (iy * g->w + ix) * g->c + ci);
                                sum += v;
                                mag += fabs(v);
                                cnt++;
                            }
                        int div = cp ? g->kh * g->kw : cnt;
                        size_t o = (((size_t)b * g->oh + oy) * g->ow + ox) * g->c + ci;
                        CHECK_CLOSE(tget(dbl, y, o), div ? sum / div : 0, mag, dbl, what, o);
                    }
        for (int acc = 0; acc < 2; acc++) {
            tfill(dbl, dx, nx, acc ? 2.0 : NAN);
            if (dbl)
                kdk_davgpool2d_bwd(PGEOM(g), cp, dy, dx, acc);
            else
                kdk_savgpool2d_bwd(PGEOM(g), cp, dy, dx, acc);
            for (size_t i = 0; i < nx; i++)
                CHECK_CLOSE(tget(dbl, dx, i), ref_adx[cp][i] + 2 * acc, 4.0, dbl, what, i);
        }
    }
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(am);
    free(ref_am);
    free(ref_dx);
    free(ref_adx[0]);
    free(ref_adx[1]);
}

START_TEST(test_pool)
{
    struct pool_case cases[] = {
        pool_make(2, 26, 26, 32, 2, 2, 0), /* the CNN's pools */
        pool_make(2, 11, 11, 64, 2, 2, 0), /* drops the last row and column */
        pool_make(2, 7, 7, 3, 3, 2, 1),    /* 'same', padding on both sides */
        pool_make(1, 5, 6, 70, 2, 1, 1),   /* 'same', padding only at the end; c > 64 */
        pool_make(3, 4, 4, 2, 3, 1, 1),
        {1, 3, 3, 2, 4, 4, 2, 2, 1, 1, 2, 2}, /* windows wholly in the padding */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int dbl = 0; dbl < 2; dbl++)
            for (int ties = 0; ties < 2; ties++) check_pool(dbl, &cases[i], ties);
}
END_TEST

START_TEST(test_global_pool)
{
    static const int shapes[][3] = {{3, 49, 10}, {2, 1, 70}, {2, 25, 130}};
    for (size_t s = 0; s < 3; s++)
        for (int dbl = 0; dbl < 2; dbl++) {
            int n = shapes[s][0], hw = shapes[s][1], c = shapes[s][2];
            size_t nx = (size_t)n * hw * c, ny = (size_t)n * c;
            void *x = talloc(dbl, nx), *y = talloc(dbl, ny), *dy = trand(dbl, ny), *dx = talloc(dbl, nx);
            int32_t *am = malloc(ny * sizeof *am);
            for (size_t i = 0; i < nx; i++) tset(dbl, x, i, floor((urand() + 1) * 2));
            if (dbl) kdk_dglobal_maxpool_fwd(n, hw, c, x, y, am);
            else kdk_sglobal_maxpool_fwd(n, hw, c, x, y, am);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < c; j++) {
                    int at = 0;
                    for (int p = 1; p < hw; p++)
                        if (tget(dbl, x, ((size_t)b * hw + p) * c + j) > tget(dbl, x, ((size_t)b * hw + at) * c + j))
                            at = p;
                    EXPECT(am[b * c + j] == at, "global argmax[%d][%d] = %d, want %d", b, j, am[b * c + j], at);
                    EXPECT(tget(dbl, y, b * c + j) == tget(dbl, x, ((size_t)b * hw + at) * c + j),
                           "global max y[%d][%d]", b, j);
                }
            for (int mode = 0; mode < 4; mode++) {
                int acc = mode & 1, use_am = mode >> 1;
                tfill(dbl, dx, nx, acc ? 1.0 : NAN);
                if (dbl) kdk_dglobal_maxpool_bwd(n, hw, c, use_am ? NULL : x, use_am ? am : NULL, dy, dx, acc);
                else kdk_sglobal_maxpool_bwd(n, hw, c, use_am ? NULL : x, use_am ? am : NULL, dy, dx, acc);
                for (int b = 0; b < n; b++)
                    for (int p = 0; p < hw; p++)
                        for (int j = 0; j < c; j++) {
                            size_t i = ((size_t)b * hw + p) * c + j;
                            double want = acc + (am[b * c + j] == p ? tget(dbl, dy, b * c + j) : 0);
                            CHECK_CLOSE(tget(dbl, dx, i), want, 2.0, dbl, "global max bwd", i);
                        }
            }
            for (size_t i = 0; i < nx; i++) tset(dbl, x, i, urand());
            if (dbl) kdk_dglobal_avgpool_fwd(n, hw, c, x, y);
            else kdk_sglobal_avgpool_fwd(n, hw, c, x, y);
            for (int b = 0; b < n; b++)
                for (int j = 0; j < c; j++) {
                    double s = 0, mag = 0;
                    for (int p = 0; p < hw; p++) {
                        s += tget(dbl, x, ((size_t)b * hw + p) * c + j);
                        mag += fabs(tget(dbl, x, ((size_t)b * hw + p) * c + j));
                    }
                    CHECK_CLOSE(tget(dbl, y, b * c + j), s / hw, mag / hw, dbl, "global avg", b * c + j);
                }
            for (int acc = 0; acc < 2; acc++) {
                tfill(dbl, dx, nx, acc ? 1.0 : NAN);
                if (dbl) kdk_dglobal_avgpool_bwd(n, hw, c, dy, dx, acc);
                else kdk_sglobal_avgpool_bwd(n, hw, c, dy, dx, acc);
                for (size_t i = 0; i < nx; i++) {
                    size_t b = i / ((size_t)hw * c), j = i % c;
                    CHECK_CLOSE(tget(dbl, dx, i), acc + tget(dbl, dy, b * c + j) / hw, 2.0, dbl,
                                "global avg bwd", i);
                }
            }
            free(x);
            free(y);
            free(dy);
            free(dx);
            free(am);
        }
}
END_TEST

/* ---- softmax and cross-entropy ---- */

static void softmax_ref(int n, const double *x, long double *p, long double *lse)
{
    long double m = x[0], s = 0;
    for (int j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    for (int j = 0; j < n; j++) s += expl((long double)x[j] - m);
    for (int j = 0; j < n; j++) p[j] = expl((long double)x[j] - m) / s;
    *lse = m + logl(s);
}

static void check_softmax_rows(int dbl, int rows, int n, const double *xin)
{
    size_t tot = (size_t)rows * n;
    void *x = talloc(dbl, tot), *y = talloc(dbl, tot), *dy = trand(dbl, tot), *dx = talloc(dbl, tot);
    void *t = talloc(dbl, tot), *loss = talloc(dbl, rows), *d = talloc(dbl, tot);
    void *loss2 = talloc(dbl, rows), *d2 = talloc(dbl, tot);
    int32_t *lab = malloc(rows * sizeof *lab);
    double *row = malloc(n * sizeof *row);
    long double *p = malloc(n * sizeof *p), lse;
    for (size_t i = 0; i < tot; i++) tset(dbl, x, i, xin[i]);
    for (int r = 0; r < rows; r++) {
        lab[r] = KDK_MIN((int32_t)((urand() + 1) / 2 * n), n - 1);
        for (int j = 0; j < n; j++) tset(dbl, t, (size_t)r * n + j, j == lab[r]);
    }
    double scale = 1.0 / rows, sum1, sum2;

    if (dbl) kdk_dsoftmax(rows, n, x, y);
    else kdk_ssoftmax(rows, n, x, y);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < n; j++) row[j] = tget(dbl, x, (size_t)r * n + j);
        softmax_ref(n, row, p, &lse);
        long double dot = 0;
        for (int j = 0; j < n; j++) dot += (long double)tget(dbl, dy, (size_t)r * n + j) * p[j];
        for (int j = 0; j < n; j++) {
            size_t i = (size_t)r * n + j;
            /* probabilities below float's range may flush to 0 */
            CHECK_CLOSE(tget(dbl, y, i), p[j], dbl ? 0.0 : 1e-30, dbl, "softmax", i);
        }
        /* softmax backward from y */
        if (dbl) kdk_dsoftmax_bwd(1, n, (double *)y + (size_t)r * n, (double *)dy + (size_t)r * n, (double *)dx + (size_t)r * n);
        else kdk_ssoftmax_bwd(1, n, (float *)y + (size_t)r * n, (float *)dy + (size_t)r * n, (float *)dx + (size_t)r * n);
        for (int j = 0; j < n; j++) {
            size_t i = (size_t)r * n + j;
            long double want = p[j] * ((long double)tget(dbl, dy, i) - dot);
            CHECK_CLOSE(tget(dbl, dx, i), want, (double)(p[j] * 3) + (dbl ? 0 : 1e-30), dbl, "softmax_bwd", i);
        }
    }

    if (dbl) kdk_dlogsoftmax(rows, n, x, y);
    else kdk_slogsoftmax(rows, n, x, y);
    if (dbl) kdk_dlogsoftmax_bwd(rows, n, y, dy, dx);
    else kdk_slogsoftmax_bwd(rows, n, y, dy, dx);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < n; j++) row[j] = tget(dbl, x, (size_t)r * n + j);
        softmax_ref(n, row, p, &lse);
        long double sdy = 0, mdy = 0;
        for (int j = 0; j < n; j++) {
            sdy += tget(dbl, dy, (size_t)r * n + j);
            mdy += fabs(tget(dbl, dy, (size_t)r * n + j));
        }
        for (int j = 0; j < n; j++) {
            size_t i = (size_t)r * n + j;
            long double want = row[j] - lse;
            EXPECT(isfinite(tget(dbl, y, i)), "logsoftmax[%zu] not finite", i);
            CHECK_CLOSE(tget(dbl, y, i), want, fabs(row[j]) + fabsl(lse), dbl, "logsoftmax", i);
            CHECK_CLOSE(tget(dbl, dx, i), tget(dbl, dy, i) - p[j] * sdy, 1 + (double)mdy * 10, dbl,
                        "logsoftmax_bwd", i);
        }
    }

    /* fused cross-entropy: one-hot rows and integer labels agree with the reference */
    if (dbl) {
        sum1 = kdk_dsoftmax_xent(rows, n, x, t, loss, d, scale);
        sum2 = kdk_dsoftmax_xent_idx(rows, n, x, lab, loss2, d2, scale);
    } else {
        sum1 = kdk_ssoftmax_xent(rows, n, x, t, loss, d, (float)scale);
        sum2 = kdk_ssoftmax_xent_idx(rows, n, x, lab, loss2, d2, (float)scale);
    }
    long double total = 0, mag = 0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < n; j++) row[j] = tget(dbl, x, (size_t)r * n + j);
        softmax_ref(n, row, p, &lse);
        long double l = lse - row[lab[r]];
        total += l;
        mag += fabsl(lse) + fabs(row[lab[r]]);
        CHECK_CLOSE(tget(dbl, loss, r), l, fabsl(lse) + fabs(row[lab[r]]), dbl, "xent loss", r);
        CHECK_CLOSE(tget(dbl, loss2, r), l, fabsl(lse) + fabs(row[lab[r]]), dbl, "xent_idx loss", r);
        for (int j = 0; j < n; j++) {
            size_t i = (size_t)r * n + j;
            long double want = (p[j] - (j == lab[r])) * scale;
            CHECK_CLOSE(tget(dbl, d, i), want, scale, dbl, "xent dlogits", i);
            CHECK_CLOSE(tget(dbl, d2, i), want, scale, dbl, "xent_idx dlogits", i);
        }
    }
    CHECK_CLOSE(sum1, total, (double)mag, dbl, "xent sum", 0);
    CHECK_CLOSE(sum2, total, (double)mag, dbl, "xent_idx sum", 0);

    /* in place: dlogits == logits */
    if (dbl) kdk_dsoftmax_xent_idx(rows, n, x, lab, NULL, x, scale);
    else kdk_ssoftmax_xent_idx(rows, n, x, lab, NULL, x, (float)scale);
    for (size_t i = 0; i < tot; i++) CHECK_CLOSE(tget(dbl, x, i), tget(dbl, d2, i), scale, dbl, "in place", i);

    free(x);
    free(y);
    free(dy);
    free(dx);
    free(t);
    free(loss);
    free(d);
    free(loss2);
    free(d2);
    free(lab);
    free(row);
    free(p);
}

START_TEST(test_softmax)
{
    static const int shapes[][2] = {{5, 10}, {3, 1}, {4, 37}, {64, 10}};
    for (size_t s = 0; s < 4; s++) {
        int rows = shapes[s][0], n = shapes[s][1];
        double *x = malloc((size_t)rows * n * sizeof *x);
        for (int scale = 0; scale < 3; scale++) {
            for (int i = 0; i < rows * n; i++) x[i] = urand() * (scale == 0 ? 1 : scale == 1 ? 20 : 1000);
            check_softmax_rows(0, rows, n, x);
            check_softmax_rows(1, rows, n, x);
        }
        free(x);
    }
}
END_TEST

/* Logits of ±1000 stay finite and exact: exp never sees a large argument. */
START_TEST(test_softmax_large)
{
    double x[] = {1000, -1000, 999, 0, 1000, 1000, 1000, 1000, -1000, -1000, -1000, -999.0};
    for (int dbl = 0; dbl < 2; dbl++) {
        check_softmax_rows(dbl, 3, 4, x);
        void *v = talloc(dbl, 12), *y = talloc(dbl, 12);
        for (int i = 0; i < 12; i++) tset(dbl, v, i, x[i]);
        if (dbl) kdk_dsoftmax(3, 4, v, y);
        else kdk_ssoftmax(3, 4, v, y);
        double e = exp(-1.0);
        CHECK_CLOSE(tget(dbl, y, 0), 1 / (1 + e), 0.0, dbl, "large", 0);
        CHECK_CLOSE(tget(dbl, y, 2), e / (1 + e), 0.0, dbl, "large", 2);
        EXPECT(tget(dbl, y, 1) == 0 && tget(dbl, y, 3) == 0, "softmax of -1000 vs 1000 is 0");
        for (int j = 4; j < 8; j++) EXPECT(tget(dbl, y, j) == 0.25, "equal logits give 1/4");
        if (dbl) kdk_dlogsoftmax(3, 4, v, y);
        else kdk_slogsoftmax(3, 4, v, y);
        CHECK_CLOSE(tget(dbl, y, 1), -2000 - log1p(e), 0.0, dbl, "large log", 1);
        CHECK_CLOSE(tget(dbl, y, 11), -log1p(3 * e), 0.0, dbl, "large log", 11);
        free(v);
        free(y);
    }
}
END_TEST

/* The mean over the ranks in one process (kernels.h): the operand, to the
 * bit, whatever the batch; and the host's version outside a data-parallel
 * step (tests/test_mpi.c runs it on 2 ranks). */
START_TEST(test_rank_mean_alone)
{
    float xs[5] = {1.5f, -0.0f, 3e-38f, 7.25f, -2.0f}, ys[5], ym[5];
    double xd[5] = {1.5, -0.0, 3e-300, 7.25, -2.0}, yd[5];
    kdk_srank_mean(5, 7, xs, ys);
    kdk_drank_mean(5, 1, xd, yd);
    kdh_srank_mean_mt(5, 3, xs, ym);
    ck_assert_int_eq(memcmp(xs, ys, sizeof xs), 0);
    ck_assert_int_eq(memcmp(xd, yd, sizeof xd), 0);
    ck_assert_int_eq(memcmp(xs, ym, sizeof xs), 0);
}
END_TEST

/* Soft labels, ignored labels, and the gradient against central differences. */
START_TEST(test_xent_soft_and_fd)
{
    enum { R = 3, N = 6 };
    double z[R * N], t[R * N], d[R * N], loss[R];
    for (int i = 0; i < R * N; i++) {
        z[i] = urand() * 3;
        t[i] = fabs(urand());
    }
    double scale = 0.5;
    double total = kdk_dsoftmax_xent(R, N, z, t, loss, d, scale);
    for (int i = 0; i < R * N; i++) {
        double zp[R * N], zm[R * N];
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        zp[i] += 1e-6;
        zm[i] -= 1e-6;
        double fd = (kdk_dsoftmax_xent(R, N, zp, t, NULL, NULL, 1) -
                     kdk_dsoftmax_xent(R, N, zm, t, NULL, NULL, 1)) / 2e-6;
        EXPECT(fabs(d[i] - fd * scale) < 1e-7, "d[%d] = %g, fd %g", i, d[i], fd * scale);
    }
    double s = 0;
    for (int r = 0; r < R; r++) s += loss[r];
    EXPECT(fabs(s - total) < 1e-12, "xent returns the sum of row losses");

    float zf[4] = {1, 2, 3, 4}, df[4], lf[2];
    int32_t labs[2] = {-1, 7};
    double tot = kdk_ssoftmax_xent_idx(2, 2, zf, labs, lf, df, 1.0f);
    EXPECT(tot == 0 && lf[0] == 0 && lf[1] == 0, "ignored labels give loss 0");
    for (int j = 0; j < 4; j++) EXPECT(df[j] == 0, "ignored labels give gradient 0");
}
END_TEST

/* ---- direct conv and tiled max-pool kernels (conv_tmpl.h, pool_tmpl.h) ----
 * Shapes whose filter counts are whole vectors (16 floats / 8 doubles with
 * AVX-512), so the direct register-blocked kernels run: forward tiles along
 * rows, down the side columns and across images at the corners; the data
 * gradient as a flipped forward at stride 1; the filter gradient without
 * padding; thread parts over images and, with fewer images than parts,
 * over rows.  Compared with the reference sums of check_conv. */
START_TEST(test_conv_direct)
{
    struct conv_case cases[] = {
        conv_make(2, 28, 28, 1, 32, 3, 3, 1, 1, 0),   /* the CNN's first layer (c = 1) */
        conv_make(3, 9, 11, 5, 16, 3, 3, 1, 1, 1),    /* 'same': sides and corners */
        conv_make(2, 12, 10, 16, 48, 3, 3, 2, 2, 1),  /* stride 2 'same'; f = 3 vectors */
        conv_make(1, 7, 9, 3, 32, 5, 5, 1, 1, 1),     /* 5×5 'same', pad 2 */
        conv_make(2, 10, 9, 3, 16, 4, 2, 2, 3, 1),    /* uneven kernel and strides */
        conv_make(3, 6, 5, 8, 80, 3, 3, 1, 1, 0),     /* f = 5 vectors: one per block */
        conv_make(1, 30, 41, 4, 16, 3, 3, 1, 1, 0),   /* rows longer than one tile */
        conv_make(2, 13, 13, 32, 64, 3, 3, 1, 1, 1),  /* the CNN's second layer, 'same' */
        conv_make(1, 1, 1, 7, 16, 3, 3, 1, 1, 1),     /* one pixel, all taps but one padded */
        {1, 4, 4, 2, 16, 8, 8, 3, 3, 1, 1, 3, 3},     /* windows wholly in the padding */
        /* the filter gradient with padding: tiles of one tap each, over 1, 2, 4 vectors */
        conv_make(2, 10, 9, 16, 16, 3, 3, 1, 1, 1),   /* ResNet-8's first stack */
        conv_make(2, 9, 8, 16, 32, 3, 3, 2, 2, 1),    /* stride 2: padded after only */
        conv_make(1, 6, 7, 3, 64, 5, 5, 2, 1, 1),     /* c = 3, pad 2 before */
        {1, 4, 4, 5, 8, 8, 32, 3, 3, 1, 1, 3, 3},     /* taps wholly in the padding, 2 vectors */
        /* 1×1 on short rows: the direct kernel over all pixels as one row (pixelwise_fwd),
         * across the images; strided, on pixels gathered first (ResNet50's projections) */
        conv_make(2, 5, 6, 160, 48, 1, 1, 1, 1, 0),
        conv_make(1, 7, 7, 300, 64, 1, 1, 1, 1, 0),
        conv_make(2, 9, 11, 33, 32, 1, 1, 2, 2, 0),   /* stride 2, odd c and h, w */
        conv_make(2, 7, 10, 17, 16, 1, 1, 2, 3, 1),   /* uneven strides, 'same' (no padding at 1×1) */
        conv_make(3, 14, 14, 24, 64, 1, 1, 2, 2, 1),  /* ResNet50's stride-2 shape, 3 images */
        conv_make(3, 13, 15, 20, 16, 1, 1, 1, 1, 0),  /* 585 pixels in one row */
        /* 1×1 over 128 channels and more on longer rows: the forward takes the GEMM */
        conv_make(1, 3, 16, 128, 32, 1, 1, 1, 1, 0),
        conv_make(1, 4, 20, 130, 16, 1, 1, 2, 2, 0),  /* strided on long rows: the direct kernel */
        /* filters of one block over more than KDK_CONV_SLAB bytes: slabs of channels,
         * uneven (131 = 66 + 65 channels at 64 filters), with bias and ReLU only once */
        conv_make(1, 5, 7, 131, 64, 3, 3, 1, 1, 1),   /* 'same': rows, sides and corners */
        conv_make(2, 7, 6, 131, 64, 3, 3, 2, 2, 1),   /* stride 2, 2 images */
        conv_make(1, 5, 6, 64, 131, 3, 3, 1, 1, 1),   /* the data gradient's slabs (c' = f = 131) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int dbl = 0; dbl < 2; dbl++) {
            check_conv(dbl, &cases[i], 0, 1);
            check_conv(dbl, &cases[i], 2, 1);
            check_conv(dbl, &cases[i], 3, 1);
        }
}
END_TEST

/* The tiled max pool with NaNs: a NaN beats a number and the first NaN of a
 * window wins; odd sizes drop the last row and column (their dx is 0). */
START_TEST(test_pool_tiled_nan)
{
    struct pool_case cases[] = {
        pool_make(2, 9, 7, 48, 2, 2, 0),
        pool_make(1, 8, 8, 32, 2, 2, 0),
        pool_make(2, 7, 8, 16, 3, 3, 0),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int dbl = 0; dbl < 2; dbl++) {
            const struct pool_case *g = &cases[i];
            size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * g->c;
            size_t hwc = (size_t)g->h * g->w * g->c;
            void *x = talloc(dbl, nx), *y = talloc(dbl, ny), *dy = trand(dbl, ny), *dx = talloc(dbl, nx);
            int32_t *am = malloc(ny * sizeof *am);
            for (size_t j = 0; j < nx; j++) tset(dbl, x, j, j % 7 == 3 ? NAN : urand());
            if (dbl)
                kdk_dmaxpool2d_fwd(PGEOM(g), x, y, am);
            else
                kdk_smaxpool2d_fwd(PGEOM(g), x, y, am);
            /* without argmax (inference), the same values, NaN payloads and all */
            void *yv = talloc(dbl, ny);
            if (dbl)
                kdk_dmaxpool2d_fwd(PGEOM(g), x, yv, NULL);
            else
                kdk_smaxpool2d_fwd(PGEOM(g), x, yv, NULL);
            EXPECT(memcmp(yv, y, ny * (dbl ? sizeof(double) : sizeof(float))) == 0,
                   "tiled pool NaN: y without argmax differs from y with it (case %zu)", i);
            free(yv);
            for (int b = 0; b < g->n; b++)
                for (int oy = 0; oy < g->oh; oy++)
                    for (int ox = 0; ox < g->ow; ox++)
                        for (int ci = 0; ci < g->c; ci++) {
                            size_t o = (((size_t)b * g->oh + oy) * g->ow + ox) * g->c + ci;
                            int at = -1;
                            double best = 0;
                            for (int ky = 0; ky < g->kh; ky++)
                                for (int kx = 0; kx < g->kw; kx++) {
                                    int idx = ((oy * g->sh + ky) * g->w + ox * g->sw + kx) * g->c + ci;
                                    double v = tget(dbl, x, b * hwc + idx);
                                    if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
                                        best = v;
                                        at = idx;
                                    }
                                }
                            EXPECT(am[o] == at, "tiled pool NaN: argmax[%zu] = %d, want %d", o, am[o], at);
                            EXPECT(isnan(best) ? isnan(tget(dbl, y, o)) : tget(dbl, y, o) == best,
                                   "tiled pool NaN: y[%zu]", o);
                        }
            for (int use_am = 0; use_am < 2; use_am++) {
                tfill(dbl, dx, nx, NAN);
                if (dbl)
                    kdk_dmaxpool2d_bwd(PGEOM(g), use_am ? NULL : x, use_am ? am : NULL, dy, dx, 0);
                else
                    kdk_smaxpool2d_bwd(PGEOM(g), use_am ? NULL : x, use_am ? am : NULL, dy, dx, 0);
                for (int b = 0; b < g->n; b++)
                    for (size_t e = 0; e < hwc; e++) {
                        double want = 0;
                        for (size_t o = 0; o < (size_t)g->oh * g->ow * g->c; o++)
                            if (am[(size_t)b * g->oh * g->ow * g->c + o] == (int32_t)e)
                                want = tget(dbl, dy, (size_t)b * g->oh * g->ow * g->c + o);
                        EXPECT(tget(dbl, dx, b * hwc + e) == want, "tiled pool NaN: dx[%zu] use_am %d",
                               b * hwc + e, use_am);
                    }
            }
            free(x);
            free(y);
            free(dy);
            free(dx);
            free(am);
        }
}
END_TEST

/* ---- the host pool's thread-split wrappers (runtime/host/parallel_kernels.c) ----
 * At 2 and 3 threads every wrapper must give exactly the single-threaded
 * kernel's bits (the splits keep each element's arithmetic), and the pool
 * must really have split the job. */

static float *frand(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)urand();
    return p;
}

static void same_bits(const float *a, const float *b, size_t n, const char *what, int threads)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s at %d threads: [%zu] = %.9g, 1 thread %.9g", what,
                      threads, i, a[i], b[i]);
}

START_TEST(test_threads_gemm)
{
    /* split N (incl. a ragged last block of < 16 columns), split M (incl. a
     * last block of <= 4 rows, which must not take the GEMV path), few rows */
    static const int shapes[][5] = {
        {64, 256, 784, 0, 0}, {784, 256, 64, 1, 0}, {64, 256, 128, 0, 1}, {37, 10, 128, 0, 0},
        {36, 20, 200, 0, 0},  {2, 400, 300, 0, 0},  {3, 140, 400, 1, 1},  {17, 600, 33, 0, 0},
        {300, 70, 257, 1, 0},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
        float *A = frand((size_t)M * K), *B = frand((size_t)K * N), *bias = frand((size_t)N);
        float *C1 = frand((size_t)M * N), *Ct = malloc(sizeof(float) * (size_t)M * N);
        float *work = malloc(sizeof(float) * kdk_sgemm_work_size(M, N, K));
        ck_assert(Ct && work);
        memcpy(Ct, C1, sizeof(float) * (size_t)M * N);
        int lda = ta ? M : K, ldb = tb ? K : N;
        kdh_pool_set_threads(1);
        kdk_sgemm(M, N, K, A, lda, ta, B, ldb, tb, 0.5f, C1, N, bias, KDK_ACT_RELU, work);
        for (int t = 2; t <= 3; t++) {
            float *C = malloc(sizeof(float) * (size_t)M * N);
            ck_assert_ptr_nonnull(C);
            memcpy(C, Ct, sizeof(float) * (size_t)M * N);
            ck_assert_int_eq(kdh_pool_set_threads(t), t);
            unsigned long jobs = kdh_pool_jobs();
            kdh_sgemm_mt(M, N, K, A, lda, ta, B, ldb, tb, 0.5f, C, N, bias, KDK_ACT_RELU, work);
            if ((long)M * N * K >= 128L * 1024) ck_assert_uint_gt(kdh_pool_jobs(), jobs);
            else ck_assert_uint_eq(kdh_pool_jobs(), jobs);
            char what[96];
            snprintf(what, sizeof what, "gemm %dx%dx%d ta=%d tb=%d", M, N, K, ta, tb);
            same_bits(C, C1, (size_t)M * N, what, t);
            free(C);
        }
        kdh_pool_set_threads(1);
        free(A), free(B), free(bias), free(C1), free(Ct), free(work);
    }
}
END_TEST

/* kdh_sgemm_mt's K split (parallel_kernels.c, gemm_ksplit): C much smaller than
 * op(B) runs as two jobs (the blocks of k, then their sum onto C with bias
 * and activation) and gives one call's bits at 2, 3 and 4 threads (4
 * blocks of k for K = 784: one each at 4, 1+1+2 at 3; 2 for K = 256,
 * split at 2 threads only), for every activation, beta 0 and 1, either
 * operand transposed. */
START_TEST(test_threads_gemm_ksplit)
{
    static const int shapes[][7] = {
        /* M, N, K, transA, transB, act, beta*2 */
        {64, 256, 784, 0, 0, KDK_ACT_RELU, 0},    {64, 128, 1600, 0, 0, KDK_ACT_NONE, 2},
        {16, 100, 784, 1, 0, KDK_ACT_SIGMOID, 1}, {40, 33, 800, 0, 1, KDK_ACT_TANH, 0},
        {5, 64, 1000, 1, 1, KDK_ACT_RELU, 2},
        {64, 128, 256, 0, 0, KDK_ACT_RELU, 0}, /* the MLP's second layer: 2 blocks of 128, K split at 2 threads only */
        /* blocks of exactly KDK_KC = 256, which a call of K = 256 would split in two: a 1x1 convolution's
         * filter gradient (32 channels, 64 images of 6x6) and a dense layer's forward over 4608 features */
        {64, 128, 1024, 0, 0, KDK_ACT_NONE, 0},   {32, 128, 2304, 1, 0, KDK_ACT_NONE, 2},
        {64, 10, 4608, 0, 0, KDK_ACT_RELU, 0},
    };
    /* the blocks of k: ceil(K / 256), at least 2 from K = 256 on */
    ck_assert_int_eq(kdk_gemm_kblocks(255), 1);
    ck_assert_int_eq(kdk_gemm_kblocks(256), 2);
    ck_assert_int_eq(kdk_gemm_kblocks(512), 2);
    ck_assert_int_eq(kdk_gemm_kblocks(513), 3);
    ck_assert_int_eq(kdk_gemm_kblocks(784), 4);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
        int act = shapes[s][5];
        float beta = shapes[s][6] * 0.5f;
        size_t mn = (size_t)M * N;
        float *A = frand((size_t)M * K), *B = frand((size_t)K * N), *bias = frand((size_t)N);
        float *C1 = frand(mn), *C0 = malloc(sizeof(float) * mn), *C = malloc(sizeof(float) * mn);
        float *work = malloc(sizeof(float) * kdk_sgemm_work_size(M, N, K));
        ck_assert(C0 && C && work);
        memcpy(C0, C1, sizeof(float) * mn);
        int lda = ta ? M : K, ldb = tb ? K : N;
        kdh_pool_set_threads(1);
        kdk_sgemm(M, N, K, A, lda, ta, B, ldb, tb, beta, C1, N, bias, act, work);
        for (int t = 2; t <= 4; t++) {
            memcpy(C, C0, sizeof(float) * mn);
            ck_assert_int_eq(kdh_pool_set_threads(t), t);
            unsigned long jobs = kdh_pool_jobs();
            kdh_sgemm_mt(M, N, K, A, lda, ta, B, ldb, tb, beta, C, N, bias, act, work);
            unsigned long want = kdk_gemm_kblocks(K) >= t ? 2 : 1; /* fewer blocks than threads: split N */
            ck_assert_msg(kdh_pool_jobs() - jobs == want, "gemm %dx%dx%d at %d threads: %lu jobs, not %lu", M, N, K, t,
                          kdh_pool_jobs() - jobs, want);
            char what[96];
            snprintf(what, sizeof what, "K split %dx%dx%d ta=%d tb=%d act=%d", M, N, K, ta, tb, act);
            same_bits(C, C1, mn, what, t);
        }
        kdh_pool_set_threads(1);
        free(A), free(B), free(bias), free(C1), free(C0), free(C), free(work);
    }
}
END_TEST

START_TEST(test_threads_conv_pool)
{
    /* the sample CNN's layers at batch 13: conv 28x28x1 -> 32, pool, conv 13x13x32 -> 64 (padded 'same' too) */
    static const int geo[][8] = {{13, 28, 28, 1, 32, 3, 0, 1}, {13, 13, 13, 32, 64, 3, 0, 1}, {13, 13, 13, 32, 16, 3, 1, 2}};
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        int n = geo[g][0], h = geo[g][1], w = geo[g][2], c = geo[g][3], f = geo[g][4], k = geo[g][5], pad = geo[g][6],
            st = geo[g][7];
        int oh = (h + 2 * pad - k) / st + 1, ow = (w + 2 * pad - k) / st + 1;
#define GEO n, h, w, c, oh, ow, f, k, k, st, st, pad, pad
        size_t nx = (size_t)n * h * w * c, ny = (size_t)n * oh * ow * f, nw = (size_t)k * k * c * f;
        size_t ws = kdk_sconv2d_fwd_work_size(GEO);
        if (kdk_sconv2d_bwd_data_work_size(GEO) > ws) ws = kdk_sconv2d_bwd_data_work_size(GEO);
        if (kdk_sconv2d_bwd_filter_work_size(GEO) > ws) ws = kdk_sconv2d_bwd_filter_work_size(GEO);
        float *x = frand(nx), *wt = frand(nw), *bias = frand((size_t)f), *dy = frand(ny), *work = frand(ws);
        float *y1 = frand(ny), *dx1 = frand(nx), *dw1 = frand(nw);
        kdh_pool_set_threads(1);
        kdk_sconv2d_fwd(GEO, x, wt, bias, KDK_ACT_RELU, y1, work);
        kdk_sconv2d_bwd_data(GEO, dy, wt, dx1, 0, work);
        kdk_sconv2d_bwd_filter(GEO, x, dy, dw1, 0, work);
        /* pooling 2x2 stride 2 of y */
        int ph = oh / 2, pw = ow / 2;
        size_t np = (size_t)n * ph * pw * f;
#define PGEO n, oh, ow, f, ph, pw, 2, 2, 2, 2, 0, 0
        float *py1 = frand(np), *pdx1 = frand(ny), *ay1 = frand(np), *adx1 = frand(ny), *pdy = frand(np);
        kdk_smaxpool2d_fwd(PGEO, y1, py1, NULL);
        kdk_smaxpool2d_bwd(PGEO, y1, NULL, pdy, pdx1, 0);
        kdk_savgpool2d_fwd(PGEO, 0, y1, ay1);
        kdk_savgpool2d_bwd(PGEO, 0, pdy, adx1, 0);
        for (int t = 2; t <= 3; t++) {
            float *y = frand(ny), *dx = frand(nx), *dw = frand(nw), *py = frand(np), *pdx = frand(ny), *ay = frand(np),
                  *adx = frand(ny);
            ck_assert_int_eq(kdh_pool_set_threads(t), t);
            unsigned long jobs = kdh_pool_jobs();
            kdh_sconv2d_fwd_mt(GEO, x, wt, bias, KDK_ACT_RELU, y, work);
            kdh_sconv2d_bwd_data_mt(GEO, dy, wt, dx, 0, work);
            kdh_sconv2d_bwd_filter_mt(GEO, x, dy, dw, 0, work);
            ck_assert_uint_eq(kdh_pool_jobs(), jobs + 3); /* each convolution split */
            jobs = kdh_pool_jobs();
            kdh_smaxpool2d_fwd_mt(PGEO, y1, py, NULL);
            kdh_smaxpool2d_bwd_mt(PGEO, y1, NULL, pdy, pdx, 0);
            kdh_savgpool2d_fwd_mt(PGEO, 0, y1, ay);
            kdh_savgpool2d_bwd_mt(PGEO, 0, pdy, adx, 0);
            /* pooling splits from 16K input elements on */
            if ((long)n * oh * ow * f >= 16 * 1024) ck_assert_uint_eq(kdh_pool_jobs(), jobs + 4);
            same_bits(y, y1, ny, "conv2d_fwd", t);
            char what[64];
            snprintf(what, sizeof what, "conv2d_bwd_data (geometry %zu)", g);
            same_bits(dx, dx1, nx, what, t);
            same_bits(dw, dw1, nw, "conv2d_bwd_filter", t);
            same_bits(py, py1, np, "maxpool2d_fwd", t);
            same_bits(pdx, pdx1, ny, "maxpool2d_bwd", t);
            same_bits(ay, ay1, np, "avgpool2d_fwd", t);
            same_bits(adx, adx1, ny, "avgpool2d_bwd", t);
            free(y), free(dx), free(dw), free(py), free(pdx), free(ay), free(adx);
        }
#undef GEO
#undef PGEO
        kdh_pool_set_threads(1);
        free(x), free(wt), free(bias), free(dy), free(work), free(y1), free(dx1), free(dw1);
        free(py1), free(pdx1), free(ay1), free(adx1), free(pdy);
    }
}
END_TEST

/* ---- depthwise convolution ----
 * Against the definition summed in long double, every tap visited and the
 * ones outside the image skipped here, so the kernels' cut tap ranges
 * (dwconv_tmpl.h) are checked at every border. The channel counts pick every
 * path on an AVX-512 machine: multiples of 16 (AVX-512), 8 (AVX2), 4 (the
 * base vectors), 3 and 5 (the loops), 18 (vectors, then the loops for the
 * last two), multipliers above 1 (the loops). */

struct dw_case {
    int n, h, w, c, m, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw;
    int oh, ow;
};

#define DWGEOM(g) (g)->n, (g)->h, (g)->w, (g)->c, (g)->oh, (g)->ow, (g)->m, (g)->kh, (g)->kw, (g)->sh, (g)->sw, \
                  (g)->pt, (g)->pl, (g)->dh, (g)->dw

static const struct dw_case dw_cases[] = {
    /* n  h   w   c   m  kh kw sh sw pt pb pl pr dh dw */
    {2, 7, 9, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},     /* 'same', AVX-512 */
    {3, 8, 8, 32, 1, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 0, 0},     /* stride 2 'same' as Keras pads it (bottom, right) */
    {1, 5, 6, 8, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0},      /* 'valid', AVX2 */
    {2, 6, 7, 12, 1, 2, 3, 1, 2, 1, 0, 1, 1, 1, 1, 0, 0},     /* non-square kernel, strides (1, 2), base vectors */
    {2, 9, 8, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},      /* multiplier 2 */
    {1, 10, 11, 18, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0},   /* dilation 2, 16 channels in vectors and 2 in loops */
    {2, 7, 13, 16, 1, 5, 2, 1, 1, 2, 2, 1, 2, 1, 3, 0, 0},    /* dilation along the width only */
    {1, 3, 3, 4, 3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0},      /* multiplier 3, strides (2, 1) */
    {3, 4, 4, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},      /* 3 channels: the loops */
    {2, 6, 6, 16, 1, 3, 3, 2, 2, 1, 1, 1, 1, 2, 2, 0, 0},     /* strides and dilation at once: the loops */
    {1, 1, 9, 32, 1, 1, 5, 1, 1, 0, 0, 2, 2, 1, 1, 0, 0},     /* one row (a 1-D sequence) */
    {2, 5, 5, 16, 1, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 0, 0},     /* stride 3 */
    {1, 2, 3, 8, 1, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 0, 0},      /* a kernel larger than the image */
    {2, 11, 10, 48, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},   /* rows of four pixels and a ragged end */
    {1, 5, 7, 16, 1, 3, 3, 2, 2, 4, 4, 4, 4, 1, 1, 0, 0},     /* windows wholly in the padding */
    {1, 3, 70, 16, 1, 3, 3, 2, 2, 1, 1, 0, 1, 1, 1, 0, 0},    /* rows wider than the data gradient's column block */
    {1, 4, 6, 80, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},    /* border pixels four vectors of channels a pass, then one */
    {2, 5, 5, 40, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},    /* the same in AVX2's vectors */
};

static struct dw_case dw_make(const struct dw_case *c0)
{
    struct dw_case g = *c0;
    g.oh = (g.h + g.pt + g.pb - ((g.kh - 1) * g.dh + 1)) / g.sh + 1;
    g.ow = (g.w + g.pl + g.pr - ((g.kw - 1) * g.dw + 1)) / g.sw + 1;
    return g;
}

/* The input element tap (i, j) of output pixel (oy, ox) reads, or -1. */
static long dw_in(const struct dw_case *g, int b, int oy, int ox, int i, int j)
{
    int iy = oy * g->sh - g->pt + i * g->dh, ix = ox * g->sw - g->pl + j * g->dw;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return (((long)b * g->h + iy) * g->w + ix) * g->c;
}

static void run_dw(int dbl, const struct dw_case *g, int which, int part, int nparts, const void *a, const void *b,
                   const void *bias, int act, void *out, int accumulate)
{
    if (dbl) {
        if (which == 0) kdk_ddwconv2d_fwd_part(part, nparts, DWGEOM(g), a, b, bias, act, out);
        else if (which == 1) kdk_ddwconv2d_bwd_data_part(part, nparts, DWGEOM(g), a, b, out, accumulate);
        else kdk_ddwconv2d_bwd_filter_part(part, nparts, DWGEOM(g), a, b, out, accumulate);
    } else {
        if (which == 0) kdk_sdwconv2d_fwd_part(part, nparts, DWGEOM(g), a, b, bias, act, out);
        else if (which == 1) kdk_sdwconv2d_bwd_data_part(part, nparts, DWGEOM(g), a, b, out, accumulate);
        else kdk_sdwconv2d_bwd_filter_part(part, nparts, DWGEOM(g), a, b, out, accumulate);
    }
}

static void check_dw(int dbl, const struct dw_case *g, int act, int accumulate)
{
    int cm = g->c * g->m;
    size_t nx = (size_t)g->n * g->h * g->w * g->c, ny = (size_t)g->n * g->oh * g->ow * cm;
    size_t nw = (size_t)g->kh * g->kw * cm;
    void *x = trand(dbl, nx), *wt = trand(dbl, nw), *dy = trand(dbl, ny), *bias = trand(dbl, (size_t)cm);
    void *old_dx = trand(dbl, nx), *old_dw = trand(dbl, nw);
    long double *y_ref = calloc(ny, sizeof *y_ref), *dx_ref = calloc(nx, sizeof *dx_ref);
    long double *dw_ref = calloc(nw, sizeof *dw_ref), *y_mag = calloc(ny, sizeof *y_mag);
    long double *dx_mag = calloc(nx, sizeof *dx_mag), *dw_mag = calloc(nw, sizeof *dw_mag);
    ck_assert(y_ref && dx_ref && dw_ref && y_mag && dx_mag && dw_mag);
    long visited = 0;
    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->oh; oy++)
            for (int ox = 0; ox < g->ow; ox++)
                for (int i = 0; i < g->kh; i++)
                    for (int j = 0; j < g->kw; j++) {
                        long xi = dw_in(g, b, oy, ox, i, j);
                        if (xi < 0) continue;
                        visited++;
                        size_t yo = (((size_t)b * g->oh + oy) * g->ow + ox) * cm, wo = ((size_t)i * g->kw + j) * cm;
                        for (int ch = 0; ch < g->c; ch++)
                            for (int q = 0; q < g->m; q++) {
                                int k = ch * g->m + q;
                                long double xv = tget(dbl, x, xi + ch), wv = tget(dbl, wt, wo + k),
                                            gv = tget(dbl, dy, yo + k);
                                y_ref[yo + k] += xv * wv, y_mag[yo + k] += fabsl(xv * wv);
                                dx_ref[xi + ch] += gv * wv, dx_mag[xi + ch] += fabsl(gv * wv);
                                dw_ref[wo + k] += xv * gv, dw_mag[wo + k] += fabsl(xv * gv);
                            }
                    }
    ck_assert_int_gt(visited, 0);
    for (int nparts = 1; nparts <= 3; nparts += 2) {
        void *y = talloc(dbl, ny), *dx = talloc(dbl, nx), *dw = talloc(dbl, nw);
        tfill(dbl, y, ny, 1e30);
        memcpy(dx, old_dx, nx * esize(dbl));
        memcpy(dw, old_dw, nw * esize(dbl));
        if (!accumulate) tfill(dbl, dx, nx, 1e30), tfill(dbl, dw, nw, 1e30);
        for (int p = 0; p < nparts; p++) {
            run_dw(dbl, g, 0, p, nparts, x, wt, bias, act, y, 0);
            run_dw(dbl, g, 1, p, nparts, dy, wt, NULL, 0, dx, accumulate);
            run_dw(dbl, g, 2, p, nparts, x, dy, NULL, 0, dw, accumulate);
        }
        char what[160];
        snprintf(what, sizeof what, "dw %dx%dx%dx%d m%d k%dx%d s%d,%d p%d,%d,%d,%d d%d,%d act %d acc %d parts %d: ", g->n,
                 g->h, g->w, g->c, g->m, g->kh, g->kw, g->sh, g->sw, g->pt, g->pb, g->pl, g->pr, g->dh, g->dw, act,
                 accumulate, nparts);
        size_t wl = strlen(what);
        strcpy(what + wl, "forward");
        for (size_t e = 0; e < ny; e++) {
            long double pre = y_ref[e] + tget(dbl, bias, e % cm);
            CHECK_CLOSE(tget(dbl, y, e), act_ref(pre, act), y_mag[e] + fabsl(pre), dbl, what, e);
        }
        strcpy(what + wl, "data gradient");
        for (size_t e = 0; e < nx; e++) {
            long double old = accumulate ? tget(dbl, old_dx, e) : 0;
            CHECK_CLOSE(tget(dbl, dx, e), dx_ref[e] + old, dx_mag[e] + fabsl(old), dbl, what, e);
        }
        strcpy(what + wl, "filter gradient");
        for (size_t e = 0; e < nw; e++) {
            long double old = accumulate ? tget(dbl, old_dw, e) : 0;
            CHECK_CLOSE(tget(dbl, dw, e), dw_ref[e] + old, dw_mag[e] + fabsl(old), dbl, what, e);
        }
        free(y), free(dx), free(dw);
    }
    free(x), free(wt), free(dy), free(bias), free(old_dx), free(old_dw);
    free(y_ref), free(dx_ref), free(dw_ref), free(y_mag), free(dx_mag), free(dw_mag);
}

START_TEST(test_dwconv)
{
    static const int acts[] = {KDK_ACT_NONE, KDK_ACT_RELU, KDK_ACT_TANH};
    for (size_t i = 0; i < sizeof dw_cases / sizeof dw_cases[0]; i++) {
        struct dw_case g = dw_make(&dw_cases[i]);
        ck_assert_int_gt(g.oh, 0);
        ck_assert_int_gt(g.ow, 0);
        for (int dbl = 0; dbl < 2; dbl++) check_dw(dbl, &g, acts[i % 3], (int)(i + dbl) % 2);
    }
}
END_TEST

/* The split parts give the unsplit kernel's bits (each element summed in
 * one fixed order), whatever the count, for every path. */
START_TEST(test_dwconv_parts_bit_identical)
{
    for (size_t i = 0; i < sizeof dw_cases / sizeof dw_cases[0]; i++) {
        struct dw_case g = dw_make(&dw_cases[i]);
        int cm = g.c * g.m;
        size_t nx = (size_t)g.n * g.h * g.w * g.c, ny = (size_t)g.n * g.oh * g.ow * cm, nw = (size_t)g.kh * g.kw * cm;
        float *x = frand(nx), *wt = frand(nw), *dy = frand(ny), *bias = frand((size_t)cm);
        float *y1 = frand(ny), *dx1 = frand(nx), *dw1 = frand(nw);
        kdk_sdwconv2d_fwd(DWGEOM(&g), x, wt, bias, KDK_ACT_RELU, y1);
        kdk_sdwconv2d_bwd_data(DWGEOM(&g), dy, wt, dx1, 0);
        kdk_sdwconv2d_bwd_filter(DWGEOM(&g), x, dy, dw1, 0);
        for (int nparts = 2; nparts <= 7; nparts++) {
            float *y = frand(ny), *dx = frand(nx), *dw = frand(nw);
            for (int p = nparts - 1; p >= 0; p--) {
                kdk_sdwconv2d_fwd_part(p, nparts, DWGEOM(&g), x, wt, bias, KDK_ACT_RELU, y);
                kdk_sdwconv2d_bwd_data_part(p, nparts, DWGEOM(&g), dy, wt, dx, 0);
                kdk_sdwconv2d_bwd_filter_part(p, nparts, DWGEOM(&g), x, dy, dw, 0);
            }
            char what[64];
            snprintf(what, sizeof what, "dwconv case %zu, forward", i);
            same_bits(y, y1, ny, what, nparts);
            snprintf(what, sizeof what, "dwconv case %zu, data gradient", i);
            same_bits(dx, dx1, nx, what, nparts);
            snprintf(what, sizeof what, "dwconv case %zu, filter gradient", i);
            same_bits(dw, dw1, nw, what, nparts);
            free(y), free(dx), free(dw);
        }
        free(x), free(wt), free(dy), free(bias), free(y1), free(dx1), free(dw1);
    }
}
END_TEST

/* The depthwise wrappers split (a MobileNet layer at batch 8) and keep the bits. */
/* conv2d_pool_fwd: the convolution, then max pooling without padding, one
 * image at a time in the workspace: the same bits as conv2d_fwd followed by
 * maxpool2d_fwd, in float and double, on the direct kernels (whole vectors
 * of filters), the GEMM driver (12 filters), a 1x1 convolution (a plain
 * GEMM, or the direct kernel over rows of pixels), slabs of channels,
 * overlapping 3x3/2 windows that drop the last row and column, and split
 * over images at 1 to 3 threads. */
START_TEST(test_conv_pool_fused)
{
    /* n, h, w, c, f, k, pad, stride, pool window (rows, columns), pool stride (rows, columns) */
    static const int geo[][12] = {{3, 28, 28, 1, 32, 3, 0, 1, 2, 2, 2, 2}, {2, 13, 13, 32, 64, 3, 1, 1, 3, 3, 2, 2},
                                  {2, 9, 11, 5, 12, 3, 0, 2, 2, 2, 2, 2},  {4, 8, 8, 3, 16, 1, 0, 1, 2, 2, 2, 2},
                                  {5, 12, 10, 4, 48, 3, 1, 2, 2, 3, 1, 2},
                                  /* 1x1 on short rows, 720 pixels in all: conv2d_fwd over one row of
                                   * them across the images, as one image at a time; 3x3 in slabs */
                                  {5, 12, 12, 520, 64, 1, 0, 1, 2, 2, 2, 2}, {2, 7, 7, 131, 64, 3, 1, 1, 2, 2, 2, 2}};
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        int n = geo[g][0], h = geo[g][1], w = geo[g][2], c = geo[g][3], f = geo[g][4], k = geo[g][5], pad = geo[g][6],
            st = geo[g][7], pkh = geo[g][8], pkw = geo[g][9], psh = geo[g][10], psw = geo[g][11];
        int oh = (h + 2 * pad - k) / st + 1, ow = (w + 2 * pad - k) / st + 1;
        int ph = (oh - pkh) / psh + 1, pw = (ow - pkw) / psw + 1;
#define GEO n, h, w, c, oh, ow, f, k, k, st, st, pad, pad
#define PGEO n, oh, ow, f, ph, pw, pkh, pkw, psh, psw, 0, 0
        size_t nx = (size_t)n * h * w * c, ny = (size_t)n * oh * ow * f, nw = (size_t)k * k * c * f;
        size_t np = (size_t)n * ph * pw * f;
        ck_assert_uint_ge(kdk_sconv2d_pool_fwd_work_size(GEO), (size_t)oh * ow * f);
        for (int dbl = 0; dbl < 2; dbl++) {
            size_t es = dbl ? sizeof(double) : sizeof(float);
            size_t ws = dbl ? kdk_dconv2d_fwd_work_size(GEO) : kdk_sconv2d_fwd_work_size(GEO);
            size_t pws = dbl ? kdk_dconv2d_pool_fwd_work_size(GEO) : kdk_sconv2d_pool_fwd_work_size(GEO);
            void *x = malloc(nx * es), *wt = malloc(nw * es), *bias = malloc((size_t)f * es), *y = malloc(ny * es);
            void *work = malloc(ws * es), *pwork = malloc(pws * es), *want = malloc(np * es), *got = malloc(np * es);
            ck_assert(x && wt && bias && y && work && pwork && want && got);
            for (size_t i = 0; i < nx; i++) tset(dbl, x, i, urand());
            for (size_t i = 0; i < nw; i++) tset(dbl, wt, i, urand());
            for (int i = 0; i < f; i++) tset(dbl, bias, (size_t)i, urand());
            memset(got, 0xff, np * es);
            if (dbl) {
                kdk_dconv2d_fwd(GEO, x, wt, bias, KDK_ACT_RELU, y, work);
                kdk_dmaxpool2d_fwd(PGEO, y, want, NULL);
                kdk_dconv2d_pool_fwd(GEO, pkh, pkw, psh, psw, x, wt, bias, KDK_ACT_RELU, got, pwork);
            } else {
                kdk_sconv2d_fwd(GEO, x, wt, bias, KDK_ACT_RELU, y, work);
                kdk_smaxpool2d_fwd(PGEO, y, want, NULL);
                kdk_sconv2d_pool_fwd(GEO, pkh, pkw, psh, psw, x, wt, bias, KDK_ACT_RELU, got, pwork);
            }
            ck_assert_msg(memcmp(got, want, np * es) == 0, "conv2d_pool_fwd geometry %zu (%s): not conv2d_fwd then "
                          "maxpool2d_fwd", g, dbl ? "double" : "float");
            for (int t = 2; t <= 3 && !dbl; t++) {
                memset(got, 0xff, np * es);
                ck_assert_int_eq(kdh_pool_set_threads(t), t);
                kdh_sconv2d_pool_fwd_mt(GEO, pkh, pkw, psh, psw, x, wt, bias, KDK_ACT_RELU, got, pwork);
                same_bits(got, want, np, "conv2d_pool_fwd", t);
                kdh_pool_set_threads(1);
            }
            free(x), free(wt), free(bias), free(y), free(work), free(pwork), free(want), free(got);
        }
#undef GEO
#undef PGEO
    }
}
END_TEST

START_TEST(test_threads_dwconv)
{
    struct dw_case c0 = {8, 24, 24, 32, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, g = dw_make(&c0);
    size_t nx = (size_t)g.n * g.h * g.w * g.c, ny = (size_t)g.n * g.oh * g.ow * g.c, nw = (size_t)g.kh * g.kw * g.c;
    float *x = frand(nx), *wt = frand(nw), *dy = frand(ny), *bias = frand((size_t)g.c);
    float *y1 = frand(ny), *dx1 = frand(nx), *dw1 = frand(nw);
    kdh_pool_set_threads(1);
    kdk_sdwconv2d_fwd(DWGEOM(&g), x, wt, bias, KDK_ACT_RELU, y1);
    kdk_sdwconv2d_bwd_data(DWGEOM(&g), dy, wt, dx1, 0);
    kdk_sdwconv2d_bwd_filter(DWGEOM(&g), x, dy, dw1, 0);
    for (int t = 2; t <= 3; t++) {
        float *y = frand(ny), *dx = frand(nx), *dw = frand(nw);
        ck_assert_int_eq(kdh_pool_set_threads(t), t);
        unsigned long jobs = kdh_pool_jobs();
        kdh_sdwconv2d_fwd_mt(DWGEOM(&g), x, wt, bias, KDK_ACT_RELU, y);
        kdh_sdwconv2d_bwd_data_mt(DWGEOM(&g), dy, wt, dx, 0);
        kdh_sdwconv2d_bwd_filter_mt(DWGEOM(&g), x, dy, dw, 0);
        ck_assert_uint_eq(kdh_pool_jobs(), jobs + 3); /* each one split */
        same_bits(y, y1, ny, "dwconv2d_fwd", t);
        same_bits(dx, dx1, nx, "dwconv2d_bwd_data", t);
        same_bits(dw, dw1, nw, "dwconv2d_bwd_filter", t);
        free(y), free(dx), free(dw);
    }
    kdh_pool_set_threads(1);
    free(x), free(wt), free(dy), free(bias), free(y1), free(dx1), free(dw1);
}
END_TEST

/* kdh_parallel_range: every index of [0, n) exactly once, slices on grain
 * boundaries, small ranges in one call. */
static void range_mark(void *ctx, long lo, long hi)
{
    int *hits = ctx;
    ck_assert(lo % 16 == 0 && lo < hi);
    for (long i = lo; i < hi; i++) hits[i]++;
}

static void range_count(void *ctx, long lo, long hi)
{
    (void)lo, (void)hi;
    __atomic_fetch_add((int *)ctx, 1, __ATOMIC_RELAXED);
}

START_TEST(test_threads_range)
{
    static const long ns[] = {1, 31, 32, 100, 4097, 200704};
    for (int t = 1; t <= 3; t++) {
        ck_assert_int_eq(kdh_pool_set_threads(t), t);
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            long n = ns[k];
            int *hits = calloc((size_t)n, sizeof *hits);
            ck_assert_ptr_nonnull(hits);
            unsigned long jobs = kdh_pool_jobs();
            kdh_parallel_range(range_mark, hits, n, 16, 64);
            for (long i = 0; i < n; i++) ck_assert_msg(hits[i] == 1, "n=%ld threads=%d: index %ld run %d times", n, t, i, hits[i]);
            if (t > 1 && n >= 4097) ck_assert_uint_gt(kdh_pool_jobs(), jobs);
            free(hits);
        }
        int calls = 0;
        kdh_parallel_range(range_count, &calls, 63, 16, 64);
        ck_assert_int_eq(calls, 1);
    }
    kdh_pool_set_threads(1);
}
END_TEST

/* kdh_parallel_chunks: thread t first runs the t-th contiguous run of the
 * chunks (the same slice of the data on the same core, job after job); a
 * thread done with its own takes the others' from their far end. Here the
 * worker sleeps in its first chunk (4 of 8, the start of its run), so the
 * caller runs 0..3, then takes 7, 6, 5; each chunk runs exactly once. (One
 * order shared by all threads fails: the worker would take chunk 1.) */
typedef struct chunk_log {
    int thread[8];
    int runs[8];
} chunk_log;

static void chunk_record(void *ctx, int chunk, int nchunks, int thread)
{
    chunk_log *l = ctx;
    ck_assert_int_eq(nchunks, 8);
    if ((thread == 1 && chunk == 4) || chunk == 0) {
        /* the caller waits 5 ms in chunk 0, so that the worker is awake */
        struct timespec ts = {0, (chunk == 0 ? 5 : 100) * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    l->thread[chunk] = thread;
    __atomic_fetch_add(&l->runs[chunk], 1, __ATOMIC_RELAXED);
}

START_TEST(test_pool_owner_first)
{
    ck_assert_int_eq(kdh_pool_set_threads(2), 2);
    chunk_log l = {{0}, {0}};
    kdh_parallel_chunks(chunk_record, &l, 8);
    for (int c = 0; c < 8; c++) ck_assert_msg(l.runs[c] == 1, "chunk %d ran %d times", c, l.runs[c]);
    for (int c = 0; c < 4; c++) ck_assert_msg(l.thread[c] == 0, "chunk %d of the caller's run ran on thread %d", c, l.thread[c]);
    /* the worker, once awake, starts at the front of its run, so if it
     * reached the job at all it took chunk 4 and slept there */
    for (int c = 5; c < 8; c++) ck_assert_msg(l.thread[c] == 0, "chunk %d was left to the sleeping worker", c);
    kdh_pool_set_threads(1);
}
END_TEST

/* The caller waits for chunks, not for workers: with the workers held (as
 * when the host holds their vCPUs) a job still completes, every chunk on
 * the caller; once released, the late workers run nothing of the jobs they
 * missed, and take part in the next. Before, the caller waited for every
 * worker to finish each job and this test hung. A job of more chunks than
 * the claims can count (2^20 - 1) runs in order on the caller. */
static void chunk_once(void *ctx, int chunk, int nchunks, int thread)
{
    chunk_log *l = ctx;
    ck_assert_int_eq(nchunks, 8);
    if (chunk == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000}; /* time for an awake worker to take chunk 4 */
        nanosleep(&ts, NULL);
    }
    l->thread[chunk] = thread;
    __atomic_fetch_add(&l->runs[chunk], 1, __ATOMIC_RELAXED);
}

static void count_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    (void)nchunks;
    long *n = ctx;
    ck_assert_int_eq(thread, 0);
    ck_assert_int_eq(chunk, (int)*n); /* in order */
    (*n)++;
}

START_TEST(test_pool_held_workers)
{
    ck_assert_int_eq(kdh_pool_set_threads(3), 3);
    chunk_log held[2];
    memset(held, 0, sizeof held);
    kdh_pool_hold_workers(1);
    unsigned long jobs = kdh_pool_jobs();
    for (int j = 0; j < 2; j++) kdh_parallel_chunks(chunk_once, &held[j], 8);
    ck_assert_uint_eq(kdh_pool_jobs() - jobs, 2);
    kdh_pool_hold_workers(0);
    struct timespec ts = {0, 30 * 1000 * 1000}; /* the workers see the jobs they missed */
    nanosleep(&ts, NULL);
    for (int j = 0; j < 2; j++)
        for (int c = 0; c < 8; c++) {
            ck_assert_msg(held[j].runs[c] == 1, "job %d chunk %d ran %d times", j, c, held[j].runs[c]);
            ck_assert_msg(held[j].thread[c] == 0, "job %d chunk %d ran on held worker %d", j, c, held[j].thread[c]);
        }
    chunk_log l;
    memset(&l, 0, sizeof l);
    kdh_parallel_chunks(chunk_once, &l, 8);
    int on_workers = 0;
    for (int c = 0; c < 8; c++) {
        ck_assert_msg(l.runs[c] == 1, "chunk %d ran %d times", c, l.runs[c]);
        on_workers += l.thread[c] != 0;
    }
    ck_assert_msg(on_workers > 0, "the released workers took no chunk while the caller slept 20 ms in chunk 0");
    long n = 0;
    jobs = kdh_pool_jobs();
    kdh_parallel_chunks(count_chunk, &n, (1 << 20));
    ck_assert_int_eq(n, 1 << 20);
    ck_assert_uint_eq(kdh_pool_jobs(), jobs);
    kdh_pool_set_threads(1);
}
END_TEST

/* kdh_pool_profile: while on, each wrapper call adds to the entry of its
 * kind, shape and thread count, in first-call order; taking the profile
 * clears it; while off nothing is recorded. */
START_TEST(test_pool_profile)
{
    enum { M = 64, N = 256, K = 784 };
    float *A = calloc(M * K, sizeof *A), *B = calloc(K * N, sizeof *B), *C = calloc(M * N, sizeof *C);
    float *work = calloc(kdk_sgemm_work_size(M, N, K), sizeof *work);
    ck_assert(A && B && C && work);
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7) - 3;
    for (int i = 0; i < K * N; i++) B[i] = (float)(i % 5) - 2;
    kdh_prof_entry e[KDH_PROF_MAX];
    kdh_pool_profile(0);
    kdh_pool_profile_take(e, KDH_PROF_MAX);
    int calls = 0;
    kdh_parallel_range(range_count, &calls, 63, 16, 64);
    ck_assert_int_eq(kdh_pool_profile_take(e, KDH_PROF_MAX), 0); /* off: nothing */
    ck_assert_int_eq(kdh_pool_set_threads(2), 2);
    kdh_pool_profile(1);
    for (int r = 0; r < 2; r++) kdh_sgemm_mt(M, N, K, A, K, 0, B, N, 0, 0.0f, C, N, NULL, 0, work);
    kdh_parallel_range(range_count, &calls, 1000, 16, 64);
    kdh_pool_set_threads(1);
    kdh_sgemm_mt(M, N, K, A, K, 0, B, N, 0, 0.0f, C, N, NULL, 0, work);
    int n = kdh_pool_profile_take(e, KDH_PROF_MAX);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(e[0].kind, "gemm");
    ck_assert(e[0].a == M && e[0].b == N && e[0].c == K && e[0].threads == 2 && e[0].calls == 2 && e[0].us > 0);
    ck_assert_str_eq(e[1].kind, "range");
    ck_assert(e[1].a == 1000 && e[1].threads == 2 && e[1].calls == 1 && e[1].us > 0);
    ck_assert_str_eq(e[2].kind, "gemm");
    ck_assert(e[2].threads == 1 && e[2].calls == 1);
    /* the GEMM still computes: C[0][0] = sum_k A[0][k] B[k][0] */
    double want = 0;
    for (int k = 0; k < K; k++) want += (double)A[k] * B[(size_t)k * N];
    ck_assert_float_eq_tol(C[0], want, 1e-3);
    ck_assert_int_eq(kdh_pool_profile_take(e, KDH_PROF_MAX), 0); /* taken: cleared */
    kdh_pool_profile(0);
    kdh_sgemm_mt(M, N, K, A, K, 0, B, N, 0, 0.0f, C, N, NULL, 0, work);
    ck_assert_int_eq(kdh_pool_profile_take(e, KDH_PROF_MAX), 0);
    free(A), free(B), free(C), free(work);
}
END_TEST

/* ---- the host's floating-point mode (runtime/host/fpmode.c) ----
 * Inside kdh_fpmode_flush_subnormals a subnormal product is 0 on the caller and on
 * every pool worker; outside it (and after the mode is restored) it is not. */

static float subnormal_product(void)
{
    volatile float a = 1e-20f, b = 1e-20f; /* 1e-40: subnormal */
    return a * b;
}

typedef struct fp_probe {
    int zero[64]; /* per chunk: the product flushed */
} fp_probe;

static void probe_chunk(void *ctx, int chunk, int nchunks, int thread)
{
    (void)nchunks, (void)thread;
    fp_probe *p = ctx;
    p->zero[chunk] = subnormal_product() == 0.0f;
}

static int fp_flushes_in_pool(int threads, int want_zero)
{
    fp_probe p;
    memset(&p, 0, sizeof p);
    kdh_pool_set_threads(threads);
    kdh_parallel_chunks(probe_chunk, &p, 64);
    for (int c = 0; c < 64; c++)
        if (p.zero[c] != want_zero) return 0;
    return 1;
}

static int predict_saw_flush;
static void probe_predict(const float *params, const float *const *inputs, float *const *outputs, int batch,
                          void *arena)
{
    (void)params, (void)inputs, (void)arena;
    predict_saw_flush = subnormal_product() == 0.0f;
    for (int i = 0; i < batch; i++) outputs[0][i] = 0;
}

START_TEST(test_fpmode_flush)
{
#if defined(__x86_64__) || defined(__aarch64__)
    ck_assert_msg(subnormal_product() != 0.0f, "the test starts with subnormals kept");
    unsigned long old = kdh_fpmode_flush_subnormals();
    ck_assert_float_eq(subnormal_product(), 0.0f);
    for (int t = 1; t <= 3; t++) ck_assert_msg(fp_flushes_in_pool(t, 1), "%d threads: a worker kept a subnormal", t);
    kdh_fpmode_set(old);
    ck_assert(subnormal_product() != 0.0f);
    /* the same workers, the poster's mode again */
    for (int t = 3; t >= 1; t--) ck_assert_msg(fp_flushes_in_pool(t, 0), "%d threads: a worker still flushes", t);

    /* kdh_predict runs the model flushed and gives the caller its mode back */
    kdh_model m;
    memset(&m, 0, sizeof m);
    m.max_batch = 4;
    m.input_elems = 1;
    m.output_elems = 1;
    m.fns.predict = probe_predict;
    float x[6] = {0}, y[6];
    predict_saw_flush = 0;
    kdh_predict(&m, NULL, x, 6, y, NULL);
    ck_assert(predict_saw_flush);
    ck_assert_msg(subnormal_product() != 0.0f, "kdh_predict left subnormals flushed");
    kdh_pool_set_threads(1);
#endif
}
END_TEST

/* ---- fastmath.h: the float sigmoid and tanh of generated code ----------------
 * Their error in units in the last place of the correctly rounded value,
 * against double-precision libm, over every 2^11-th float in [-100, 100]
 * (about 1.1 million inputs); what libm's own float formulas measure there
 * (1 / (1 + expf(-x)): 2.47 ulp, tanhf: 2.18) is the bar. */

static double ulps(float got, double want)
{
    float w = (float)want;
    if (w == 0) return got == 0 ? 0 : INFINITY;
    return fabs((double)got - want) / (double)(nextafterf(fabsf(w), INFINITY) - fabsf(w));
}

START_TEST(test_fastmath_accuracy)
{
    double worst_exp = 0, worst_sigmoid = 0, worst_tanh = 0;
    for (uint64_t b = 0; b <= 0xffffffffu; b += 1u << 11) {
        float x;
        uint32_t bits = (uint32_t)b;
        memcpy(&x, &bits, sizeof x);
        if (!(fabsf(x) <= 100)) continue;
        if (x > KDK_EXP_LO && x < KDK_EXP_HI) worst_exp = fmax(worst_exp, ulps(kdk_expf_fast(x), exp((double)x)));
        if (x > -87) worst_sigmoid = fmax(worst_sigmoid, ulps(kdk_sigmoidf(x), 1 / (1 + exp(-(double)x))));
        worst_tanh = fmax(worst_tanh, ulps(kdk_tanhf(x), tanh((double)x)));
    }
    ck_assert_msg(worst_exp <= 1.5, "exp: %.2f ulp", worst_exp);
    ck_assert_msg(worst_sigmoid <= 3, "sigmoid: %.2f ulp", worst_sigmoid);
    ck_assert_msg(worst_tanh <= 2.5, "tanh: %.2f ulp", worst_tanh);
    /* the ends: saturation, no overflow, NaN through */
    ck_assert(kdk_sigmoidf(100) == 1 && kdk_sigmoidf(-100) >= 0 && kdk_sigmoidf(-100) < 1e-38f);
    ck_assert(kdk_sigmoidf(INFINITY) == 1 && kdk_sigmoidf(-INFINITY) < 1e-38f);
    ck_assert(kdk_tanhf(100) == 1 && kdk_tanhf(-100) == -1 && kdk_tanhf(INFINITY) == 1 && kdk_tanhf(-INFINITY) == -1);
    ck_assert(kdk_sigmoidf(0) == 0.5f && kdk_tanhf(0) == 0 && kdk_expf_fast(0) == 1);
    ck_assert(isnan(kdk_sigmoidf(NAN)) && isnan(kdk_tanhf(NAN)) && isnan(kdk_expf_fast(NAN)));
    ck_assert_float_eq_tol(kdk_expf_fast(1), 2.71828183f, 3e-7f);
}
END_TEST

/* ---- random.h / random.c: the dropout hash and the initialisers ---------------
 * The expected values were produced by the code these replaced (compiler/
 * dropout_hash.h and the init helpers emit_c.c wrote into model.c), so
 * dropout masks and initial weights for a seed stay what they were. */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

START_TEST(test_dropout_hash_values)
{
    ck_assert_uint_eq(kdk_mix64(0), 0xe220a8397b1dcdafULL);
    ck_assert_uint_eq(kdk_mix64(1), 0x910a2dec89025cc1ULL);
    ck_assert_uint_eq(kdk_dropout_bits(0, 1, 0, 5), 10653458u);
    ck_assert_uint_eq(kdk_dropout_bits(1, 8, 3, 1005), 889903u);
    ck_assert_uint_eq(kdk_dropout_bits(42, 15, 6, 2005), 14546234u);
    ck_assert_uint_eq(kdk_dropout_bits(0xdeadbeefcafef00dULL, 22, 9, 3005), 6377662u);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint64_t i = 0; i < 1000000; i++) {
        uint32_t b = kdk_dropout_bits(i % 7 * 0x9e3779b97f4a7c15ULL, i / 1000, (uint32_t)(i % 5), i);
        ck_assert(b < 1u << 24);
        h = fnv1a(h, &b, sizeof b);
    }
    ck_assert_uint_eq(h, 0x686616137b830529ULL);
    ck_assert_uint_eq(kdk_dropout_threshold(0.5), 8388608u);
    ck_assert_uint_eq(kdk_dropout_threshold(0.1), 1677722u);
    ck_assert_uint_eq(kdk_dropout_threshold(0.3333), 5591846u);
    ck_assert_uint_eq(kdk_dropout_threshold(0), 0u);
    ck_assert_uint_eq(kdk_dropout_threshold(1), 1u << 24);
    ck_assert_uint_eq(kdk_dropout_threshold(NAN), 0u);
}
END_TEST

START_TEST(test_init_values)
{
    static float fs[10000];
    static double ds[10000];
    static const float su[8] = {-0x1.09ff72p-4f, 0x1.5545b6p-4f, 0x1.484834p-4f, 0x1.5c543ap-4f,
                                0x1.b73386p-8f,  -0x1.3d9708p-8f, -0x1.2b4e5p-4f, -0x1.edcf2cp-5f};
    static const double dn[8] = {-0x1.0c417b8f0eb6p-2, 0x1.41a65b9148fc2p-1, 0x1.dc1a70f237f74p-2,
                                 0x1.3096ca118e64p-1,  0x1.b9a642e1faef1p-1, -0x1.23bc169745c82p-3,
                                 0x1.fe51dbf3f5d8ap-4, 0x1.7b99ff7013198p-6};
    const uint64_t h0 = 0xcbf29ce484222325ULL;
    kdk_sinit_uniform(fs, 8, 42, 3, -0.1, 0.1);
    for (int i = 0; i < 8; i++) ck_assert_msg(fs[i] == su[i], "uniform[%d] = %a, want %a", i, fs[i], su[i]);
    kdk_dinit_normal(ds, 8, 7, 2, 0.25, 0.5, 1);
    for (int i = 0; i < 8; i++) ck_assert_msg(ds[i] == dn[i], "normal[%d] = %a, want %a", i, ds[i], dn[i]);
    kdk_sinit_uniform(fs, 10000, 42, 3, -0.1, 0.1);
    ck_assert_uint_eq(fnv1a(h0, fs, sizeof fs), 0x4e271b217c659cd7ULL);
    kdk_dinit_uniform(ds, 10000, 42, 3, -0.1, 0.1);
    ck_assert_uint_eq(fnv1a(h0, ds, sizeof ds), 0xc172c168ef4dfd65ULL);
    kdk_sinit_normal(fs, 10000, 5, 1, 0, 0.05, 0);
    ck_assert_uint_eq(fnv1a(h0, fs, sizeof fs), 0x7f47100fab016757ULL);
    kdk_sinit_normal(fs, 10000, 5, 1, 0, 0.05, 1);
    ck_assert_uint_eq(fnv1a(h0, fs, sizeof fs), 0x9724b21236947c27ULL);
    for (int i = 0; i < 10000; i++) ck_assert(fabsf(fs[i]) <= 0.1f);
    kdk_dinit_normal(ds, 10000, 5, 1, 1, 2, 0);
    ck_assert_uint_eq(fnv1a(h0, ds, sizeof ds), 0x653f129691b0a7a9ULL);
    kdk_dinit_normal(ds, 10000, 5, 1, 1, 2, 1);
    ck_assert_uint_eq(fnv1a(h0, ds, sizeof ds), 0xd3f7bd8912d6140ULL);
    kdk_sinit_fill(fs, 3, 0.1);
    kdk_dinit_fill(ds, 3, 0.1);
    for (int i = 0; i < 3; i++) ck_assert(fs[i] == 0.1f && ds[i] == 0.1);
    ck_assert(fs[3] != 0.1f);   /* n elements, no more */
}
END_TEST

/* Keras' Orthogonal: orthonormal columns (tall) or rows (wide), times the
 * gain, in float and double; the same seed and stream give the same matrix. */
START_TEST(test_init_orthogonal)
{
    static const long shapes[][2] = {{6, 4}, {3, 5}, {8, 8}, {40, 40}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        long rows = shapes[c][0], cols = shapes[c][1];
        double d[1600], d2[1600];
        float f[1600];
        kdk_dinit_orthogonal(d, rows, cols, 9, 4, 1.5);
        kdk_dinit_orthogonal(d2, rows, cols, 9, 4, 1.5);
        kdk_sinit_orthogonal(f, rows, cols, 9, 4, 1.5);
        bool tall = rows >= cols;
        long n = tall ? cols : rows, len = tall ? rows : cols;
        for (long u = 0; u < n; u++)
            for (long v = 0; v < n; v++) {
                double dd = 0, ff = 0;
                for (long e = 0; e < len; e++) {
                    long iu = tall ? e * cols + u : u * cols + e, iv = tall ? e * cols + v : v * cols + e;
                    dd += d[iu] * d[iv];
                    ff += (double)f[iu] * f[iv];
                }
                ck_assert_double_eq_tol(dd, u == v ? 2.25 : 0, 1e-12);
                ck_assert_double_eq_tol(ff, u == v ? 2.25 : 0, 1e-4);   /* float Gram-Schmidt */
            }
        ck_assert(!memcmp(d, d2, (size_t)(rows * cols) * sizeof *d));
        for (long i = 0; i < rows * cols; i++) ck_assert_double_eq_tol(f[i], d[i], 1e-4);
    }
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gemm_shapes);
    tcase_add_test(tc, test_gemm_beta_bias_act);
    tcase_add_test(tc, test_gemm_blocking);
    tcase_add_test(tc, test_gemm_mlp_shapes);
    tcase_add_test(tc, test_gemm_small_m);
    tcase_add_test(tc, test_gemm_parts);
    tcase_add_test(tc, test_gemm_parts_bit_identical);
    tcase_add_test(tc, test_gemm_degenerate);
    tcase_add_test(tc, test_gemm_work_size);
    tcase_add_test(tc, test_colsum);
    suite_add_tcase(s, tc);
    tc = tcase_create("gemm_packed_b");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gemm_packed_b_bits);
    tcase_add_test(tc, test_gemm_packed_b_mismatch);
    tcase_add_test(tc, test_gemm_packed_b_size);
    suite_add_tcase(s, tc);
    tc = tcase_create("conv");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_conv);
    tcase_add_test(tc, test_conv_isa_variants);
    tcase_add_test(tc, test_conv_direct);
    tcase_add_test(tc, test_dwconv);
    tcase_add_test(tc, test_dwconv_parts_bit_identical);
    suite_add_tcase(s, tc);
    tc = tcase_create("pool");
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_global_pool);
    tcase_add_test(tc, test_pool_tiled_nan);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_threads_gemm);
    tcase_add_test(tc, test_threads_gemm_ksplit);
    tcase_add_test(tc, test_threads_conv_pool);
    tcase_add_test(tc, test_conv_pool_fused);
    tcase_add_test(tc, test_threads_dwconv);
    tcase_add_test(tc, test_threads_range);
    tcase_add_test(tc, test_pool_owner_first);
    tcase_add_test(tc, test_pool_held_workers);
    tcase_add_test(tc, test_pool_profile);
    tcase_add_test(tc, test_fpmode_flush);
    suite_add_tcase(s, tc);
    tc = tcase_create("softmax");
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_softmax_large);
    tcase_add_test(tc, test_rank_mean_alone);
    tcase_add_test(tc, test_xent_soft_and_fd);
    suite_add_tcase(s, tc);
    tc = tcase_create("random");
    tcase_add_test(tc, test_fastmath_accuracy);
    tcase_add_test(tc, test_dropout_hash_values);
    tcase_add_test(tc, test_init_values);
    tcase_add_test(tc, test_init_orthogonal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(kernels_suite());
}
