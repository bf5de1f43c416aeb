/* mp_textbuf: a growing text buffer for the headers and indexes the writers build (the
 * safetensors header, model.safetensors.index.json). An allocation failure is sticky: every
 * later append does nothing and `oom` stays set, so a builder checks once at the end. */
#ifndef MP_TEXTBUF_H
#define MP_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;    /* NUL-terminated text, owned (free) */
    size_t n, cap;
    bool oom;
} mp_textbuf;

void mp_tb_add(mp_textbuf *b, const char *s, size_t n);
void mp_tb_str(mp_textbuf *b, const char *s);
void mp_tb_u64(mp_textbuf *b, uint64_t v);
/* A JSON string literal: quotes, backslashes and control characters escaped. */
void mp_tb_json_str(mp_textbuf *b, const char *s);

#endif
