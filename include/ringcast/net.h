/* Socket queries the loop needs beyond io_uring. */
#ifndef RINGCAST_NET_H
#define RINGCAST_NET_H

#include <stdint.h>

/**
 * Bytes of our output the peer has acknowledged so far (TCP_INFO tcpi_bytes_acked, Linux 4.1):
 * it moves while the peer reads, even slowly, and stops when it does not. 0 or -errno.
 */
int net_bytes_acked(int fd, uint64_t *out);

/** Bytes in @fd's send queue not yet acknowledged by the peer (SIOCOUTQ); 0 on error. */
uint64_t net_unacked(int fd);

#endif
