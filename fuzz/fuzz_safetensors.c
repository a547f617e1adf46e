/* fuzz_safetensors.c — bytes as a safetensors file (kdh_safetensors_read_mem):
 * 8-byte header length, JSON header, data. */
#include "fuzz_reader.h"

int kdfuzz_safetensors(const uint8_t *data, size_t size)
{
    kdh_read_opts opts = {.max_bytes = KDFUZZ_MAX_BYTES};
    kdh_tensor_list l;
    kdh_error e;
    if (kdh_safetensors_read_mem(data, size, "fuzz.safetensors", &opts, &l, &e) == 0) {
        for (size_t i = 0; i < l.count; i++) {
            const kdh_tensor *t = &l.items[i];
            kdfuzz_check(t->name != NULL);
            kdfuzz_use_tensor(t);
            kdfuzz_check(kdh_list_find(&l, t->name) != NULL);
            kdh_list_expect(&l, "fuzz.safetensors", t->name, KDH_F32, 2, (const int64_t[]){2, 3}, &e);
        }
        for (size_t i = 0; i < l.nmeta; i++)
            kdfuzz_check(kdh_list_get_meta(&l, l.meta[i].key) != NULL);
        kdh_list_free(&l);
    } else {
        kdfuzz_check_error(&e);
        kdfuzz_check(l.count == 0 && l.items == NULL && l.nmeta == 0 && l.meta == NULL);
    }
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_safetensors)
