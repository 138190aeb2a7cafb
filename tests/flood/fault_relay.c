/* fault_relay: a deliberately faulty line-framed broadcast relay, for testing that flood detects
 * trouble. Every '\n'-terminated line a client sends goes to every other client (as ringcast does
 * with --framing line), except the measured flood messages chosen by the options, which it drops,
 * duplicates, swaps with the next one or alters:
 *
 *   --drop S     drops publisher P's measured message with sequence number S (to everyone)
 *   --dup S      sends it twice, back to back
 *   --swap S     holds it back and sends it right after the sender's next line (S + 1)
 *   --alter S    changes one byte of its filler (still printable, never '\n')
 *   --pub P      the publisher these apply to (0)
 *   --port N     listen port on 127.0.0.1 (0: a free one)
 *
 * A flood message starts "Tpppp ssssssssss " (see bench/flood/msg.h): T is 'M' for measured
 * messages, 'W' for readiness and warm-up ones, which are never touched. Each option may be given
 * once; different faults may be combined. On start it prints "fault_relay: listening on port N"
 * on stdout and then nothing; it runs until killed (SIGTERM / SIGINT end it with status 0).
 *
 * A plain poll() loop with unbounded per-client output buffers: meant for small test loads. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 1000
#define HDR_LEN 33 /* flood's message header */
#define NO_SEQ UINT64_MAX

struct buf {
    char *data;
    size_t len, off, cap;
};

struct client {
    int fd;
    struct buf in, out;
    char *held; /* --swap: the line held back until the sender's next one */
    size_t held_len;
};

static struct client clients[MAX_CLIENTS];
static size_t nclients;
static uint64_t opt_drop = NO_SEQ, opt_dup = NO_SEQ, opt_swap = NO_SEQ, opt_alter = NO_SEQ;
static unsigned long opt_pub;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void __attribute__((noreturn)) fail(const char *what)
{
    fprintf(stderr, "fault_relay: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void buf_append(struct buf *b, const char *p, size_t n)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->len + n > b->cap) {
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        if (cap != b->cap) {
            char *d = realloc(b->data, cap);
            if (!d) {
                errno = ENOMEM;
                fail("realloc");
            }
            b->data = d;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

static bool parse_hex(const char *p, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        int d = hexval(p[i]);
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* The sequence number of a measured message of the chosen publisher, or NO_SEQ. */
static uint64_t measured_seq(const char *line, size_t len)
{
    uint64_t pub, seq;
    if (len < HDR_LEN || line[0] != 'M' || !parse_hex(line + 1, 4, &pub) ||
        !parse_hex(line + 6, 10, &seq) || pub != opt_pub)
        return NO_SEQ;
    return seq;
}

static void flush_client(struct client *c)
{
    while (c->out.off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->out.off = c->out.len; /* a dead client: it is removed on its next read */
            }
            return;
        }
        c->out.off += (size_t)n;
    }
}

static void broadcast(size_t from, const char *line, size_t len)
{
    for (size_t i = 0; i < nclients; i++)
        if (i != from)
            buf_append(&clients[i].out, line, len);
}

static void relay_line(size_t from, const char *line, size_t len)
{
    struct client *c = &clients[from];
    uint64_t seq = measured_seq(line, len);
    char *held = c->held;
    size_t held_len = c->held_len;
    c->held = NULL;
    if (seq != NO_SEQ && seq == opt_drop) {
        /* nothing */
    } else if (seq != NO_SEQ && seq == opt_swap && !held) {
        c->held = malloc(len);
        if (!c->held)
            fail("malloc");
        memcpy(c->held, line, len);
        c->held_len = len;
    } else if (seq != NO_SEQ && seq == opt_alter && len > HDR_LEN + 1) {
        char *copy = malloc(len);
        if (!copy)
            fail("malloc");
        memcpy(copy, line, len);
        char *b = &copy[HDR_LEN]; /* the first filler byte, a letter, digit, '+' or '/' */
        *b = *b == 'x' ? 'y' : 'x';
        broadcast(from, copy, len);
        free(copy);
    } else {
        broadcast(from, line, len);
        if (seq != NO_SEQ && seq == opt_dup)
            broadcast(from, line, len);
    }
    if (held) {
        broadcast(from, held, held_len);
        free(held);
    }
}

static void drop_client(size_t i)
{
    struct client *c = &clients[i];
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c->held);
    clients[i] = clients[--nclients];
}

/* Reads what a client sent and relays its complete lines. Returns false when it is gone. */
static bool read_client(size_t i)
{
    struct client *c = &clients[i];
    char tmp[65536];
    for (;;) {
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return false;
        }
        buf_append(&c->in, tmp, (size_t)n);
        if ((size_t)n < sizeof(tmp))
            break;
    }
    size_t start = c->in.off;
    for (;;) {
        char *nl = memchr(c->in.data + start, '\n', c->in.len - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->in.data + start)) + 1;
        relay_line(i, c->in.data + start, len);
        /* relay_line may append to other clients' buffers only: c->in is untouched. */
        start += len;
    }
    c->in.off = start;
    return true;
}

static uint64_t parse_seq_opt(const char *name, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "fault_relay: %s: expected a sequence number, got '%s'\n", name, s);
        exit(2);
    }
    return (uint64_t)v;
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "fault_relay: %s: missing value or unknown option\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--drop"))
            opt_drop = parse_seq_opt(a, v);
        else if (!strcmp(a, "--dup"))
            opt_dup = parse_seq_opt(a, v);
        else if (!strcmp(a, "--swap"))
            opt_swap = parse_seq_opt(a, v);
        else if (!strcmp(a, "--alter"))
            opt_alter = parse_seq_opt(a, v);
        else if (!strcmp(a, "--pub"))
            opt_pub = (unsigned long)parse_seq_opt(a, v);
        else if (!strcmp(a, "--port"))
            port = (int)parse_seq_opt(a, v);
        else {
            fprintf(stderr, "fault_relay: unknown option '%s'\n", a);
            return 2;
        }
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        fail("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        fail("bind");
    if (listen(lfd, 1024) < 0)
        fail("listen");
    socklen_t sl = sizeof(sin);
    if (getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0)
        fail("getsockname");
    printf("fault_relay: listening on port %d\n", ntohs(sin.sin_port));
    fflush(stdout);

    static struct pollfd pfds[MAX_CLIENTS + 1];
    while (!stop) {
        pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (size_t i = 0; i < nclients; i++) {
            struct client *c = &clients[i];
            short ev = POLLIN;
            if (c->out.off < c->out.len)
                ev |= POLLOUT;
            pfds[i + 1] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        size_t polled = nclients;
        int n = poll(pfds, polled + 1, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("poll");
        }
        /* Handle clients from the last one down, so that removing one (which moves the last
         * into its slot) never skips or repeats another. */
        for (size_t k = polled; k > 0; k--) {
            size_t i = k - 1;
            short re = pfds[k].revents;
            if (!re)
                continue;
            if ((re & (POLLIN | POLLHUP | POLLERR)) && !read_client(i)) {
                drop_client(i);
                continue;
            }
        }
        for (size_t i = 0; i < nclients; i++)
            flush_client(&clients[i]);
        if (pfds[0].revents & POLLIN) {
            for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                if (nclients == MAX_CLIENTS) {
                    close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                clients[nclients++] = (struct client){.fd = fd};
            }
        }
    }
    while (nclients)
        drop_client(nclients - 1);
    close(lfd);
    return 0;
}
