/* kernel_list.h — the signatures of the kernels generated code calls, once.
 *
 * One row per kernel; kernels.h declares kdk_s<name> and kdk_d<name> from it,
 * the compiler builds its table of calls (lp_kernels[] and the lp_kernel_id
 * enum, codegen/loop_ir.c) and the JIT its table of addresses
 * (codegen/emit_jit.c) from the same rows.
 *
 *   KDK_K_<ID>(XK) expands to XK(ID, name, ret, host, (kind, arg), (kind, arg), ...)
 *
 *   ret    VOID, or F64: returns a double
 *   host   MT: the host runtime has a thread-split kdh_s<name>_mt with the same
 *          signature (runtime/host/parallel.h), which the JIT calls (rank_mean's
 *          is the host's mean over the MPI ranks); ST: none
 *   kind   INT int          LONG long          U64 unsigned long long
 *          REAL the element type (float for kdk_s, double for kdk_d)
 *          F64 double (whatever the element type)
 *          IN const real *  OUT real *  IN_I32 const int32_t *  OUT_I32 int32_t *
 *
 * Semantics: kernels.h (and random.h for the init_* kernels). */
#ifndef KDSL_KERNEL_LIST_H
#define KDSL_KERNEL_LIST_H

#define KDK_CONV_GEOM_ARGS (INT, n), (INT, h), (INT, w), (INT, c), (INT, oh), (INT, ow), (INT, f), \
                           (INT, kh), (INT, kw), (INT, sh), (INT, sw), (INT, pt), (INT, pl)
#define KDK_DW_GEOM_ARGS (INT, n), (INT, h), (INT, w), (INT, c), (INT, oh), (INT, ow), (INT, m), \
                         (INT, kh), (INT, kw), (INT, sh), (INT, sw), (INT, pt), (INT, pl), (INT, dih), (INT, diw)
#define KDK_POOL_GEOM_ARGS (INT, n), (INT, h), (INT, w), (INT, c), (INT, oh), (INT, ow), \
                           (INT, kh), (INT, kw), (INT, sh), (INT, sw), (INT, pt), (INT, pl)

#define KDK_K_GEMM(XK) XK(GEMM, gemm, VOID, MT, (INT, M), (INT, N), (INT, K), (IN, A), (INT, lda), (INT, transA), \
                        (IN, B), (INT, ldb), (INT, transB), (REAL, beta), (OUT, C), (INT, ldc), (IN, bias), \
                        (INT, act), (OUT, work))
#define KDK_K_GEMM_PACKED_B(XK) XK(GEMM_PACKED_B, gemm_packed_b, VOID, ST, (INT, M), (INT, N), (INT, K), (IN, A), \
                                 (INT, lda), (INT, transA), (IN, B), (INT, ldb), (INT, transB), (IN, packed), \
                                 (REAL, beta), (OUT, C), (INT, ldc), (IN, bias), (INT, act), (OUT, work))
#define KDK_K_COLSUM(XK) XK(COLSUM, colsum, VOID, ST, (INT, M), (INT, N), (IN, X), (INT, ldx), (OUT, out), \
                          (INT, accumulate))
#define KDK_K_CONV2D_FWD(XK) XK(CONV2D_FWD, conv2d_fwd, VOID, MT, KDK_CONV_GEOM_ARGS, (IN, x), (IN, wt), (IN, bias), \
                              (INT, act), (OUT, y), (OUT, work))
#define KDK_K_CONV2D_POOL_FWD(XK) XK(CONV2D_POOL_FWD, conv2d_pool_fwd, VOID, MT, KDK_CONV_GEOM_ARGS, (INT, pkh), \
                                   (INT, pkw), (INT, psh), (INT, psw), (IN, x), (IN, wt), (IN, bias), (INT, act), \
                                   (OUT, y), (OUT, work))
#define KDK_K_CONV2D_BWD_DATA(XK) XK(CONV2D_BWD_DATA, conv2d_bwd_data, VOID, MT, KDK_CONV_GEOM_ARGS, (IN, dy), \
                                   (IN, wt), (OUT, dx), (INT, accumulate), (OUT, work))
#define KDK_K_CONV2D_BWD_FILTER(XK) XK(CONV2D_BWD_FILTER, conv2d_bwd_filter, VOID, MT, KDK_CONV_GEOM_ARGS, (IN, x), \
                                     (IN, dy), (OUT, dwt), (INT, accumulate), (OUT, work))
#define KDK_K_DWCONV2D_FWD(XK) XK(DWCONV2D_FWD, dwconv2d_fwd, VOID, MT, KDK_DW_GEOM_ARGS, (IN, x), (IN, wt), \
                                (IN, bias), (INT, act), (OUT, y))
