/* arena.c — the compiler's memory: bump allocation in big blocks, freed at once. */
#include "kdsl.h"

#include <stdlib.h>
#include <string.h>

struct kd_arena_block {
    kd_arena_block *next;
    size_t size, used;
    _Alignas(max_align_t) unsigned char data[];
};

enum { BLOCK_SIZE = 1 << 16 };

static void out_of_memory(size_t size)
{
    fprintf(stderr, "kdslc: error: out of memory (asked for %zu bytes)\n", size);
    exit(1);
}

void *kd_alloc(kd_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    kd_arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        if (cap > SIZE_MAX - sizeof *b) out_of_memory(size);
        b = malloc(sizeof *b + cap);
        if (!b) out_of_memory(size);
        b->size = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    a->used += size;
    memset(p, 0, size);
    return p;
}

void *kd_alloc_array(kd_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) out_of_memory(SIZE_MAX);
    return kd_alloc(a, n * size);
}

char *kd_strndup(kd_arena *a, const char *s, size_t n)
{
    char *p = kd_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *kd_strdup(kd_arena *a, const char *s) { return kd_strndup(a, s, strlen(s)); }

char *kd_format(kd_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = kd_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    if (n > 0) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void kd_arena_free(kd_arena *a)
{
    kd_arena_block *b = a->head;
    while (b) {
        kd_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

void kd_vec_push(kd_arena *a, kd_vec *v, void *item)
{
    if (v->len == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        void **items = kd_alloc_array(a, (size_t)cap, sizeof *items);
        if (v->len) memcpy(items, v->items, (size_t)v->len * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = item;
}

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603u;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

bool kd_strset_has(const kd_strset *s, const char *key)
{
    if (!s->cap) return false;
    for (uint64_t i = hash_string(key) & (uint64_t)(s->cap - 1);; i = (i + 1) & (uint64_t)(s->cap - 1)) {
        if (!s->slots[i]) return false;
        if (strcmp(s->slots[i], key) == 0) return true;
    }
}

void kd_strset_add(kd_arena *a, kd_strset *s, const char *key)
{
    if (kd_strset_has(s, key)) return;
    if (2 * (s->len + 1) > s->cap) {
        kd_strset bigger = {.cap = s->cap ? 2 * s->cap : 64};
        bigger.slots = kd_alloc_array(a, (size_t)bigger.cap, sizeof *bigger.slots);
        for (int i = 0; i < s->cap; i++)
            if (s->slots[i]) kd_strset_add(a, &bigger, s->slots[i]);
        *s = bigger;
    }
    uint64_t i = hash_string(key) & (uint64_t)(s->cap - 1);
    while (s->slots[i]) i = (i + 1) & (uint64_t)(s->cap - 1);
    s->slots[i] = key;
    s->len++;
}

void *kd_strmap_get(const kd_strmap *m, const char *key)
{
    if (!m->cap) return NULL;
    uint64_t mask = (uint64_t)(m->cap - 1);
    for (uint64_t i = hash_string(key) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i]) return NULL;
        if (strcmp(m->keys[i], key) == 0) return m->values[i];
    }
}

void kd_strmap_put(kd_arena *a, kd_strmap *m, const char *key, void *value)
{
    if (2 * (m->len + 1) > m->cap) {
        kd_strmap bigger = {.cap = m->cap ? 2 * m->cap : 16};
        bigger.keys = kd_alloc_array(a, (size_t)bigger.cap, sizeof *bigger.keys);
        bigger.values = kd_alloc_array(a, (size_t)bigger.cap, sizeof *bigger.values);
        for (int i = 0; i < m->cap; i++)
            if (m->keys[i]) kd_strmap_put(a, &bigger, m->keys[i], m->values[i]);
        *m = bigger;
    }
    uint64_t mask = (uint64_t)(m->cap - 1);
    uint64_t i = hash_string(key) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->len++;
    }
    m->values[i] = value;
}
