#include "ringcast/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int netaddr_parse(const char *host, int port, union netaddr *out, socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &out->v4.sin_addr) == 1) {
        out->v4.sin_family = AF_INET;
        out->v4.sin_port = htons((uint16_t)port);
        *len = sizeof(out->v4);
        return 0;
    }
    /* Accept both "::1" and "[::1]". */
    char bare[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(bare)) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    if (inet_pton(AF_INET6, host, &out->v6.sin6_addr) == 1) {
        out->v6.sin6_family = AF_INET6;
        out->v6.sin6_port = htons((uint16_t)port);
        *len = sizeof(out->v6);
        return 0;
    }
    return -EINVAL;
}

int netaddr_parse_hostport(const char *s, union netaddr *out, socklen_t *len)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || port > 65535)
        return -EINVAL;
    char host[INET6_ADDRSTRLEN + 2];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    /* A bare IPv6 address would be ambiguous: require brackets around it. */
    if (strchr(host, ':') && host[0] != '[')
        return -EINVAL;
    return netaddr_parse(host, (int)port, out, len);
}

char *netaddr_format(const union netaddr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(a->v4.sin_port));
    } else if (a->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr)) {
        inet_ntop(AF_INET, &a->v6.sin6_addr.s6_addr[12], host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(a->v6.sin6_port));
    } else if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(a->v6.sin6_port));
    } else {
        snprintf(buf, len, "?");
    }
    return buf;
}

bool netaddr_is_loopback(const union netaddr *a)
{
    if (a->sa.sa_family == AF_INET)
        return (ntohl(a->v4.sin_addr.s_addr) >> 24) == 127;
    if (a->sa.sa_family != AF_INET6)
        return false;
    const struct in6_addr *v6 = &a->v6.sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(v6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127;
}