#define KDK_K_DWCONV2D_BWD_DATA(XK) XK(DWCONV2D_BWD_DATA, dwconv2d_bwd_data, VOID, MT, KDK_DW_GEOM_ARGS, (IN, dy), \
                                     (IN, wt), (OUT, dx), (INT, accumulate))
#define KDK_K_DWCONV2D_BWD_FILTER(XK) XK(DWCONV2D_BWD_FILTER, dwconv2d_bwd_filter, VOID, MT, KDK_DW_GEOM_ARGS, \
                                       (IN, x), (IN, dy), (OUT, dwt), (INT, accumulate))
#define KDK_K_MAXPOOL2D_FWD(XK) XK(MAXPOOL2D_FWD, maxpool2d_fwd, VOID, MT, KDK_POOL_GEOM_ARGS, (IN, x), (OUT, y), \
                                 (OUT_I32, argmax))
#define KDK_K_MAXPOOL2D_BWD(XK) XK(MAXPOOL2D_BWD, maxpool2d_bwd, VOID, MT, KDK_POOL_GEOM_ARGS, (IN, x), \
                                 (IN_I32, argmax), (IN, dy), (OUT, dx), (INT, accumulate))
#define KDK_K_AVGPOOL2D_FWD(XK) XK(AVGPOOL2D_FWD, avgpool2d_fwd, VOID, MT, KDK_POOL_GEOM_ARGS, (INT, count_pad), \
                                 (IN, x), (OUT, y))
#define KDK_K_AVGPOOL2D_BWD(XK) XK(AVGPOOL2D_BWD, avgpool2d_bwd, VOID, MT, KDK_POOL_GEOM_ARGS, (INT, count_pad), \
                                 (IN, dy), (OUT, dx), (INT, accumulate))
#define KDK_K_SOFTMAX(XK) XK(SOFTMAX, softmax, VOID, ST, (INT, rows), (INT, n), (IN, x), (OUT, y))
#define KDK_K_LOGSOFTMAX(XK) XK(LOGSOFTMAX, logsoftmax, VOID, ST, (INT, rows), (INT, n), (IN, x), (OUT, y))
#define KDK_K_SOFTMAX_XENT(XK) XK(SOFTMAX_XENT, softmax_xent, F64, ST, (INT, rows), (INT, n), (IN, logits), \
                                (IN, target), (OUT, loss), (OUT, dlogits), (REAL, scale))
#define KDK_K_RANK_MEAN(XK) XK(RANK_MEAN, rank_mean, VOID, MT, (INT, n), (INT, batch), (IN, x), (OUT, y))
#define KDK_K_INIT_FILL(XK) XK(INIT_FILL, init_fill, VOID, ST, (OUT, p), (LONG, n), (F64, value))
#define KDK_K_INIT_UNIFORM(XK) XK(INIT_UNIFORM, init_uniform, VOID, ST, (OUT, p), (LONG, n), (U64, seed), \
                                (LONG, stream), (F64, lo), (F64, hi))
#define KDK_K_INIT_NORMAL(XK) XK(INIT_NORMAL, init_normal, VOID, ST, (OUT, p), (LONG, n), (U64, seed), \
                               (LONG, stream), (F64, mean), (F64, stddev), (INT, truncated))
#define KDK_K_INIT_ORTHOGONAL(XK) XK(INIT_ORTHOGONAL, init_orthogonal, VOID, ST, (OUT, p), (LONG, rows), \
                                   (LONG, cols), (U64, seed), (LONG, stream), (F64, gain))

/* Every row, in the order of the compiler's lp_kernel_id. */
#define KDK_KERNEL_LIST(XK) \
    KDK_K_GEMM(XK) KDK_K_GEMM_PACKED_B(XK) KDK_K_COLSUM(XK) \
    KDK_K_CONV2D_FWD(XK) KDK_K_CONV2D_POOL_FWD(XK) KDK_K_CONV2D_BWD_DATA(XK) KDK_K_CONV2D_BWD_FILTER(XK) \
    KDK_K_DWCONV2D_FWD(XK) KDK_K_DWCONV2D_BWD_DATA(XK) KDK_K_DWCONV2D_BWD_FILTER(XK) \
    KDK_K_MAXPOOL2D_FWD(XK) KDK_K_MAXPOOL2D_BWD(XK) KDK_K_AVGPOOL2D_FWD(XK) KDK_K_AVGPOOL2D_BWD(XK) \
    KDK_K_SOFTMAX(XK) KDK_K_LOGSOFTMAX(XK) KDK_K_SOFTMAX_XENT(XK) KDK_K_RANK_MEAN(XK) \
    KDK_K_INIT_FILL(XK) KDK_K_INIT_UNIFORM(XK) KDK_K_INIT_NORMAL(XK) KDK_K_INIT_ORTHOGONAL(XK)

