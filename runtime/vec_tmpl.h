/* vec_tmpl.h — vector loops along contiguous rows for one element type, at
 * the base vector width KDK_VB.  Included by the kernel templates with KT,
 * KTI (the integer type of KT's size) and KI(x) defined; the includer
 * #undefs KVL when done. */

#define KVL ((int)(KDK_VB / sizeof(KT)))
typedef KT KI(vec) __attribute__((vector_size(KDK_VB)));
typedef KTI KI(ivec) __attribute__((vector_size(KDK_VB)));

static inline KI(vec) KI(vld)(const KT *p)
{
    KI(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void KI(vst)(KT *p, KI(vec) v)
{
    memcpy(p, &v, sizeof v);
}

/* d[j] += s[j] */
static inline void KI(row_add)(KT *restrict d, const KT *restrict s, int n)
{
    int j = 0;
    for (; j + KVL <= n; j += KVL) KI(vst)(d + j, KI(vld)(d + j) + KI(vld)(s + j));
    for (; j < n; j++) d[j] += s[j];
}

/* d[j] += k·s[j] */
static inline void KI(row_axpy)(KT *restrict d, KT k, const KT *restrict s, int n)
{
    int j = 0;
    for (; j + KVL <= n; j += KVL) KI(vst)(d + j, KI(vld)(d + j) + k * KI(vld)(s + j));
    for (; j < n; j++) d[j] += k * s[j];
}

/* d[j] = k·s[j] */
static inline void KI(row_scaled)(KT *restrict d, KT k, const KT *restrict s, int n)
{
    int j = 0;
    for (; j + KVL <= n; j += KVL) KI(vst)(d + j, k * KI(vld)(s + j));
    for (; j < n; j++) d[j] = k * s[j];
}

/* d[j] *= k */
static inline void KI(row_scale)(KT *d, KT k, int n)
{
    int j = 0;
    for (; j + KVL <= n; j += KVL) KI(vst)(d + j, k * KI(vld)(d + j));
    for (; j < n; j++) d[j] *= k;
}
