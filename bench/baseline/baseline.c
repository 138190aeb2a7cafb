/* baseline: the batching baseline that every benchmark runs beside ringcast. A minimal
 * single-threaded, level-triggered epoll relay with the same framing and start line as ringcast:
 * each read of whole frames goes out in one send per other client, straight from the reader's
 * buffer, so its cost is little more than the kernel's copies. It shows where the copy wall is on
 * the day; it is a reference point, not a product (no pacing: a subscriber that falls more than
 * --max-queue behind is disconnected).
 *
 * Usage: baseline [--port P] [--address A] [--framing line|len32] [--max-queue B] [--max-frame B]
 * Prints "Server started at: ADDR:PORT" once listening; SIGINT/SIGTERM exit 0. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)

struct buf {
    char *p;
    size_t off, len, cap; /* the bytes are p[off, off + len) */
};

struct client {
    int fd;
    struct buf in, out; /* in: the incomplete tail; out: what the socket refused */
};

static struct {
    const char *address;
    int port;
    bool len32;
    uint64_t max_queue, max_frame;
} cfg = {"127.0.0.1", 0, false, 8ull << 20, 1ull << 20};

static volatile sig_atomic_t stop;
static int epfd, max_fd = -1;
static struct client **by_fd; /* sized by RLIMIT_NOFILE */

static void on_signal(int sig)
{
    stop = 1;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "baseline: out of memory\n");
        exit(1);
    }
    return p;
}

static _Noreturn void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "baseline: %s: '%s' (usage: bench/baseline/baseline.c)\n", what, arg);
    exit(2);
}

static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    end += shift != 0;
    if (errno || end == s || *end || *s == '-' || v == 0 || v > (UINT64_MAX >> shift))
        usage_error("bad size", s);
    return (uint64_t)v << shift;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage_error("unknown option or missing value", o);
        i++;
        if (!strcmp(o, "--port")) {
            char *end;
            long p = strtol(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || p > 65535)
                usage_error("bad port", v);
            cfg.port = (int)p;
        } else if (!strcmp(o, "--address")) {
            cfg.address = v;
        } else if (!strcmp(o, "--framing")) {
            if (strcmp(v, "line") && strcmp(v, "len32"))
                usage_error("bad framing (line|len32)", v);
            cfg.len32 = !strcmp(v, "len32");
        } else if (!strcmp(o, "--max-queue")) {
            cfg.max_queue = parse_size(v);
        } else if (!strcmp(o, "--max-frame")) {
            cfg.max_frame = parse_size(v);
        } else {
            usage_error("unknown option", o);
        }
    }
}

/* Frees at once: no caller touches c afterwards (see the event loop for events still due). */
static void kill_client(struct client *c)
{
    by_fd[c->fd] = NULL;
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void watch(struct client *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = c->fd};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0)
        kill_client(c);
}

