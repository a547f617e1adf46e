/* fuzz_frontend.c — bytes as a KDSL source, through the whole front end
 * (kd_front_end_text: lexer, parser, sema, shape inference, graph IR). A
 * model that checks is also summarised, drawn as DOT (kdslc plot) and, with
 * a train block, given its training graph (loss, autodiff, optimizer), as
 * `kdslc summary`, `plot` and `train` would. Diagnostics go to /dev/null. */
#include "fuzz.h"

#include "driver.h"
#include "plot.h"
#include "train_graph.h"

#include <string.h>

int kdfuzz_frontend(const uint8_t *data, size_t size)
{
    /* kd_source's text is NUL-terminated; the source itself may hold NULs. */
    char *text = malloc(size + 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    text[size] = 0;

    kd_session s = {0};
    s.diags.out = kdfuzz_devnull();
    int rc = kd_front_end_text(&s, "fuzz.kdsl", text, size, NULL);
    kdfuzz_check(rc == 0 || rc == 1);
    if (rc == 0) {
        kdfuzz_check(s.model != NULL && s.diags.errors == 0);
        kd_print_summary(kdfuzz_devnull(), s.model);
        kd_plot_dot(kdfuzz_devnull(), s.program, s.model, size % 2 == 0);   /* --show-shapes or not */
        if (s.model->config.present) {
            kd_train_graph tg;
            char why[256] = "";
            if (!kd_build_train_step(&s.arena, s.model, &tg, why, sizeof why))
                kdfuzz_check(why[0] != 0 && memchr(why, 0, sizeof why) != NULL);
        }
    } else {
        kdfuzz_check(s.diags.errors > 0);
    }
    kd_session_free(&s);
    free(text);
    return 0;
}

KDFUZZ_ENTRY(kdfuzz_frontend)
