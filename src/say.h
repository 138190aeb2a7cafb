/* Logging: events on stdout (line by line, as the walkthrough prints them), warnings and errors
 * on stderr. The verbosity is set once at start-up, before the loop runs. A stream that is the
 * journal (JOURNAL_STREAM names it) gets sd-daemon levels: <6> events, <4> warnings, <3> errors. */
#ifndef RINGCAST_SAY_H
#define RINGCAST_SAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcast/opts.h"

/** Call first: line-buffers the streams and checks whether they are the journal. */
void say_init(void);
void say_set_verbosity(enum verbosity v);
/** Start each line with its UTC time, RFC 3339 with milliseconds (--log-timestamps). */
void say_set_timestamps(bool on);
enum verbosity say_verbosity(void);

/** The start line and other lines shown even with -q. */
void say_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Connection events: hidden by -q. */
void say_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * Escape @p[0..@len) C-style into @out (printable ASCII kept, the rest as \n, \r, \t, \0 or
 * \xNN), cut at @max input bytes with "..." appended. @out must hold 4 * max + 4 bytes.
 */
void say_escape(const uint8_t *p, size_t len, size_t max, char *out);

#endif
