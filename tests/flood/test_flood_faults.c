/* flood must see exactly the trouble a faulty relay causes. tests/flood/fault_relay drops,
 * duplicates, swaps or alters one chosen measured message of publisher 0 on its way to every
 * subscriber, and flood must report the counts issue 3's definitions give:
 *
 *   fault       verified subscriber              byte-counting subscriber
 *   drop        lost 1                           lost 1 (one message short)
 *   duplicate   duplicated 1                     duplicated 1 (one message over)
 *   swap        reordered 1, lost 0              nothing (the byte count is right)
 *   alter       corrupt 1, and lost 1 (its       nothing: the byte count is right and the
 *               sequence number is not trusted)  content is not looked at
 *
 * per subscriber, and under --expect-lossless exit 3 whenever any count is not 0. */
#include "flood_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#define SUBS 4
#define COUNT 200
#define FAULT_SEQ "57"
#define LAST_SEQ "199" /* COUNT - 1 */

struct want {
    long lost, duplicated, reordered, corrupt;
};

/* Runs flood (1 publisher, SUBS subscribers, COUNT messages, `verify` verified subscribers: "all"
 * or a number) through a fault relay started with fault options; checks the counts and the exit
 * status. */
static void run_case(const char *fault, const char *seq, const char *verify, struct want w)
{
    const char *ropts[] = {fault, seq, NULL};
    pid_t pid;
    int port = fs_start_fault_relay(ropts, &pid);
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    const char *args[] = {"--proto", "line", "--port", p, "--subs", "4", "--pubs", "1", "--count",
                          "200", "--size", "64", "--warmup", "0", "--read-mode", "trunc",
                          /* a drop leaves subscribers short for good: stop waiting soon */
                          "--drain-timeout", "1", "--expect-lossless", "--verify", verify, NULL};
    /* --verify all is the default: leave the option out then. */
    if (!strcmp(verify, "all"))
        args[19] = NULL;
    struct fs_flood r;
    fs_flood_run(&r, args);
    int rcode = sp_stop(pid);

    bool clean = !w.lost && !w.duplicated && !w.reordered && !w.corrupt;
    if (r.code != (clean ? 0 : 3) || !r.json) {
        print_error("%s %s, --verify %s: flood exited %d, want %d\n", fault, seq, verify, r.code,
                    clean ? 0 : 3);
        fail();
    }
    const char *j = r.json;
    long published = (long)fs_json_need(j, "published");
    assert_int_equal(published, COUNT);
    assert_int_equal((long)fs_json_need(j, "expected_deliveries"), (long)COUNT * SUBS);
    struct want got = {(long)fs_json_need(j, "lost"), (long)fs_json_need(j, "duplicated"),
                       (long)fs_json_need(j, "reordered"), (long)fs_json_need(j, "corrupt")};
    if (memcmp(&got, &w, sizeof(got)) != 0) {
        print_error("%s %s, --verify %s: lost %ld duplicated %ld reordered %ld corrupt %ld; "
                    "want %ld %ld %ld %ld\n",
                    fault, seq, verify, got.lost, got.duplicated, got.reordered, got.corrupt,
                    w.lost, w.duplicated, w.reordered, w.corrupt);
        fail();
    }
    /* Deliveries: what arrived intact (verified) or the whole messages counted (bytes). */
    long deliveries = (long)fs_json_need(j, "deliveries");
    long want_deliveries = (long)COUNT * SUBS - w.lost + w.duplicated;
    assert_int_equal(deliveries, want_deliveries);
    fs_flood_free(&r);
    assert_int_equal(rcode, 0);
}

/* ---- verified subscribers (--verify all) ---- */

static void test_verified_drop(void **state)
{
    (void)state;
    run_case("--drop", FAULT_SEQ, "all", (struct want){.lost = SUBS});
}

static void test_verified_duplicate(void **state)
{
    (void)state;
    run_case("--dup", FAULT_SEQ, "all", (struct want){.duplicated = SUBS});
}

static void test_verified_swap(void **state)
{
    (void)state;
    run_case("--swap", FAULT_SEQ, "all", (struct want){.reordered = SUBS});
}

static void test_verified_alter(void **state)
{
    (void)state;
    run_case("--alter", FAULT_SEQ, "all", (struct want){.corrupt = SUBS, .lost = SUBS});
}

/* ---- byte-counting subscribers (--verify 0) ---- */

static void test_counting_drop(void **state)
{
    (void)state;
    run_case("--drop", FAULT_SEQ, "0", (struct want){.lost = SUBS});
}

static void test_counting_duplicate(void **state)
{
    (void)state;
    /* The last message, so that the byte count is never complete before everything is there. */
    run_case("--dup", LAST_SEQ, "0", (struct want){.duplicated = SUBS});
}

static void test_counting_swap(void **state)
{
    (void)state;
    /* Same bytes in another order: invisible to a byte count. */
    run_case("--swap", FAULT_SEQ, "0", (struct want){0});
}

static void test_counting_alter(void **state)
{
    (void)state;
    /* One changed byte keeps the count right: a byte-counting subscriber cannot see it. */
    run_case("--alter", FAULT_SEQ, "0", (struct want){0});
}

/* ---- half and half: the counts add up ---- */

static void test_mixed_drop(void **state)
{
    (void)state;
    run_case("--drop", FAULT_SEQ, "2", (struct want){.lost = SUBS});
}

static void test_mixed_alter(void **state)
{
    (void)state;
    /* Only the 2 verified subscribers see the altered byte. */
    run_case("--alter", FAULT_SEQ, "2", (struct want){.corrupt = 2, .lost = 2});
}

/* The relay itself is faithful when asked for nothing: a message that never comes is no fault. */
static void test_no_fault(void **state)
{
    (void)state;
    run_case("--drop", "999999", "2", (struct want){0});
}

int main(void)
{
    fs_flood_bin();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_fault),           cmocka_unit_test(test_verified_drop),
        cmocka_unit_test(test_verified_duplicate), cmocka_unit_test(test_verified_swap),
        cmocka_unit_test(test_verified_alter),     cmocka_unit_test(test_counting_drop),
        cmocka_unit_test(test_counting_duplicate), cmocka_unit_test(test_counting_swap),
        cmocka_unit_test(test_counting_alter),     cmocka_unit_test(test_mixed_drop),
        cmocka_unit_test(test_mixed_alter),
    };
    return cmocka_run_group_tests_name("flood_faults", tests, NULL, NULL);
}
