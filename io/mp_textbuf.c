#include "mp_textbuf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"

void mp_tb_add(mp_textbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = mp_realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void mp_tb_str(mp_textbuf *b, const char *s) { mp_tb_add(b, s, strlen(s)); }

void mp_tb_u64(mp_textbuf *b, uint64_t v)
{
    char tmp[32];
    int w = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    mp_tb_add(b, tmp, (size_t)w);
}

void mp_tb_json_str(mp_textbuf *b, const char *s)
{
    mp_tb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            mp_tb_add(b, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            mp_tb_add(b, esc, 6);
        } else {
            mp_tb_add(b, (const char *)p, 1);
        }
    }
    mp_tb_add(b, "\"", 1);
}
