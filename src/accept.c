/* New connections: multishot accept, --max-clients, and descriptor exhaustion (EMFILE). */
#include "loop_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "say.h"

#define CLIENT_SNDBUF (512 << 10)

rlim_t accept_fd_limit_now(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
}

void accept_arm(struct loop *l)
{
    /* The kernel reads RLIMIT_NOFILE when an accept is prepared: remember which one it got. */
    l->accept_fd_limit = accept_fd_limit_now();
    struct io_uring_sqe *sqe = loop_sqe(l, OP_ACCEPT, NULL);
    if (l->feat.multishot_accept)
        io_uring_prep_multishot_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    l->accept_armed = true;
}

void accept_log_rejects(struct loop *l, bool force)
{
    if (!l->rejects_unlogged || (!force && l->now_ns - l->last_reject_log_ns < NSEC))
        return;
    say_warn("closed %llu new connection(s): --max-clients (%u) reached",
             (unsigned long long)l->rejects_unlogged, l->conns.cap);
    l->rejects_unlogged = 0;
    l->last_reject_log_ns = l->now_ns;
}

static void new_conn(struct loop *l, int fd)
{
    struct conn *c = l->draining ? NULL : conn_table_alloc(&l->conns, fd);
    if (!c) {
        close(fd);
        if (!l->draining) {
            l->stats.rejected_max_clients++;
            l->rejects_unlogged++;
            accept_log_rejects(l, false);
        }
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    /* A fixed send buffer (the kernel doubles it: 1 MiB) instead of autotuning up to
     * tcp_wmem's 4 MiB: readers that read at the same rate then stay within a few MiB of each
     * other in the log, well inside one --max-queue, however differently their buffers would
     * have grown; and the kernel memory a stopped reader holds is bounded too. */
    int sndbuf = CLIENT_SNDBUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    socklen_t alen = sizeof(c->peer);
    if (getpeername(fd, &c->peer.sa, &alen) < 0)
        c->peer.sa.sa_family = AF_UNSPEC;
    l->stats.accepted++;
    char addr[NETADDR_STRLEN];
    say_event("%s connected.", netaddr_format(&c->peer, addr, sizeof(addr)));
    loop_conn_open(l, c);
}

/* Out of descriptors: shed the waiting connection with the spare fd, then pause accepting. */
static void accept_emfile(struct loop *l, int err)
{
    /* The kernel checked the limit the accept was armed with: if it has been raised since,
     * this error is stale and the connection waiting is welcome. Just arm again. */
    if (err == -EMFILE && accept_fd_limit_now() > l->accept_fd_limit)
        return;
    if (l->spare_fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int fl = fcntl(l->listen_fd, F_GETFL);
        fcntl(l->listen_fd, F_SETFL, fl | O_NONBLOCK);
        /* Shed what waits now (bounded), so those peers hear a close instead of hanging. */
        for (int i = 0; i < 64; i++) {
            int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                break;
            close(fd);
            l->stats.rejected_emfile++;
        }
        fcntl(l->listen_fd, F_SETFL, fl);
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (l->now_ns - l->last_reject_log_ns >= NSEC) {
        say_warn("accept: %s; shedding new connections for now", strerror(-err));
        l->last_reject_log_ns = l->now_ns;
    }
    l->accept_resume_ns = l->now_ns + ACCEPT_BACKOFF_NS;
    if (l->accept_armed)
        loop_cancel(l, OP_ACCEPT, NULL);
}

void accept_on_cqe(struct loop *l, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        l->accept_armed = false;
    if (likely(res >= 0))
        new_conn(l, res);
    else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
        accept_emfile(l, res);
    /* Other errors (ECONNABORTED, ECANCELED...) concern one connection: accepting goes on. */
}
