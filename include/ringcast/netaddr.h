/* Socket addresses: parse a literal + port, and format one the way the logs show it. Pure. */
#ifndef RINGCAST_NETADDR_H
#define RINGCAST_NETADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "[ffff:...:ffff]:65535" plus NUL */
#define NETADDR_STRLEN (INET6_ADDRSTRLEN + 8)

union netaddr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

/** Parse an IPv4 or IPv6 literal and a port into @out (and its length). 0 or -EINVAL. */
int netaddr_parse(const char *host, int port, union netaddr *out, socklen_t *len);

/** Parse "HOST:PORT" ("[v6]:PORT" for IPv6) into @out. 0 or -EINVAL. */
int netaddr_parse_hostport(const char *s, union netaddr *out, socklen_t *len);

/**
 * Format as "1.2.3.4:5" or "[::1]:5" into @buf (NETADDR_STRLEN bytes). An IPv4-mapped IPv6
 * address (a dual-stack listener) is shown as the IPv4 address it is. Returns @buf.
 */
char *netaddr_format(const union netaddr *a, char *buf, size_t len);

/** Whether @a is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104). */
bool netaddr_is_loopback(const union netaddr *a);

#endif
