/*
 * Relay listeners: the default one (--address/--port, or the socket systemd passed) and the
 * extra ones of --listen, each with the role its clients get (both, pub-only, sub-only). Opening
 * them, their start lines, closing them for the drain, and what a role forbids. Accepting on them
 * is accept.c's; what a role means for the data path is enforced in the engine itself (fanout
 * mutes a pub-only client, ingest never sees a sub-only client's bytes).
 */
#include "loop_int.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringcast/netaddr.h"
#include "say.h"

/* Keepalive timing is copied to accepted sockets: a vanished peer is found in about 2 min. */
static void set_keepalive_timing(int fd)
{
    int idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

int listen_socket(const union netaddr *addr, socklen_t alen, int backlog, int *fd_out, char *err,
                  size_t errlen)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "socket: %s", strerror(e));
        return -e;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->sa.sa_family == AF_INET6) /* "::" takes IPv4 too, whatever the sysctl says */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (backlog <= 0) {
        FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
        if (!f || fscanf(f, "%d", &backlog) != 1 || backlog <= 0)
            backlog = 4096;
        if (f)
            fclose(f);
    }
    if (bind(fd, &addr->sa, alen) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        char a[NETADDR_STRLEN];
        snprintf(err, errlen, "cannot listen on %s: %s", netaddr_format(addr, a, sizeof(a)),
                 strerror(e));
        close(fd);
        return -e;
    }
    *fd_out = fd;
    return 0;
}

/* Listener @i on @fd, or bound here to @address:@port when @fd < 0. */
static int open_one(struct loop *l, uint32_t i, int fd, const char *address, int port, char *err,
                    size_t errlen)
{
    struct listener *ls = &l->listeners[i];
    if (fd < 0) {
        union netaddr addr;
        socklen_t alen;
        if (netaddr_parse(address, port, &addr, &alen) < 0) { /* opts checked it already */
            snprintf(err, errlen, "invalid address '%s': expected an IPv4 or IPv6 literal",
                     address);
            return -EINVAL;
        }
        int ret = listen_socket(&addr, alen, l->o->backlog, &fd, err, errlen);
        if (ret < 0)
            return ret;
    }
    ls->fd = fd;
    set_keepalive_timing(fd);
    union netaddr bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, &bound.sa, &blen) < 0)
        bound.sa.sa_family = AF_UNSPEC;
    netaddr_format(&bound, ls->name, sizeof(ls->name));
    return 0;
}

int listen_open_all(struct loop *l, int passed_fd, char *err, size_t errlen)
{
    const struct opts *o = l->o;
    /* The default listener first: under socket activation it is systemd's socket (whose address
     * wins over --address/--port). --listen's are always bound here, activated or not. */
    l->nlisteners = 1;
    l->listeners[0].role = ROLE_BOTH;
    l->listeners[0].auth_required = o->auth_file[0] != '\0';
    int ret = open_one(l, 0, passed_fd, o->address, o->port, err, errlen);
    for (unsigned i = 0; ret == 0 && i < o->nlisten; i++) {
        const struct opts_listen *ol = &o->listen[i];
        struct listener *ls = &l->listeners[l->nlisteners++];
        ls->role = (uint8_t)ol->role;
        ls->auth_required = o->auth_file[0] && !ol->noauth;
        ls->tls = ol->tls;
        ls->proxy = ol->proxy;
        ls->flags = ol->flags;
        ret = open_one(l, i + 1, -1, ol->address, ol->port, err, errlen);
    }
    return ret;
}

void listen_say_started(const struct loop *l)
{
    say_always("Server started at: %s", l->listeners[0].name);
    for (uint32_t i = 1; i < l->nlisteners; i++)
        say_always("Listening at: %s (%s)", l->listeners[i].name, l->listeners[i].flags);
}

void listen_close_all(struct loop *l)
{
    accept_cancel(l); /* a pending accept keeps its socket alive until the cancellation comes */
    for (uint32_t i = 0; i < l->nlisteners; i++) {
        if (l->listeners[i].fd >= 0)
            close(l->listeners[i].fd);
        l->listeners[i].fd = -1;
    }
}

void listen_violation(struct loop *l, struct conn *c, enum violation v)
{
    /* Once per client: a doomed client's later bytes are not looked at (conn_live). The reason
     * goes into its "disconnected (protocol violation: ...)." line. */
    if (!conn_live(c))
        return;
    l->stats.protocol_violations[v]++;
    loop_doom(l, c, DISC_PROTOCOL_VIOLATION);
}

size_t listen_metrics(const struct loop *l, struct metrics_listener *out)
{
    for (uint32_t i = 0; i < l->nlisteners; i++) {
        const struct listener *ls = &l->listeners[i];
        out[i] = (struct metrics_listener){.address = ls->name,
                                           .role = opts_role_name((enum listen_role)ls->role),
                                           .accepted = ls->accepted};
    }
    /* Connected clients by listener: a walk, once per scrape (as the other gauges). */
    for (uint32_t i = 0; i < l->conns.nactive; i++) {
        const struct conn *c = &l->conns.slots[l->conns.active[i]];
        if (c->state == CONN_OPEN && c->listener < l->nlisteners)
            out[c->listener].clients++;
    }
    return l->nlisteners;
}
