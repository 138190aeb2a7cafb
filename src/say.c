#include "say.h"

#include <stdarg.h>
#include <stdio.h>

/* Set once before the loop starts; read-only afterwards (part of the configuration). */
static enum verbosity verbosity = VERB_NORMAL;

void say_set_verbosity(enum verbosity v)
{
    verbosity = v;
    /* Line by line even when stdout is a pipe, so logs interleave with other output correctly. */
    setvbuf(stdout, NULL, _IOLBF, 0);
}

enum verbosity say_verbosity(void)
{
    return verbosity;
}

static void vsay(FILE *f, const char *prefix, const char *fmt, va_list ap)
{
    fputs(prefix, f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
}

void say_always(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stdout, "", fmt, ap);
    va_end(ap);
}

void say_event(const char *fmt, ...)
{
    if (verbosity == VERB_QUIET)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsay(stdout, "", fmt, ap);
    va_end(ap);
}

void say_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stderr, "ringcast: warning: ", fmt, ap);
    va_end(ap);
}

void say_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stderr, "ringcast: ", fmt, ap);
    va_end(ap);
}

void say_escape(const uint8_t *p, size_t len, size_t max, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = len < max ? len : max;
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        switch (ch) {
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\0':
            *o++ = '\\';
            *o++ = '0';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        default:
            if (ch >= 0x20 && ch < 0x7f) {
                *o++ = (char)ch;
            } else {
                *o++ = '\\';
                *o++ = 'x';
                *o++ = hex[ch >> 4];
                *o++ = hex[ch & 15];
            }
        }
    }
    if (len > max) {
        *o++ = '.';
        *o++ = '.';
        *o++ = '.';
    }
    *o = '\0';
}
