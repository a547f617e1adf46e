/* fuzz_idx.c — bytes as an IDX file, plain or gzip'd (kdh_idx_read_mem). */
#include "fuzz_reader.h"

int kdfuzz_idx(const uint8_t *data, size_t size)
{
    kdh_read_opts opts = {.max_bytes = KDFUZZ_MAX_BYTES};
    kdh_tensor t;
    kdh_error e;
    if (kdh_idx_read_mem(data, size, "fuzz-idx3-ubyte", &opts, &t, &e) == 0) {
        kdfuzz_use_tensor(&t);
        kdh_tensor_free(&t);
    } else {
        kdfuzz_check_error(&e);
        kdfuzz_check_empty_tensor(&t);
    }
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_idx)
