/* Subscribers: what they do with the bytes they receive (parse and verify, walk NATS message
 * boundaries, or only count), their reads outside the multishot recv (lazy reads for
 * --read-interval, the slow subscribers' budget), and SO_RCVLOWAT for --read-mode lowat.
 * Runs on the owning worker's thread. */
#ifndef FLOOD_SUB_H
#define FLOOD_SUB_H

#include "run.h"

/* Lazy subscribers read per turn of the loop: a whole round (90 one-shot recvs on sockets that
 * hold data, all run inline in one io_uring_enter: about 0.7 ms) held up the verified
 * subscribers' reads, and so every latency sample taken meanwhile. */
#define SUB_LAZY_SLICE 8

/** @n bytes received by subscriber @c (any kind) at @now. */
void sub_data(struct conn *c, const char *data, size_t n, uint64_t now);

/** A verified subscriber's multishot recvmsg completion of @res bytes at @buf (a provided
 * buffer: a struct io_uring_recvmsg_out, the control messages, room for one SCM_TIMESTAMPNS
 * (w->rx_msg), then the data). Sets c->rx_kts to the read's kernel receive time on flood's clock
 * (0 if none came), points *@payload at the data and returns its length (0: the end of the
 * stream). On TCP a read's timestamp is that of the newest segment it took (tcp_recvmsg keeps
 * the last one it copies from, coalescing keeps the newer stamp): for older data in the same read
 * it is a lower bound of its wait. Dies when the completion is shorter than its header. */
size_t sub_unpack(struct conn *c, const char *buf, int res, const char **payload);

/** Entry of PREP_WARMUP: byte-counting subscribers stop parsing (they are at a message
 * boundary after readiness) and their recv changes mode. */
void sub_stop_parsing(struct worker *w);

/** Takes every subscriber's byte count as the base of the next phase. */
void sub_set_base(struct worker *w);

/** SO_RCVLOWAT of the byte-counting subscribers: @bytes (1 for "any"); nothing when
 * --rcvlowat is 0. */
void sub_set_lowat(struct worker *w, size_t bytes);

/** Lazy subscribers (--read-interval): one round of one-shot reads when it is time, at most
 * SUB_LAZY_SLICE per call; w->lazy_cursor is nonzero while a round is half done. */
void sub_lazy_reads(struct worker *w, uint64_t now);

/** Slow subscribers: a one-shot read of each one's budget every SLOW_TICK_NS. */
void sub_slow_reads(struct worker *w, uint64_t now);

/** The completion of a lazy or slow subscriber's one-shot read. */
void sub_on_lazy_cqe(struct conn *c, const struct io_uring_cqe *cqe);

#endif