/* ---- expanding a row ---------------------------------------------------------
 * KDK_NARGS(args...): how many (kind, arg) pairs (1 to 24).
 * KDK_MAP(f, args...): f(kind, arg) for each pair, separated by commas. */
#define KDK_NARGS(...) KDK_NARGS_(__VA_ARGS__, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, \
                                  6, 5, 4, 3, 2, 1, 0)
#define KDK_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, \
                   _22, _23, _24, N, ...) N
#define KDK_LCAT_(a, b) a##b
#define KDK_LCAT(a, b) KDK_LCAT_(a, b)
#define KDK_MAP(f, ...) KDK_LCAT(KDK_MAP_, KDK_NARGS(__VA_ARGS__))(f, __VA_ARGS__)
#define KDK_MAP_1(f, x) f x
#define KDK_MAP_2(f, x, ...) f x, KDK_MAP_1(f, __VA_ARGS__)
#define KDK_MAP_3(f, x, ...) f x, KDK_MAP_2(f, __VA_ARGS__)
#define KDK_MAP_4(f, x, ...) f x, KDK_MAP_3(f, __VA_ARGS__)
#define KDK_MAP_5(f, x, ...) f x, KDK_MAP_4(f, __VA_ARGS__)
#define KDK_MAP_6(f, x, ...) f x, KDK_MAP_5(f, __VA_ARGS__)
#define KDK_MAP_7(f, x, ...) f x, KDK_MAP_6(f, __VA_ARGS__)
#define KDK_MAP_8(f, x, ...) f x, KDK_MAP_7(f, __VA_ARGS__)
#define KDK_MAP_9(f, x, ...) f x, KDK_MAP_8(f, __VA_ARGS__)
#define KDK_MAP_10(f, x, ...) f x, KDK_MAP_9(f, __VA_ARGS__)
#define KDK_MAP_11(f, x, ...) f x, KDK_MAP_10(f, __VA_ARGS__)
#define KDK_MAP_12(f, x, ...) f x, KDK_MAP_11(f, __VA_ARGS__)
#define KDK_MAP_13(f, x, ...) f x, KDK_MAP_12(f, __VA_ARGS__)
#define KDK_MAP_14(f, x, ...) f x, KDK_MAP_13(f, __VA_ARGS__)
#define KDK_MAP_15(f, x, ...) f x, KDK_MAP_14(f, __VA_ARGS__)
#define KDK_MAP_16(f, x, ...) f x, KDK_MAP_15(f, __VA_ARGS__)
#define KDK_MAP_17(f, x, ...) f x, KDK_MAP_16(f, __VA_ARGS__)
#define KDK_MAP_18(f, x, ...) f x, KDK_MAP_17(f, __VA_ARGS__)
#define KDK_MAP_19(f, x, ...) f x, KDK_MAP_18(f, __VA_ARGS__)
#define KDK_MAP_20(f, x, ...) f x, KDK_MAP_19(f, __VA_ARGS__)
#define KDK_MAP_21(f, x, ...) f x, KDK_MAP_20(f, __VA_ARGS__)
#define KDK_MAP_22(f, x, ...) f x, KDK_MAP_21(f, __VA_ARGS__)
#define KDK_MAP_23(f, x, ...) f x, KDK_MAP_22(f, __VA_ARGS__)
#define KDK_MAP_24(f, x, ...) f x, KDK_MAP_23(f, __VA_ARGS__)

/* The C types of the kinds, for kdk_s (float) and kdk_d (double). */
#define KDK_RET_VOID void
#define KDK_RET_F64 double
#define KDK_TS_INT int
#define KDK_TS_LONG long
#define KDK_TS_U64 unsigned long long
#define KDK_TS_REAL float
#define KDK_TS_F64 double
#define KDK_TS_IN const float *
#define KDK_TS_OUT float *
#define KDK_TS_IN_I32 const int32_t *
#define KDK_TS_OUT_I32 int32_t *
#define KDK_TD_INT int
#define KDK_TD_LONG long
#define KDK_TD_U64 unsigned long long
#define KDK_TD_REAL double
#define KDK_TD_F64 double
#define KDK_TD_IN const double *
#define KDK_TD_OUT double *
#define KDK_TD_IN_I32 const int32_t *
#define KDK_TD_OUT_I32 int32_t *
#define KDK_PARAM_S(kind, arg) KDK_TS_##kind arg
#define KDK_PARAM_D(kind, arg) KDK_TD_##kind arg

/* A row's two prototypes: KDK_K_GEMM(KDK_DECLARE) declares kdk_sgemm and kdk_dgemm. */
#define KDK_DECLARE(ID, name, ret, host, ...) \
    KDK_RET_##ret kdk_s##name(KDK_MAP(KDK_PARAM_S, __VA_ARGS__)); \
    KDK_RET_##ret kdk_d##name(KDK_MAP(KDK_PARAM_D, __VA_ARGS__));

#endif
