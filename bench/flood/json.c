/* The JSON writer: see json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>

void json_init(struct json *j, FILE *f)
{
    *j = (struct json){.f = f};
}

/* Before a value: the separator and layout the enclosing container wants, then the key. */
static void member(struct json *j, const char *key)
{
    if (j->depth > 0) {
        int d = j->depth - 1;
        if (!j->first[d])
            fputc(',', j->f);
        if (j->multiline[d])
            fprintf(j->f, "\n%*s", 2 * j->depth, "");
        else if (!j->first[d])
            fputc(' ', j->f);
        j->first[d] = false;
    }
    if (key) {
        json_write_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void begin(struct json *j, const char *key, bool multiline, char open)
{
    member(j, key);
    fputc(open, j->f);
    if (j->depth >= JSON_MAX_DEPTH) {
        j->bad = true;
        return;
    }
    j->first[j->depth] = true;
    j->multiline[j->depth] = multiline;
    j->depth++;
}

static void end(struct json *j, char close)
{
    if (j->depth <= 0) {
        j->bad = true;
        return;
    }
    j->depth--;
    if (j->multiline[j->depth] && !j->first[j->depth])
        fprintf(j->f, "\n%*s", 2 * j->depth, "");
    fputc(close, j->f);
}

void json_begin_object(struct json *j, const char *key, bool multiline)
{
    begin(j, key, multiline, '{');
}

void json_end_object(struct json *j)
{
    end(j, '}');
}

void json_begin_array(struct json *j, const char *key, bool multiline)
{
    begin(j, key, multiline, '[');
}

void json_end_array(struct json *j)
{
    end(j, ']');
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
    member(j, key);
    fprintf(j->f, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
    member(j, key);
    fprintf(j->f, "%" PRId64, v);
}

void json_fixed(struct json *j, const char *key, double v, int decimals)
{
    member(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.*f", decimals, v);
    else
        fputs("null", j->f);
}

void json_general(struct json *j, const char *key, double v, int digits)
{
    member(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.*g", digits, v);
    else
        fputs("null", j->f);
}

void json_string(struct json *j, const char *key, const char *s)
{
    member(j, key);
    if (s)
        json_write_string(j->f, s);
    else
        fputs("null", j->f);
}

void json_bool(struct json *j, const char *key, bool v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->f);
}

void json_null(struct json *j, const char *key)
{
    member(j, key);
    fputs("null", j->f);
}

int json_end(struct json *j)
{
    fputc('\n', j->f);
    return j->bad || j->depth != 0 || ferror(j->f) ? -1 : 0;
}

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0 when it is not one (overlong
 * forms, surrogates and code points above U+10FFFF included). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x3fu >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned char ch = *p;
        if (ch == '"' || ch == '\\') {
            fputc('\\', f);
            fputc(ch, f);
        } else if (ch == '\n') {
            fputs("\\n", f);
        } else if (ch == '\r') {
            fputs("\\r", f);
        } else if (ch == '\t') {
            fputs("\\t", f);
        } else if (ch < 0x20 || ch == 0x7f) {
            fprintf(f, "\\u%04x", ch);
        } else if (ch >= 0x80) {
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", f);
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
            continue;
        } else {
            fputc(ch, f);
        }
        p++;
    }
    fputc('"', f);
}
