#include "say.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Set once before the loop starts; read-only afterwards (part of the configuration). */
static enum verbosity verbosity = VERB_NORMAL;
static bool timestamps;
static bool journal_out, journal_err; /* that stream is the journal: lines carry a level */

/* systemd sets JOURNAL_STREAM to "DEV:INODE" of the stream it connected (systemd.exec(5)); a
 * descriptor inherited elsewhere (a shell redirect) does not match and keeps plain lines. */
static bool is_journal(int fd, const char *stream)
{
    unsigned long long dev, ino;
    char extra;
    struct stat st;
    if (!stream || sscanf(stream, "%llu:%llu%c", &dev, &ino, &extra) != 2 || fstat(fd, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void say_init(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    journal_out = is_journal(STDOUT_FILENO, stream);
    journal_err = is_journal(STDERR_FILENO, stream);
    /* Line by line even to a pipe, so logs interleave with other output correctly; stderr too,
     * so each line is one write and the journal never sees one in pieces. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IOLBF, 0);
}

void say_set_verbosity(enum verbosity v)
{
    verbosity = v;
}

void say_set_timestamps(bool on)
{
    timestamps = on;
}

enum verbosity say_verbosity(void)
{
    return verbosity;
}

/* level: the sd-daemon priority, 6 info, 4 warning, 3 error. */
static void vsay(FILE *f, int level, const char *prefix, const char *fmt, va_list ap)
{
    if (f == stdout ? journal_out : journal_err)
        fprintf(f, "<%d>", level);
    if (timestamps) {
        struct timespec ts;
        struct tm tm;
        char when[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(f, "%s.%03ldZ ", when, ts.tv_nsec / 1000000);
    }
    fputs(prefix, f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
}

void say_always(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stdout, 6, "", fmt, ap);
    va_end(ap);
}

void say_event(const char *fmt, ...)
{
    if (verbosity == VERB_QUIET)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsay(stdout, 6, "", fmt, ap);
    va_end(ap);
}

void say_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stderr, 4, "ringcast: warning: ", fmt, ap);
    va_end(ap);
}

void say_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(stderr, 3, "ringcast: ", fmt, ap);
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
