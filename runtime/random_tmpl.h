/* random_tmpl.h — the weight initialisers for one element type (random.h
 * states them). random.c includes this for float and double with KT and
 * KP(x) defined. Every value is computed in double and rounded once to KT. */

KDK_NO_CONTRACT void KP(init_fill)(KT *p, long n, double value)
{
    for (long i = 0; i < n; i++) p[i] = (KT)value;
}

KDK_NO_CONTRACT void KP(init_uniform)(KT *p, long n, unsigned long long seed, long stream, double lo, double hi)
{
    for (long i = 0; i < n; i++) p[i] = (KT)(lo + (hi - lo) * kdk_uniform01(seed, (uint64_t)stream, 2 * (uint64_t)i));
}

/* Box-Muller; truncated: redrawn until |z| <= 2 (Keras' TruncatedNormal). */
KDK_NO_CONTRACT void KP(init_normal)(KT *p, long n, unsigned long long seed, long stream, double mean, double sd,
                                     int truncated)
{
    for (long i = 0; i < n; i++) {
        double z = 0;
        for (uint64_t t = 0; t < 32; t++) {
            uint64_t k = (uint64_t)i * 32 + t;
            double u1 = kdk_uniform01(seed, (uint64_t)stream, 2 * k);
            double u2 = kdk_uniform01(seed, (uint64_t)stream, 2 * k + 1);
            double r = sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2);
            if (!truncated || fabs(r) <= 2) {
                z = r;
                break;
            }
        }
        p[i] = (KT)(mean + sd * z);
    }
}

/* Keras' Orthogonal: a [rows, cols] matrix of unit normals made orthonormal
 * (its columns when rows >= cols, else its rows) by modified Gram-Schmidt,
 * which is the Q of a QR decomposition with R's diagonal positive (Keras
 * multiplies Q by sign(diag(R)) to get the same), times gain. In place, in
 * double for each dot product: no memory but p. */
KDK_NO_CONTRACT void KP(init_orthogonal)(KT *p, long rows, long cols, unsigned long long seed, long stream, double gain)
{
    KP(init_normal)(p, rows * cols, seed, stream, 0, 1, 0);
    int by_cols = rows >= cols;
    long n = by_cols ? cols : rows, len = by_cols ? rows : cols;
    long step = by_cols ? cols : 1, stride = by_cols ? 1 : cols;   /* element e of vector v: p[v * stride + e * step] */
    for (long v = 0; v < n; v++) {
        KT *x = p + v * stride;
        for (long u = 0; u < v; u++) {
            const KT *q = p + u * stride;
            double d = 0;
            for (long e = 0; e < len; e++) d += (double)q[e * step] * (double)x[e * step];
            for (long e = 0; e < len; e++) x[e * step] = (KT)((double)x[e * step] - d * (double)q[e * step]);
        }
        double norm = 0;
        for (long e = 0; e < len; e++) norm += (double)x[e * step] * (double)x[e * step];
        norm = sqrt(norm);
        for (long e = 0; e < len; e++) x[e * step] = (KT)(norm > 0 ? (double)x[e * step] / norm : 0);
    }
    for (long i = 0; i < rows * cols; i++) p[i] = (KT)(gain * (double)p[i]);
}
