/* Command-line and environment options of the ringcast server. Pure: no I/O. */
#ifndef RINGCAST_OPTS_H
#define RINGCAST_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum framing { FRAMING_LINE, FRAMING_LEN32 };
enum slow_policy { SLOW_DISCONNECT, SLOW_DROP };
enum zc_mode { ZC_AUTO, ZC_ON, ZC_OFF };
enum verbosity { VERB_QUIET, VERB_NORMAL, VERB_VERBOSE };
/* What the clients of a listener may do: both publish and receive, only publish, only receive. */
enum listen_role { ROLE_BOTH, ROLE_PUB, ROLE_SUB };

/* Extra listeners (--listen) beside the default one (--address/--port), at most. */
#define OPTS_LISTEN_MAX 8

/* One --listen ADDR:PORT[,role=both|pub|sub][,noauth][,tls][,proxy]. */
struct opts_listen {
    char address[64]; /* an IP literal, as given ("[::1]" keeps its brackets) */
    int port;         /* 0 picks a free port */
    enum listen_role role;
    bool noauth; /* no AUTH frame asked for there, even with --auth-file */
    bool tls;    /* TLS (--tls-cert, --tls-key) */
    bool proxy;  /* a PROXY protocol header (v1 or v2) comes first */
    /* The flags for its start line, as given, with "role=both" first when no role was given:
     * "role=sub", "role=pub,noauth", "role=both,noauth". */
    char flags[80];
};

struct opts {
    char address[64];
    int port; /* 0 picks a free port */
    enum framing framing;
    bool echo;
    uint64_t max_frame;          /* a line counts its '\n', a len32 frame its payload */
    uint64_t max_queue;          /* pending output per client */
    uint64_t pace_window;        /* how far the leading receiver may lag before publishers wait */
    uint64_t max_partial_memory; /* all partial frames together */
    enum slow_policy slow_policy;
    uint32_t max_clients;
    uint32_t max_clients_per_ip; /* open connections per peer address; 0: no limit */
    int backlog;                 /* 0: the system's somaxconn */
    enum zc_mode zerocopy;
    uint64_t zc_threshold;
    double drain_timeout;        /* seconds */
    double frame_timeout;        /* seconds; 0 disables */
    double stats_interval;       /* seconds; 0 disables */
    char auth_file[1024];        /* --auth-file: tokens; empty: no authentication anywhere */
    double auth_timeout;         /* seconds from accept to a complete AUTH frame (and TLS, PROXY) */
    char tls_cert[1024];         /* --tls-cert: PEM chain for tls listeners */
    char tls_key[1024];          /* --tls-key: its PEM private key */
    char tls_client_ca[1024];    /* --tls-client-ca: PEM CAs; set: client certificates required */
    uint32_t max_tls_handshakes; /* handshakes in progress at once, at most */
    enum verbosity verbosity;
    bool log_timestamps; /* --log-timestamps: RFC 3339 UTC time before each log line */
    char metrics[80];    /* --metrics HOST:PORT; empty: off */
    struct opts_listen listen[OPTS_LISTEN_MAX]; /* --listen, in the order given */
    unsigned nlisten;
};

enum opts_result {
    OPTS_RUN = 0,     /* options valid: run the server */
    OPTS_HELP = 1,    /* --help: print opts_usage() and exit 0 */
    OPTS_VERSION = 2, /* --version */
    OPTS_ERROR = -1,  /* usage error: err holds a one-line message; exit 2 */
};

/**
 * Fill @o from argv, with defaults from @env_address / @env_port (the ADDRESS and PORT
 * environment variables; either may be NULL). Flags override the environment.
 * On OPTS_ERROR a one-line message naming the problem is written to @err.
 */
enum opts_result opts_parse(struct opts *o, int argc, char *const argv[], const char *env_address,
                            const char *env_port, char *err, size_t errlen);

/** Parse a byte size with an optional K/M/G suffix (powers of 1024). 0 or -EINVAL/-ERANGE. */
int opts_parse_size(const char *s, uint64_t *out);

/** Parse non-negative (possibly fractional) seconds. 0 or -EINVAL. */
int opts_parse_seconds(const char *s, double *out);

/** The --help text. */
const char *opts_usage(void);

const char *opts_framing_name(enum framing f);

/** "both", "pub" or "sub". */
const char *opts_role_name(enum listen_role r);

#endif
