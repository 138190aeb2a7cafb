/*
 * Tokens and the AUTH frame (auth.c) and the failure slow-down table (authpenalty.c): the file's
 * syntax and what it refuses (without ever quoting a token), lookups, remapping after a reload,
 * roles meeting, the AUTH frame in both framings fed in every split, and the delays.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ringcast/auth.h"
#include "ringcast/authpenalty.h"

static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static int parse(struct auth_tokens *t, const char *text, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->key, key, sizeof(key));
    return auth_tokens_parse(t, text, strlen(text), err, errlen);
}

static int32_t find(const struct auth_tokens *t, const char *tok)
{
    return auth_tokens_find(t, (const uint8_t *)tok, strlen(tok));
}

static void test_auth_file_syntax(void **state)
{
    (void)state;
    struct auth_tokens t;
    char err[160] = "";
    const char *text = "# publishers\n"
                       "pub  p-1\r\n"
                       "\n"
                       "   \t# indented comment\n"
                       "\tsub s~2 \t\n"
                       "both !b3";
    assert_int_equal(parse(&t, text, err, sizeof(err)), 0);
    assert_int_equal(t.n, 3);
    assert_int_equal(find(&t, "p-1"), 0);
    assert_int_equal(t.v[0].role, ROLE_PUB);
    assert_int_equal(find(&t, "s~2"), 1);
    assert_int_equal(t.v[1].role, ROLE_SUB);
    assert_int_equal(find(&t, "!b3"), 2);
    assert_int_equal(t.v[2].role, ROLE_BOTH);
    assert_int_equal(find(&t, "p-"), -1);
    assert_int_equal(find(&t, "p-1 "), -1);
    assert_int_equal(find(&t, ""), -1);
    auth_tokens_clear(&t);
    assert_null(t.v);

    assert_int_equal(parse(&t, "", err, sizeof(err)), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(find(&t, "x"), -1);
    auth_tokens_clear(&t);
}

/* Every refusal names the line and never the token (nor a word that may be one). */
static void test_auth_file_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"pub SECRETa\nadmin SECRETb\n", "line 2: the first word must be the role"},
        {"SECRETa pub\n", "line 1: the first word must be the role"},
        {"pub\n", "line 1: a role without a token"},
        {"pub SECRETa SECRETb\n", "line 1: expected ROLE TOKEN"},
        {"pub SECRETa\nsub SECRETa\n", "line 2: the token of line 1 again"},
        {"pub SECRET\x01x\n", "line 1: the token has a byte outside printable ASCII"},
        {"pub SECRET\xc3\xa9\n", "line 1: the token has a byte outside printable ASCII"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_tokens t;
        char err[160] = "";
        assert_int_equal(parse(&t, cases[i].text, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, cases[i].want));
        assert_null(strstr(err, "SECRET"));
        assert_null(t.v);
    }
    char long_line[AUTH_TOKEN_MAX + 16];
    snprintf(long_line, sizeof(long_line), "sub %0*d\n", AUTH_TOKEN_MAX + 1, 7);
    struct auth_tokens t;
    char err[160];
    assert_int_equal(parse(&t, long_line, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "longer than 256 bytes"));
    long_line[4 + AUTH_TOKEN_MAX] = '\n'; /* exactly the longest */
    long_line[5 + AUTH_TOKEN_MAX] = '\0';
    assert_int_equal(parse(&t, long_line, err, sizeof(err)), 0);
    assert_int_equal(t.v[0].len, AUTH_TOKEN_MAX);
    auth_tokens_clear(&t);
}

static void test_auth_file_token_limit(void **state)
{
    (void)state;
    size_t cap = (AUTH_TOKENS_MAX + 1) * 16;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (unsigned i = 0; i < AUTH_TOKENS_MAX; i++)
        len += (size_t)snprintf(text + len, cap - len, "pub t%u\n", i);
    struct auth_tokens t;
    char err[160];
    assert_int_equal(parse(&t, text, err, sizeof(err)), 0);
    assert_int_equal(t.n, AUTH_TOKENS_MAX);
    assert_int_equal(find(&t, "t4095"), 4095);
    assert_int_equal(find(&t, "t0"), 0);
    auth_tokens_clear(&t);
    snprintf(text + len, cap - len, "sub one-more\n");
    assert_int_equal(parse(&t, text, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "more than 4096 tokens"));
    free(text);
}

