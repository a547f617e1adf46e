/* fuzz_csv.c — bytes as a numeric CSV file (kdh_csv_parse). The text is not
 * NUL-terminated (as a file read whole is not required to be), so a read
 * past its end is caught. */
#include "fuzz_reader.h"

int kdfuzz_csv(const uint8_t *data, size_t size)
{
    kdh_tensor t;
    kdh_csv_header h;
    kdh_error e;
    if (kdh_csv_parse((const char *)data, size, "fuzz.csv", &t, &h, &e) == 0) {
        kdfuzz_use_tensor(&t);
        kdfuzz_check(t.dtype == KDH_F32 && t.rank == 2);
        kdfuzz_check(h.count == 0 || h.count == (size_t)t.shape[1]);
        for (size_t i = 0; i < h.count; i++) kdfuzz_check(h.names[i] != NULL);
        kdh_tensor_free(&t);
        kdh_csv_header_free(&h);
    } else {
        kdfuzz_check_error(&e);
        kdfuzz_check_empty_tensor(&t);
        kdfuzz_check(h.count == 0 && h.names == NULL);
    }
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_csv)
