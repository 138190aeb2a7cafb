/*
 * Fuzz target "opts": an argv built from the input goes through the pure opts_parse.
 *
 * Input: NUL-separated fields. The first is the ADDRESS environment variable, the second PORT
 * (empty: unset), the rest are argv[1..] (at most MAX_ARGS). Each string is its own allocation of
 * exactly its length, so a read past its NUL is an ASan report.
 *
 * Checked: it never crashes; an error has a non-empty one-line message that fits the buffer;
 * options it accepts keep the documented limits (sizes, --max-frame <= --max-queue, the pace
 * window, ports, a --metrics address that parses, --listen's addresses, roles and start-line
 * flags); and a second parse of the same argv gives the same answer (getopt's state is reset
 * between calls).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/netaddr.h"
#include "ringcast/opts.h"

#define MAX_ARGS 32
#define ERRLEN 256 /* as main.c */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_opts: check failed: %s: ", #cond);                               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct args {
    char *env[2];
    char *argv[MAX_ARGS + 2];
    int argc;
};

static char *dup_field(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void args_build(struct args *a, const uint8_t *data, size_t size)
{
    memset(a, 0, sizeof(*a));
    a->argv[a->argc++] = dup_field((const uint8_t *)"ringcast", 8);
    size_t field = 0, start = 0;
    for (size_t i = 0; i <= size && a->argc <= MAX_ARGS; i++) {
        if (i < size && data[i] != '\0')
            continue;
        if (field < 2) {
            if (i > start)
                a->env[field] = dup_field(data + start, i - start);
        } else if (i < size || i > start) {
            a->argv[a->argc++] = dup_field(data + start, i - start);
        }
        field++;
        start = i + 1;
    }
    a->argv[a->argc] = NULL;
}

static void args_free(struct args *a)
{
    free(a->env[0]);
    free(a->env[1]);
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
}

static enum opts_result parse(const struct args *a, struct opts *o, char *err)
{
    /* GNU getopt permutes argv: each parse gets its own copy of the pointer array. */
    char *argv[MAX_ARGS + 2];
    memcpy(argv, a->argv, sizeof(argv));
    memset(err, 0x5a, ERRLEN); /* no NUL: an error must write one */
    return opts_parse(o, a->argc, argv, a->env[0], a->env[1], err, ERRLEN);
}

static void check_error(const char *err)
{
    size_t len = strnlen(err, ERRLEN);
    CHECK(len < ERRLEN, "the message is not NUL-terminated within its buffer");
    CHECK(len > 0, "an empty message");
    for (size_t i = 0; i < len; i++)
        CHECK(err[i] != '\n' && err[i] != '\r', "a message of more than one line: '%s'", err);
}

static void check_run(const struct opts *o)
{
    const uint64_t max_size = 1ull << 30;
    size_t alen = strnlen(o->address, sizeof(o->address));
    CHECK(alen > 0 && alen < sizeof(o->address), "address length %zu", alen);
    CHECK(o->port >= 0 && o->port <= 65535, "port %d", o->port);
    CHECK(o->framing == FRAMING_LINE || o->framing == FRAMING_LEN32, "framing %d", o->framing);
    CHECK(o->slow_policy == SLOW_DISCONNECT || o->slow_policy == SLOW_DROP, "policy %d",
          o->slow_policy);
    CHECK(o->zerocopy == ZC_AUTO || o->zerocopy == ZC_ON || o->zerocopy == ZC_OFF, "zerocopy %d",
          o->zerocopy);
    CHECK(o->max_frame >= 1 && o->max_frame <= max_size, "max_frame %llu",
          (unsigned long long)o->max_frame);
    CHECK(o->max_queue >= 1 && o->max_queue <= max_size, "max_queue %llu",
          (unsigned long long)o->max_queue);
    CHECK(o->max_frame <= o->max_queue, "max_frame %llu > max_queue %llu",
          (unsigned long long)o->max_frame, (unsigned long long)o->max_queue);
    CHECK(o->pace_window >= 1 && o->pace_window <= o->max_queue, "pace %llu, max_queue %llu",
          (unsigned long long)o->pace_window, (unsigned long long)o->max_queue);
    CHECK(o->max_partial_memory >= 1, "max_partial_memory 0");
    CHECK(o->max_clients >= 1 && o->max_clients <= (1u << 24), "max_clients %u", o->max_clients);
    CHECK(o->max_clients_per_ip <= (1u << 24), "max_clients_per_ip %u", o->max_clients_per_ip);
    CHECK(o->backlog >= 0, "backlog %d", o->backlog);
    const double secs[] = {o->drain_timeout, o->frame_timeout, o->stats_interval};
    for (int i = 0; i < 3; i++)
        CHECK(isfinite(secs[i]) && secs[i] >= 0 && secs[i] <= 1e9, "seconds %g", secs[i]);
    CHECK(o->verbosity == VERB_QUIET || o->verbosity == VERB_NORMAL || o->verbosity == VERB_VERBOSE,
          "verbosity %d", o->verbosity);
    CHECK(o->nlisten <= OPTS_LISTEN_MAX, "nlisten %u", o->nlisten);
    for (unsigned i = 0; i < o->nlisten; i++) {
        const struct opts_listen *ls = &o->listen[i];
        union netaddr na;
        socklen_t nalen;
        CHECK(strnlen(ls->address, sizeof(ls->address)) < sizeof(ls->address),
              "listen address not terminated");
        CHECK(netaddr_parse(ls->address, ls->port, &na, &nalen) == 0, "listen address '%s'",
              ls->address);
        CHECK(ls->port >= 0 && ls->port <= 65535, "listen port %d", ls->port);
        CHECK(ls->role == ROLE_BOTH || ls->role == ROLE_PUB || ls->role == ROLE_SUB, "role %d",
              ls->role);
        size_t flen = strnlen(ls->flags, sizeof(ls->flags));
        CHECK(flen > 0 && flen < sizeof(ls->flags), "listen flags length %zu", flen);
        char role[16];
        snprintf(role, sizeof(role), "role=%s", opts_role_name(ls->role));
        CHECK(strstr(ls->flags, role) != NULL, "flags '%s' lack '%s'", ls->flags, role);
        CHECK(!ls->noauth == !strstr(ls->flags, "noauth"), "flags '%s', noauth %d", ls->flags,
              ls->noauth);
    }
    size_t mlen = strnlen(o->metrics, sizeof(o->metrics));
    CHECK(mlen < sizeof(o->metrics), "metrics not terminated");
    if (mlen) {
        union netaddr na;
        socklen_t nalen;
        CHECK(netaddr_parse_hostport(o->metrics, &na, &nalen) == 0, "metrics '%s'", o->metrics);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct args a;
    args_build(&a, data, size);
    struct opts o1, o2;
    char err1[ERRLEN], err2[ERRLEN];
    enum opts_result r1 = parse(&a, &o1, err1);
    CHECK(r1 == OPTS_RUN || r1 == OPTS_HELP || r1 == OPTS_VERSION || r1 == OPTS_ERROR, "result %d",
          (int)r1);
    if (r1 == OPTS_ERROR)
        check_error(err1);
    else if (r1 == OPTS_RUN)
        check_run(&o1);

    enum opts_result r2 = parse(&a, &o2, err2);
    CHECK(r2 == r1, "a second parse of the same argv gave %d, the first %d", (int)r2, (int)r1);
    if (r1 == OPTS_ERROR)
        CHECK(strcmp(err1, err2) == 0, "messages differ: '%s' then '%s'", err1, err2);
    else if (r1 == OPTS_RUN)
        CHECK(memcmp(&o1, &o2, sizeof(o1)) == 0, "a second parse filled different options");
    args_free(&a);
    return 0;
}
