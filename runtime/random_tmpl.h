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
