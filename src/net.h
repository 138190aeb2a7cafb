/* Socket queries the loop needs beyond io_uring. */
#ifndef RINGCAST_NET_H
#define RINGCAST_NET_H

#include <stdint.h>

/** Bytes in @fd's send queue not yet acknowledged by the peer (SIOCOUTQ); 0 on error. */
uint64_t net_unacked(int fd);

/** The same with one ioctl and no check that the connection is still up: for sampling. */
uint64_t net_outq(int fd);

#endif
