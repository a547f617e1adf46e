/* fuzz_npy.c — bytes as a NumPy .npy file (kdh_npy_read_mem). */
#include "fuzz_reader.h"

int kdfuzz_npy(const uint8_t *data, size_t size)
{
    kdh_read_opts opts = {.max_bytes = KDFUZZ_MAX_BYTES};
    kdh_tensor t;
    kdh_error e;
    if (kdh_npy_read_mem(data, size, "fuzz.npy", &opts, &t, &e) == 0) {
        kdfuzz_use_tensor(&t);
        kdh_tensor_free(&t);
    } else {
        kdfuzz_check_error(&e);
        kdfuzz_check_empty_tensor(&t);
    }
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_npy)