static void test_auth_file_load_permissions(void **state)
{
    (void)state;
    char path[] = "/tmp/ringcast-test-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "pub tok\n", 8), 8);
    close(fd);
    struct auth_tokens t = {0};
    char err[160];
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), 0); /* mkstemp: 0600 */
    assert_int_equal(t.n, 1);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "by group or others (mode 0640)"));
    assert_int_equal(t.n, 1); /* untouched on error: a reload keeps what it had */
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -EPERM);
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -ENOENT);
    assert_int_equal(auth_tokens_load(&t, "/tmp", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    auth_tokens_clear(&t);
}

/* A systemd credential: 0400 with an ACL entry for the service's user, whose mask shows as group
 * bits (0440). Accepted only inside $CREDENTIALS_DIRECTORY; the same file elsewhere is refused. */
static void test_auth_file_systemd_credential(void **state)
{
    (void)state;
    char dir[] = "/dev/shm/ringcast-test-cred-XXXXXX";
    if (!mkdtemp(dir))
        skip(); /* no /dev/shm here: nothing to check the ACL on */
    char path[sizeof(dir) + 8];
    snprintf(path, sizeof(path), "%s/auth", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("sub tok\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0400), 0);
    /* user::r, user:65534:r, group::-, mask::r, other::- (the xattr's version 2 layout) */
    const uint16_t tags[] = {0x01, 0x02, 0x04, 0x10, 0x20}, perms[] = {4, 4, 0, 4, 0};
    const uint32_t ids[] = {UINT32_MAX, 65534, UINT32_MAX, UINT32_MAX, UINT32_MAX};
    uint8_t acl[4 + 5 * 8];
    uint32_t version = 2;
    memcpy(acl, &version, 4);
    for (int i = 0; i < 5; i++) {
        memcpy(acl + 4 + 8 * i, &tags[i], 2);
        memcpy(acl + 6 + 8 * i, &perms[i], 2);
        memcpy(acl + 8 + 8 * i, &ids[i], 4);
    }
    if (setxattr(path, "system.posix_acl_access", acl, sizeof(acl), 0) < 0) {
        unlink(path);
        rmdir(dir);
        skip(); /* a file system without ACLs: systemd would chown instead (mode 0400) */
    }
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0440);
    struct auth_tokens t = {0};
    char err[160];
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -EPERM);
    setenv("CREDENTIALS_DIRECTORY", "/run/credentials/elsewhere", 1);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -EPERM);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), 0);
    assert_int_equal(t.n, 1);
    assert_int_equal(chmod(path, 0444), 0); /* readable by others: never */
    assert_int_equal(auth_tokens_load(&t, path, err, sizeof(err)), -EPERM);
    unsetenv("CREDENTIALS_DIRECTORY");
    auth_tokens_clear(&t);
    unlink(path);
    rmdir(dir);
}

static void test_auth_remap(void **state)
{
    (void)state;
    struct auth_tokens old, new;
    char err[160];
    assert_int_equal(parse(&old, "pub a\nsub b\nboth c\npub d\n", err, sizeof(err)), 0);
    assert_int_equal(parse(&new, "both c\nsub e\npub a\nboth d\n", err, sizeof(err)), 0);
    int32_t map[4];
    auth_tokens_remap(&old, &new, map);
    assert_int_equal(map[0], 2);  /* a: moved */
    assert_int_equal(map[1], -1); /* b: removed */
    assert_int_equal(map[2], 0);  /* c: moved */
    assert_int_equal(map[3], -1); /* d: its role changed: its clients are revoked */
    auth_tokens_clear(&old);
    auth_tokens_clear(&new);
}

static void test_auth_role_meet(void **state)
{
    (void)state;
    assert_int_equal(auth_role_meet(ROLE_BOTH, ROLE_BOTH), ROLE_BOTH);
    assert_int_equal(auth_role_meet(ROLE_BOTH, ROLE_PUB), ROLE_PUB);
    assert_int_equal(auth_role_meet(ROLE_BOTH, ROLE_SUB), ROLE_SUB);
    assert_int_equal(auth_role_meet(ROLE_PUB, ROLE_BOTH), ROLE_PUB);
    assert_int_equal(auth_role_meet(ROLE_SUB, ROLE_BOTH), ROLE_SUB);
    assert_int_equal(auth_role_meet(ROLE_PUB, ROLE_PUB), ROLE_PUB);
    assert_int_equal(auth_role_meet(ROLE_SUB, ROLE_SUB), ROLE_SUB);
    assert_int_equal(auth_role_meet(ROLE_PUB, ROLE_SUB), -1);
    assert_int_equal(auth_role_meet(ROLE_SUB, ROLE_PUB), -1);
}

