/* driver.c — the pipeline's front half: source -> AST -> checked model. */
#include "driver.h"

#include <errno.h>
#include <string.h>

int kd_front_end_text(kd_session *s, const char *path, const char *text, size_t len, const char *name)
{
    s->src.path = path;
    s->src.text = text;
    s->src.len = len;
    if (!s->diags.out) s->diags.out = stderr;
    s->ast = kd_parse(&s->arena, &s->src, &s->diags);
    if (!s->ast || s->diags.errors) return 1;
    s->program = kd_check(&s->arena, s->ast, &s->diags, name);
    if (!s->program || s->diags.errors) return 1;
    s->model = kd_find_model(s->program, name);
    if (!s->model) {
        kd_error(&s->diags, (kd_loc){0}, "no model named '%s' in %s", name ? name : "?", path);
        return 1;
    }
    return 0;
}

int kd_front_end(kd_session *s, const char *path, const char *name)
{
    size_t len = 0;
    if (!s->diags.out) s->diags.out = stderr;
    char *text = kd_read_file(&s->arena, path, KD_MAX_SOURCE_BYTES, &len);
    if (!text) {
        kd_error(&s->diags, (kd_loc){0}, "cannot read %s: %s", path,
                 errno == EFBIG    ? "file is larger than 64 MiB"
                 : errno == EINVAL ? "not a regular file (a FIFO, device or socket)"
                                   : strerror(errno));
        return 1;
    }
    return kd_front_end_text(s, path, text, len, name);
}

void kd_session_free(kd_session *s)
{
    kd_arena_free(&s->arena);
    memset(s, 0, sizeof *s);
}
