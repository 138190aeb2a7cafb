/* A small streaming JSON writer for flood's result: objects, arrays, numbers, strings (escaped,
 * invalid UTF-8 replaced), booleans and null, with the commas and layout handled here rather
 * than by the callers. A container is either multi-line (each member on its own line, indented
 * two spaces per level) or inline ({"a": 1, "b": 2}); flood's result is a multi-line object of
 * inline values, a layout that tools/soak reads line by line. No allocation; errors of the
 * stream are reported once, by json_end(). */
#ifndef FLOOD_JSON_H
#define FLOOD_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
    FILE *f;                        /* private */
    int depth;                      /* private: open containers */
    bool first[JSON_MAX_DEPTH];     /* private: no member written yet at that depth */
    bool multiline[JSON_MAX_DEPTH]; /* private */
    bool bad;                       /* private: misuse (too deep, end without begin) */
};

/** Starts writing one JSON value to @f (which stays the caller's). */
void json_init(struct json *j, FILE *f);

/* Members: @key names the member inside an object; NULL for an array element or the top value.
 * json_begin_* open a container, json_end_* close the innermost one. */
void json_begin_object(struct json *j, const char *key, bool multiline);
void json_end_object(struct json *j);
void json_begin_array(struct json *j, const char *key, bool multiline);
void json_end_array(struct json *j);

void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
/** @v with @decimals digits after the point ("%.*f"); null when not finite. */
void json_fixed(struct json *j, const char *key, double v, int decimals);
/** @v with @digits significant digits ("%.*g": 6 is printf's %g); null when not finite. */
void json_general(struct json *j, const char *key, double v, int digits);
/** A string, escaped; NULL writes null. */
void json_string(struct json *j, const char *key, const char *s);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);

/** Ends the document with a newline. 0, or -1 when the writer was misused (containers left
 * open or closed twice, nesting deeper than JSON_MAX_DEPTH) or the stream has an error. */
int json_end(struct json *j);

/** Writes @s as a JSON string literal (quotes included) to @f: '"', '\\' and control characters
 * escaped, invalid UTF-8 bytes replaced by U+FFFD, so the result is always valid JSON. */
void json_write_string(FILE *f, const char *s);

#endif
