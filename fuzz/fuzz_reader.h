/* fuzz_reader.h — what the reader targets check after each read. */
#ifndef KDSL_FUZZ_READER_H
#define KDSL_FUZZ_READER_H

#include "fuzz.h"

#include "host/tensor_file.h"

#include <string.h>

/* Fuzzing must not ask for gigabytes: a lying length is refused below this
 * just as it is below the default 4 GiB. */
#define KDFUZZ_MAX_BYTES ((uint64_t)64 << 20)

/* A failure leaves one line of message, NUL-terminated and not empty. */
static inline void kdfuzz_check_error(const kdh_error *e)
{
    const char *nul = memchr(e->msg, 0, sizeof e->msg);
    kdfuzz_check(nul != NULL && nul != e->msg);
}

/* A tensor a reader returned: consistent, and usable by what callers do
 * next (finiteness check, conversion to f32). */
static inline void kdfuzz_use_tensor(const kdh_tensor *t)
{
    kdfuzz_check(t->data != NULL);
    kdfuzz_check(t->rank >= 0 && t->rank <= KDH_MAX_RANK);
    size_t nbytes = 0;
    kdfuzz_check(kdh_shape_bytes(t->dtype, t->rank, t->shape, &nbytes) == 0);
    kdfuzz_check(nbytes == t->nbytes);
    kdh_error e;
    if (kdh_check_finite(t, "fuzz", &e) != 0) kdfuzz_check_error(&e);
    kdh_tensor f;
    if (kdh_tensor_to_f32(t, &f, &e) == 0) {
        kdfuzz_check(f.nbytes == (size_t)kdh_tensor_count(t) * sizeof(float));
        kdh_tensor_free(&f);
    } else {
        kdfuzz_check_error(&e);
    }
    char buf[256];
    kdh_shape_str(t->rank, t->shape, buf, sizeof buf);
}

/* The failure contract: "on failure the output arguments are left empty". */
static inline void kdfuzz_check_empty_tensor(const kdh_tensor *t)
{
    kdfuzz_check(t->data == NULL && t->name == NULL && t->nbytes == 0);
}

#endif
