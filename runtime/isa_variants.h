/* isa_variants.h — a kernel template instantiated once per instruction-set
 * variant, then once more for its entry points. The including file defines
 * the template's file name (KDK_TEMPLATE), its element type (KT, KS, KP...)
 * and KI, and KDK_VARIANT_BASE when the plain target's vectors get a variant
 * of their own; kernels_impl.h says which of AVX-512 and AVX2 there are. Each
 * variant sees KVB (its vector bytes), KV(x) (its functions' names) and KTGT
 * (its target attribute); the template undefines them. The last pass, with
 * KV undefined, writes the portable code and the dispatching entry points. */

#ifdef KDK_VARIANT_BASE
#define KVB KDK_FAST_BASE_VB
#define KV(x) KDK_CAT(KI(x), _base)
#define KTGT
#include KDK_TEMPLATE
#endif
#ifdef KDK_FAST_AVX512
#define KVB 64
#define KV(x) KDK_CAT(KI(x), _avx512)
#define KTGT KDK_TGT_AVX512
#include KDK_TEMPLATE
#endif
#ifdef KDK_FAST_AVX2
#define KVB 32
#define KV(x) KDK_CAT(KI(x), _avx2)
#define KTGT KDK_TGT_AVX2
#include KDK_TEMPLATE
#endif
#include KDK_TEMPLATE
