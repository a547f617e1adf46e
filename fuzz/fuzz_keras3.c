/* fuzz_keras3.c — bytes as a Keras 3 .keras archive: kdslc import's zip
 * reader (kx_keras_zip_read_mem: libzip, then kdsl's checks of member
 * names, sizes, compression and metadata), and for an archive it accepts,
 * its config through the importer and the front end, and the accepted
 * program's variables through Keras 3's layout (keras3_layout.c). The
 * weights member is an HDF5 file, which kdslc reads in a child process; it
 * is checked here to start like one, and fuzz_h5 fuzzes its reader. */
#include "fuzz_reader.h"

#include "driver.h"
#include "keras3_layout.h"
#include "keras_config.h"
#include "keras_zip.h"

#include <string.h>

int kdfuzz_keras3(const uint8_t *data, size_t size)
{
    kx_keras_zip z;
    kdh_error e;
    if (kx_keras_zip_read_mem(data, size, "fuzz.keras", KDFUZZ_MAX_BYTES, &z, &e) != 0) {
        kdfuzz_check_error(&e);
        kdfuzz_check(!z.config && !z.weights && !z.keras_version);
        return 0;
    }
    kdfuzz_check(z.config && z.weights && z.weights_len >= 8 && !memcmp(z.weights, "\x89HDF", 4));
    kd_session s = {0};
    s.diags.out = kdfuzz_devnull();
    char *text = kx_config_to_kdsl(&s.arena, z.config, "fuzz.keras", z.keras_version, &s.diags);
    if (text) {
        kdfuzz_check(s.diags.errors == 0);
        int rc = kd_front_end_text(&s, "fuzz.kdsl", text, strlen(text), NULL);
        kdfuzz_check(rc == 0 || rc == 1);
        kx_keras3_layout lay;
        if (rc == 0 && kx_keras3_layout_of(&s.arena, z.config, s.model, "fuzz.keras", &lay, &s.diags) == 0)
            for (int i = 0; i < s.model->vars.len; i++) kdfuzz_check(lay.var_paths[i] && !strncmp(lay.var_paths[i], "layers/", 7));
    } else
        kdfuzz_check(s.diags.errors > 0);
    kd_session_free(&s);
    kx_keras_zip_free(&z);
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_keras3)
