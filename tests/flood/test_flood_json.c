/* Unit tests of flood's JSON writer (bench/flood/json.c): string escaping (quotes, backslashes,
 * control characters, valid and invalid UTF-8), numbers (fixed, general, non-finite as null),
 * the layout tools/soak reads line by line (a multi-line top object of inline values), nesting,
 * and misuse reported by json_end(). Output goes to a memory stream. */
#include "json.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The JSON string literal json_write_string makes of s. */
static char *quoted(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    json_write_string(f, s);
    assert_int_equal(fclose(f), 0);
    return buf;
}

#define EXPECT_QUOTED(in, want)                                                                    \
    do {                                                                                           \
        char *got_ = quoted(in);                                                                   \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)

static void test_json_escapes_quotes_and_backslashes(void **state)
{
    (void)state;
    EXPECT_QUOTED("", "\"\"");
    EXPECT_QUOTED("plain", "\"plain\"");
    EXPECT_QUOTED("say \"hi\"", "\"say \\\"hi\\\"\"");
    EXPECT_QUOTED("C:\\path\\", "\"C:\\\\path\\\\\"");
    EXPECT_QUOTED("/ stays", "\"/ stays\"");
}

static void test_json_escapes_control_characters(void **state)
{
    (void)state;
    EXPECT_QUOTED("a\nb\rc\td", "\"a\\nb\\rc\\td\"");
    EXPECT_QUOTED("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    EXPECT_QUOTED("\b\f", "\"\\u0008\\u000c\"");
}

static void test_json_utf8(void **state)
{
    (void)state;
    /* Valid sequences of 2, 3 and 4 bytes pass through. */
    EXPECT_QUOTED("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                  "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* A lone continuation byte, a truncated sequence, an overlong '/', a surrogate and a byte
     * that never starts a sequence: each invalid byte becomes U+FFFD. */
    EXPECT_QUOTED("a\x80z", "\"a\\ufffdz\"");
    EXPECT_QUOTED("\xe2\x82", "\"\\ufffd\\ufffd\"");
    EXPECT_QUOTED("\xc0\xaf", "\"\\ufffd\\ufffd\"");
    EXPECT_QUOTED("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
    EXPECT_QUOTED("\xff", "\"\\ufffd\"");
    /* A sequence cut by the end of the string does not read past it. */
    EXPECT_QUOTED("x\xf0\x9f", "\"x\\ufffd\\ufffd\"");
}

/* Runs a writer over a memory stream: the document and json_end's result. */
struct doc {
    char *buf;
    size_t len;
    FILE *f;
    struct json j;
};

static void doc_open(struct doc *d)
{
    d->buf = NULL;
    d->len = 0;
    d->f = open_memstream(&d->buf, &d->len);
    assert_non_null(d->f);
    json_init(&d->j, d->f);
}

static int doc_close(struct doc *d)
{
    int rc = json_end(&d->j);
    assert_int_equal(fclose(d->f), 0);
    return rc;
}

static void test_json_layout(void **state)
{
    (void)state;
    struct doc d;
    doc_open(&d);
    json_begin_object(&d.j, NULL, true);
    json_begin_object(&d.j, "config", false);
    json_string(&d.j, "proto", "line");
    json_i64(&d.j, "port", -1);
    json_null(&d.j, "count");
    json_string(&d.j, "json", NULL);
    json_bool(&d.j, "copy_reads", true);
    json_end_object(&d.j);
    json_u64(&d.j, "published", UINT64_MAX);
    json_fixed(&d.j, "window_s", 0.5, 6);
    json_begin_array(&d.j, "error_messages", false);
    json_end_array(&d.j);
    json_begin_array(&d.j, "tags", false);
    json_string(&d.j, NULL, "a");
    json_string(&d.j, NULL, "b");
    json_end_array(&d.j);
    json_begin_array(&d.j, "runs", true);
    json_begin_object(&d.j, NULL, false);
    json_general(&d.j, "x", 1234567.0, 6);
    json_end_object(&d.j);
    json_begin_object(&d.j, NULL, false);
    json_end_object(&d.j);
    json_end_array(&d.j);
    json_end_object(&d.j);
    assert_int_equal(doc_close(&d), 0);
    assert_string_equal(d.buf, "{\n"
                               "  \"config\": {\"proto\": \"line\", \"port\": -1, \"count\": null, "
                               "\"json\": null, \"copy_reads\": true},\n"
                               "  \"published\": 18446744073709551615,\n"
                               "  \"window_s\": 0.500000,\n"
                               "  \"error_messages\": [],\n"
                               "  \"tags\": [\"a\", \"b\"],\n"
                               "  \"runs\": [\n"
                               "    {\"x\": 1.23457e+06},\n"
                               "    {}\n"
                               "  ]\n"
                               "}\n");
    free(d.buf);
}

static void test_json_numbers(void **state)
{
    (void)state;
    struct doc d;
    doc_open(&d);
    json_begin_object(&d.j, NULL, false);
    json_fixed(&d.j, "a", 1.25, 1);
    json_fixed(&d.j, "b", NAN, 4);
    json_general(&d.j, "c", INFINITY, 6);
    json_general(&d.j, "d", -1, 6);
    json_fixed(&d.j, "e", 84.48, 3);
    json_i64(&d.j, "f", INT64_MIN);
    json_end_object(&d.j);
    assert_int_equal(doc_close(&d), 0);
    assert_string_equal(d.buf, "{\"a\": 1.2, \"b\": null, \"c\": null, \"d\": -1, \"e\": 84.480, "
                               "\"f\": -9223372036854775808}\n");
    free(d.buf);
}

static void test_json_keys_escaped(void **state)
{
    (void)state;
    struct doc d;
    doc_open(&d);
    json_begin_object(&d.j, NULL, false);
    json_string(&d.j, "k\"ey", "v\\al\n");
    json_end_object(&d.j);
    assert_int_equal(doc_close(&d), 0);
    assert_string_equal(d.buf, "{\"k\\\"ey\": \"v\\\\al\\n\"}\n");
    free(d.buf);
}

static void test_json_misuse_reported(void **state)
{
    (void)state;
    struct doc d;
    /* Left open. */
    doc_open(&d);
    json_begin_object(&d.j, NULL, true);
    assert_int_equal(doc_close(&d), -1);
    free(d.buf);
    /* Closed twice. */
    doc_open(&d);
    json_begin_object(&d.j, NULL, true);
    json_end_object(&d.j);
    json_end_object(&d.j);
    assert_int_equal(doc_close(&d), -1);
    free(d.buf);
    /* Too deep: reported, and nothing written out of bounds. */
    doc_open(&d);
    for (int i = 0; i < JSON_MAX_DEPTH + 2; i++)
        json_begin_array(&d.j, NULL, false);
    for (int i = 0; i < JSON_MAX_DEPTH + 2; i++)
        json_end_array(&d.j);
    assert_int_equal(doc_close(&d), -1);
    free(d.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escapes_quotes_and_backslashes),
        cmocka_unit_test(test_json_escapes_control_characters),
        cmocka_unit_test(test_json_utf8),
        cmocka_unit_test(test_json_layout),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_keys_escaped),
        cmocka_unit_test(test_json_misuse_reported),
    };
    return cmocka_run_group_tests_name("flood_json", tests, NULL, NULL);
}