/* Feed @wire in every prefix: a prefix of a valid frame needs more (never a verdict), the whole
 * gives @want; with OK, the token and length are checked. */
static void frame_case(enum framing f, const uint8_t *wire, size_t len, enum auth_frame want,
                       const char *tok_want)
{
    size_t flen = 0, tlen = 0;
    const uint8_t *tok = NULL;
    enum auth_frame r = auth_frame_parse(f, wire, len, &flen, &tok, &tlen);
    assert_int_equal(r, want);
    if (want == AUTH_FRAME_OK) {
        assert_int_equal(tlen, strlen(tok_want));
        assert_memory_equal(tok, tok_want, tlen);
        assert_true(flen <= len);
        for (size_t k = 0; k < flen; k++) {
            r = auth_frame_parse(f, wire, k, &flen, &tok, &tlen);
            assert_int_equal(r, AUTH_FRAME_NEED_MORE);
        }
    }
}

static void line(const char *s, enum auth_frame want, const char *tok)
{
    frame_case(FRAMING_LINE, (const uint8_t *)s, strlen(s), want, tok);
}

static void test_auth_frame_line(void **state)
{
    (void)state;
    line("AUTH secret\n", AUTH_FRAME_OK, "secret");
    line("AUTH secret\r\n", AUTH_FRAME_OK, "secret");
    line("AUTH secret\nhello\n", AUTH_FRAME_OK, "secret");
    line("hello\n", AUTH_FRAME_NOT_AUTH, NULL);
    line("h", AUTH_FRAME_NOT_AUTH, NULL); /* decided at the first byte */
    line("AUTX", AUTH_FRAME_NOT_AUTH, NULL);
    line("auth x\n", AUTH_FRAME_NOT_AUTH, NULL);
    line("AUTH\n", AUTH_FRAME_NOT_AUTH, NULL);
    line("AUTH \n", AUTH_FRAME_MALFORMED, NULL);
    line("AUTH \r\n", AUTH_FRAME_MALFORMED, NULL);
    line("AUTH a b\n", AUTH_FRAME_MALFORMED, NULL);
    line("AUTH a\tb\n", AUTH_FRAME_MALFORMED, NULL);
    line("AUTH", AUTH_FRAME_NEED_MORE, NULL);
    line("AUTH abc", AUTH_FRAME_NEED_MORE, NULL);
    char buf[600];
    /* A token one byte too long is malformed, and so is a line that goes on without a newline
     * past the longest frame (the longest that is fine: the next test). */
    snprintf(buf, sizeof(buf), "AUTH %0*d\n", AUTH_TOKEN_MAX + 1, 1);
    line(buf, AUTH_FRAME_MALFORMED, NULL);
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "AUTH ", 5);
    frame_case(FRAMING_LINE, (const uint8_t *)buf, sizeof(buf), AUTH_FRAME_MALFORMED, NULL);
    frame_case(FRAMING_LINE, (const uint8_t *)buf, 5 + AUTH_TOKEN_MAX + 1, AUTH_FRAME_NEED_MORE,
               NULL);
}

static void test_auth_frame_line_longest(void **state)
{
    (void)state;
    char buf[AUTH_TOKEN_MAX + 8], tok[AUTH_TOKEN_MAX + 1];
    memset(tok, 'k', AUTH_TOKEN_MAX);
    tok[AUTH_TOKEN_MAX] = '\0';
    snprintf(buf, sizeof(buf), "AUTH %s\r\n", tok);
    line(buf, AUTH_FRAME_OK, tok);
    assert_true(strlen(buf) <= AUTH_FRAME_MAX);
}

static size_t len32(uint8_t *out, const char *payload, size_t plen)
{
    out[0] = (uint8_t)(plen >> 24);
    out[1] = (uint8_t)(plen >> 16);
    out[2] = (uint8_t)(plen >> 8);
    out[3] = (uint8_t)plen;
    memcpy(out + 4, payload, plen);
    return 4 + plen;
}

