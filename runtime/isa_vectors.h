/* isa_vectors.h — what every instruction-set variant of a kernel template
 * starts with (isa_variants.h instantiates them): the vector types of KVB
 * bytes of KT (V) and of KTI (VI), their lane count VL, KINL for the
 * variant's always-inlined helpers, and unaligned loads and stores. The
 * template undefines VL, V, VI and KINL at its end. */

#define VL ((int)(KVB / sizeof(KT)))
typedef KT KV(vec) __attribute__((vector_size(KVB)));
typedef KTI KV(ivec) __attribute__((vector_size(KVB)));
#define V KV(vec)
#define VI KV(ivec)
#define KINL KTGT static inline __attribute__((always_inline))

KINL V KV(ld)(const KT *p)
{
    V x;
    memcpy(&x, p, sizeof x);
    return x;
}

KINL void KV(st)(KT *p, V x)
{
    memcpy(p, &x, sizeof x);
}
