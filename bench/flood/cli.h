/* flood's command line: argv -> struct flood_opts. Pure (no I/O but the --help text it returns),
 * so the read-mode rules can be tested; main() prints and exits. The options are const for the
 * rest of the run: every module gets a `const struct flood_opts *`. */
#ifndef FLOOD_CLI_H
#define FLOOD_CLI_H

#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOOD_VERSION "0.1.0"
#define FLOOD_CONNECT_WINDOW 256        /* connects in progress at most (named in --help) */
#define FLOOD_LOWAT_DEFAULT (64 * 1024) /* --rcvlowat with --read-mode lowat, unless given */

/* How byte-counting subscribers read (verified ones always copy: they parse what they read). */
enum read_mode {
    READ_COPY,  /* recv into a user buffer (64 KiB provided buffers), as ordinary clients do */
    READ_TRUNC, /* MSG_TRUNC: the kernel discards the bytes, the byte count is all there is */
    READ_LOWAT, /* copy, and SO_RCVLOWAT (--rcvlowat) while the load runs: fewer, larger reads */
};

struct flood_opts {
    enum proto proto;
    const char *host;
    int port;
    long subs, pubs;
    size_t size;
    double rate;
    double duration;
    bool count_mode;
    uint64_t count;
    double warmup;
    long verify; /* resolved: 0 to subs */
    double connect_rate;
    const char *json;
    long server_pid; /* 0: none */
    bool expect_lossless;
    enum read_mode read_mode;
    double drain_timeout;
    size_t rcvlowat; /* resolved: what SO_RCVLOWAT gets while the load runs (0: untouched) */
    size_t rcvbuf;
    double read_interval_us;
    double spin_us; /* fixed rates: poll the ring this long around deadlines (0: never poll) */
    long threads;
    const char *channel;
    long slow_subs;
    double slow_rate;
    double churn;
    long repeat;
    const char *hist;
    bool tls;                   /* --tls: every connection is a TLS client session (tls.c) */
    bool tls_insecure;          /* no verification of the server's certificate */
    const char *tls_ca;         /* verify the server against this CA file */
    const char *tls_servername; /* SNI and the name verified (default: --host) */
    const char *auth;           /* ringcast: the token of the first frame, AUTH TOKEN */
};

enum cli_result {
    CLI_RUN = 0,
    CLI_HELP = 1,    /* print cli_usage() to stdout, exit 0 */
    CLI_VERSION = 2, /* print the version, exit 0 */
    CLI_ERROR = -1,  /* err holds one line naming the problem; exit 2 */
};

/**
 * Fills @o from argv (defaults for what is not given) and resolves the options that depend on
 * each other (--port's default, --verify "all", --read-mode and --rcvlowat). Strings in @o point
 * into argv. On CLI_ERROR, @err gets a one-line message without the "flood: " prefix.
 */
enum cli_result cli_parse(struct flood_opts *o, int argc, char *argv[], char *err, size_t errlen);

/** The --help text (a static string). */
const char *cli_usage(void);

/** "copy", "trunc" or "lowat". */
const char *cli_read_mode_name(enum read_mode m);

#endif