/* Queues what c's socket refused, or disconnects c when that would pass --max-queue. */
static void enqueue(struct client *c, const char *data, size_t n)
{
    struct buf *q = &c->out;
    if (q->len + n > cfg.max_queue) {
        kill_client(c); /* slow consumer */
        return;
    }
    if (q->off && q->off + q->len + n > q->cap) {
        /* Unsent bytes to the front first, so the buffer stays under twice --max-queue. */
        memmove(q->p, q->p + q->off, q->len);
        q->off = 0;
    }
    if (q->len + n > q->cap) {
        q->cap = q->cap * 2 > q->len + n ? q->cap * 2 : q->len + n;
        q->p = xrealloc(q->p, q->cap);
    }
    memcpy(q->p + q->off + q->len, data, n);
    q->len += n;
    if (q->len == n) /* it was empty: wait for room only while something waits for it */
        watch(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
}

/* Each other client gets the chunk: one send when nothing is queued for it, else behind its
 * queue, so every client sees the frames in the order they were read. */
static void broadcast(const struct client *from, const char *data, size_t n)
{
    for (int fd = 0; fd <= max_fd; fd++) {
        struct client *c = by_fd[fd];
        if (!c || c == from)
            continue;
        ssize_t r = c->out.len ? 0 : send(c->fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            r = 0; /* the socket took nothing */
        if (r < 0)
            kill_client(c);
        else if ((size_t)r < n)
            enqueue(c, data + r, n - (size_t)r);
    }
}

/* The length of the whole frames at the start of p[0, n); *bad when a len32 header there claims
 * more than --max-frame (the frames before it still count). */
static size_t whole_frames(const char *p, size_t n, bool *bad)
{
    *bad = false;
    if (!cfg.len32) {
        const char *nl = memrchr(p, '\n', n);
        size_t cut = nl ? (size_t)(nl - p) + 1 : 0;
        /* Only the unfinished line is measured: it is what this relay would have to hold. */
        *bad = n - cut >= cfg.max_frame;
        return cut;
    }
    size_t off = 0;
    for (uint64_t len; n - off >= 4; off += 4 + len) {
        const unsigned char *h = (const unsigned char *)p + off;
        len = (uint64_t)h[0] << 24 | (uint64_t)h[1] << 16 | h[2] << 8 | h[3];
        if ((*bad = len > cfg.max_frame) || n - off - 4 < len)
            break;
    }
    return off;
}

static void on_readable(struct client *c)
{
    struct buf *b = &c->in; /* off is always 0 here: the tail is moved to the front */
    if (b->cap < b->len + READ_SIZE) {
        b->cap = b->len + READ_SIZE;
        b->p = xrealloc(b->p, b->cap);
    }
    ssize_t r = recv(c->fd, b->p + b->len, READ_SIZE, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        kill_client(c);
    if (r <= 0)
        return;
    b->len += (size_t)r;
    bool bad;
    size_t cut = whole_frames(b->p, b->len, &bad);
    if (cut)
        broadcast(c, b->p, cut);
    if (bad) {
        kill_client(c);
        return;
    }
    b->len -= cut;
    if (b->len == 0) {
        /* Between reads a client holds no buffer: most hold none at all. */
        free(b->p);
        *b = (struct buf){0};
    } else if (cut) {
        memmove(b->p, b->p + cut, b->len);
    }
}

static void on_writable(struct client *c)
{
    struct buf *q = &c->out;
    ssize_t r = send(c->fd, q->p + q->off, q->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && errno != EAGAIN && errno != EINTR)
        kill_client(c);
    if (r <= 0)
        return;
    q->off += (size_t)r;
    q->len -= (size_t)r;
    if (q->len == 0) {
        free(q->p);
        *q = (struct buf){0};
        watch(c, EPOLL_CTL_MOD, EPOLLIN);
    }
}

/* A spare descriptor, given up on EMFILE to accept and close the waiting connection: with a
 * level-triggered listener, leaving it in the backlog would wake epoll_wait again at once. */
static int spare_fd = -1;

static void on_acceptable(int lfd)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
                close(spare_fd);
                close(accept4(lfd, NULL, NULL, SOCK_CLOEXEC)); /* close(-1) is harmless */
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return; /* EAGAIN, or a connection that failed before we took it */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct client *c = xrealloc(NULL, sizeof(*c));
        *c = (struct client){.fd = fd};
        by_fd[fd] = c;
        max_fd = fd > max_fd ? fd : max_fd;
        watch(c, EPOLL_CTL_ADD, EPOLLIN);
    }
}

static int listen_on(char *name, size_t cap)
{
    char port[8], host[NI_MAXHOST], serv[NI_MAXSERV];
    snprintf(port, sizeof(port), "%d", cfg.port);
    struct addrinfo *ai, hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                                  .ai_socktype = SOCK_STREAM};
    if (getaddrinfo(cfg.address, port, &hints, &ai) != 0)
        usage_error("bad address (an IPv4 or IPv6 literal)", cfg.address);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        fprintf(stderr, "baseline: cannot listen on %s port %d: %s\n", cfg.address, cfg.port,
                strerror(errno));
        exit(1);
    }
    freeaddrinfo(ai);
    /* IPv6 in brackets, as ringcast prints it. */
    snprintf(name, cap, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
    return fd;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    /* Benchmarks hold thousands of connections: take the hard limit, as ringcast does. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max < (1 << 20) ? rl.rlim_max : (1 << 20); /* by_fd[] stays <= 8 MiB */
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    by_fd = calloc(rl.rlim_cur, sizeof(*by_fd)); /* untouched pages cost nothing */
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    /* The signals stay blocked except inside epoll_pwait, so one cannot slip in between the
     * check of `stop` and the wait and leave the loop asleep. */
    sigset_t block, during_wait;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&during_wait);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    char name[NI_MAXHOST + NI_MAXSERV + 4];
    int lfd = listen_on(name, sizeof(name));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    if (!by_fd || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        fprintf(stderr, "baseline: epoll: %s\n", strerror(errno));
        return 1;
    }
    printf("Server started at: %s\n", name);
    fflush(stdout);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_pwait(epfd, evs, sizeof(evs) / sizeof(evs[0]), -1, &during_wait);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "baseline: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        /* A descriptor closed earlier in this batch may already name a new client. Harmless: each
         * handler acts on what the socket says now (recv gives EAGAIN, an empty queue is not
         * sent), and by_fd[] is looked up again after each handler, which may free a client. */
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                on_acceptable(lfd);
                continue;
            }
            /* Output first: it empties the queue that input would otherwise append to. */
            if ((evs[i].events & EPOLLOUT) && by_fd[fd] && by_fd[fd]->out.len)
                on_writable(by_fd[fd]);
            if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && by_fd[fd])
                on_readable(by_fd[fd]);
        }
    }
    return 0;
}