static void test_auth_frame_len32(void **state)
{
    (void)state;
    uint8_t w[700];
    size_t n = len32(w, "AUTH secret", 11);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_OK, "secret");
    n = len32(w, "AUTH secret\n", 12); /* the payload is exactly AUTH TOKEN: no newline */
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_MALFORMED, NULL);
    n = len32(w, "hello", 5);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_NOT_AUTH, NULL);
    n = len32(w, "AUTH", 4);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_NOT_AUTH, NULL);
    n = len32(w, "AUTH ", 5);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_MALFORMED, NULL);
    n = len32(w, "", 0);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_NOT_AUTH, NULL);
    char big[600];
    memset(big, 't', sizeof(big));
    memcpy(big, "AUTH ", 5);
    big[5 + AUTH_TOKEN_MAX] = '\0';
    n = len32(w, big, 5 + AUTH_TOKEN_MAX);
    frame_case(FRAMING_LEN32, w, n, AUTH_FRAME_OK, big + 5);
    assert_true(n <= AUTH_FRAME_MAX);
    big[5 + AUTH_TOKEN_MAX] = 't';
    len32(w, big, 5 + AUTH_TOKEN_MAX + 1); /* decided from the header and the word */
    frame_case(FRAMING_LEN32, w, 9, AUTH_FRAME_MALFORMED, NULL);
    frame_case(FRAMING_LEN32, w, 8, AUTH_FRAME_NEED_MORE, NULL);
    /* A huge first frame that is not AUTH is told as soon as its payload starts. */
    uint8_t huge[5] = {0x7f, 0xff, 0xff, 0xff, 'x'};
    frame_case(FRAMING_LEN32, huge, 5, AUTH_FRAME_NOT_AUTH, NULL);
    frame_case(FRAMING_LEN32, huge, 4, AUTH_FRAME_NEED_MORE, NULL);
}

static void test_auth_penalty_delays(void **state)
{
    (void)state;
    const uint64_t ms = 1000 * 1000;
    assert_int_equal(authpenalty_delay(0), 0);
    assert_int_equal(authpenalty_delay(1), 0);
    assert_int_equal(authpenalty_delay(2), 250 * ms);
    assert_int_equal(authpenalty_delay(3), 500 * ms);
    assert_int_equal(authpenalty_delay(4), 1000 * ms);
    assert_int_equal(authpenalty_delay(5), 2000 * ms);
    assert_int_equal(authpenalty_delay(6), 4000 * ms);
    assert_int_equal(authpenalty_delay(7), 4000 * ms);
    assert_int_equal(authpenalty_delay(UINT32_MAX), 4000 * ms);
}

static struct peercount_key addr_key(uint32_t i)
{
    struct peercount_key k = {0};
    k.b[10] = k.b[11] = 0xff;
    memcpy(&k.b[12], &i, sizeof(i));
    return k;
}

static void test_auth_penalty_table(void **state)
{
    (void)state;
    const uint64_t s = 1000ull * 1000 * 1000;
    struct authpenalty p;
    assert_int_equal(authpenalty_init(&p, key), 0);
    struct peercount_key a = addr_key(1), b = addr_key(2);
    uint64_t t = 100 * s;
    assert_int_equal(authpenalty_fail(&p, &a, t), 0);
    assert_int_equal(authpenalty_fail(&p, &a, t + 1), authpenalty_delay(2));
    assert_int_equal(authpenalty_fail(&p, &b, t + 2), 0); /* another address: its own count */
    assert_int_equal(authpenalty_fail(&p, &a, t + 3), authpenalty_delay(3));
    /* A failure long after the last one starts again. */
    assert_int_equal(authpenalty_fail(&p, &a, t + 3 + AUTHPENALTY_MEMORY_NS + 1), 0);
    /* Many addresses: the table stays its size, and a busy one is remembered through the churn
     * as long as it keeps failing (the oldest in a set gives way). */
    t += 1000 * s;
    struct peercount_key hot = addr_key(0xabcdef);
    for (uint32_t i = 0; i < 100000; i++) {
        struct peercount_key k = addr_key(1000 + i);
        authpenalty_fail(&p, &k, t + 2 * i);
        if (i % 2 == 0)
            authpenalty_fail(&p, &hot, t + 2 * i + 1);
    }
    assert_int_equal(authpenalty_fail(&p, &hot, t + 300000), AUTHPENALTY_CAP_NS);
    authpenalty_destroy(&p);
    authpenalty_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_file_syntax),
        cmocka_unit_test(test_auth_file_refusals),
        cmocka_unit_test(test_auth_file_token_limit),
        cmocka_unit_test(test_auth_file_load_permissions),
        cmocka_unit_test(test_auth_file_systemd_credential),
        cmocka_unit_test(test_auth_remap),
        cmocka_unit_test(test_auth_role_meet),
        cmocka_unit_test(test_auth_frame_line),
        cmocka_unit_test(test_auth_frame_line_longest),
        cmocka_unit_test(test_auth_frame_len32),
        cmocka_unit_test(test_auth_penalty_delays),
        cmocka_unit_test(test_auth_penalty_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
