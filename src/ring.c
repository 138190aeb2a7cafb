/* Kernel probing and ring set-up. Everything here runs once, at start-up. */
#include "ringcast/ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

bool ring_feature_disabled(const char *feature)
{
    const char *list = getenv("RINGCAST_DISABLE");
    size_t n = strlen(feature);
    while (list && *list) {
        const char *comma = strchr(list, ',');
        size_t len = comma ? (size_t)(comma - list) : strlen(list);
        if (len == n && !strncmp(list, feature, n))
            return true;
        list = comma ? comma + 1 : NULL;
    }
    return false;
}

/* Kernel version as major * 1000 + minor, for features no probe can see (flags, not opcodes). */
static int kernel_version(void)
{
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2)
        return major * 1000 + minor;
    return 0;
}

static int try_setup(struct io_uring *ring, unsigned entries, unsigned cq_entries, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = cq_entries;
    return io_uring_queue_init_params(entries, ring, &p);
}

/*
 * Multishot recv is a flag on IORING_OP_RECV, invisible to io_uring_get_probe: arm one on a
 * socketpair and see whether it answers with IORING_CQE_F_MORE.
 */
static void probe_recv_multishot(struct io_uring *ring, struct ring_features *f)
{
    struct ring_bufs bufs;
    f->buf_ring =
        !ring_feature_disabled("buf_ring") && ring_bufs_init(ring, &bufs, 0x7ff0, 2, 64) == 0;
    if (!f->buf_ring || ring_feature_disabled("recv_multishot"))
        goto out_bufs;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto out_bufs;
    struct io_uring_sqe *sqe = ring_get_sqe(ring);
    io_uring_prep_recv(sqe, sv[0], NULL, 0, 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs.bgid;
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_submit(ring);
    if (write(sv[1], "x", 1) == 1) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe) == 0) {
            f->recv_multishot = cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE);
            io_uring_cqe_seen(ring, cqe);
        }
    }
    /* Closing both ends ends the multishot request; reap whatever it still posts. */
    close(sv[1]);
    sqe = ring_get_sqe(ring);
    io_uring_prep_cancel64(sqe, 1, 0);
    io_uring_sqe_set_data64(sqe, 2);
    io_uring_submit(ring);
    for (int i = 0; i < 4; i++) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) < 0)
            break;
        bool done = cqe->user_data == 1 && !(cqe->flags & IORING_CQE_F_MORE);
        io_uring_cqe_seen(ring, cqe);
        if (done)
            break;
    }
    close(sv[0]);
out_bufs:
    if (f->buf_ring)
        ring_bufs_destroy(ring, &bufs);
}

int ring_setup(struct io_uring *ring, unsigned entries, unsigned cq_entries,
               struct ring_features *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int kver = kernel_version();
    int ret = -EINVAL;

    /* Setup flags from best to plainest. DEFER_TASKRUN (6.1) runs completions only when we
     * wait: no interruptions while a batch is handled. */
    const unsigned si = IORING_SETUP_SINGLE_ISSUER,
                   coop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    const struct {
        unsigned flags;
        bool usable;
    } choices[] = {
        {si | IORING_SETUP_DEFER_TASKRUN,
         !ring_feature_disabled("single_issuer") && !ring_feature_disabled("defer_taskrun")},
        {si | coop,
         !ring_feature_disabled("single_issuer") && !ring_feature_disabled("coop_taskrun")},
        {coop, !ring_feature_disabled("coop_taskrun")},
        {0, true},
    };
    /* Without CAP_IPC_LOCK the rings count against RLIMIT_MEMLOCK (64 KiB in some containers):
     * on ENOMEM try smaller rings; the CQ then overflows into the kernel's list sooner. */
    for (;;) {
        unsigned used = 0;
        for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
            if (!choices[i].usable)
                continue;
            used = choices[i].flags;
            ret = try_setup(ring, entries, cq_entries, used);
            if (ret != -EINVAL)
                break; /* EINVAL: a flag this kernel does not know */
        }
        if (ret == 0) {
            f->single_issuer = used & si;
            f->defer_taskrun = used & IORING_SETUP_DEFER_TASKRUN;
            f->coop_taskrun = used & IORING_SETUP_COOP_TASKRUN;
            break;
        }
        if (ret != -ENOMEM || cq_entries <= 256)
            break;
        cq_entries /= 4;
        if (entries > cq_entries / 2)
            entries = cq_entries / 2;
    }
    if (ret < 0) {
        if (ret == -ENOSYS || ret == -EPERM)
            snprintf(err, errlen,
                     "io_uring is not available (%s): it needs Linux 6.0 or later with io_uring "
                     "enabled (sysctl kernel.io_uring_disabled=0, not blocked by seccomp)",
                     strerror(-ret));
        else if (ret == -ENOMEM)
            snprintf(err, errlen,
                     "io_uring_setup failed: %s (without CAP_IPC_LOCK the rings count against "
                     "RLIMIT_MEMLOCK: raise it, e.g. LimitMEMLOCK= in the unit)",
                     strerror(-ret));
        else
            snprintf(err, errlen, "io_uring_setup failed: %s", strerror(-ret));
        return ret;
    }

    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    if (probe) {
        f->send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) &&
                     !ring_feature_disabled("send_zc");
        io_uring_free_probe(probe);
    }
    f->zc_report_usage = f->send_zc && kver >= 6002 && !ring_feature_disabled("zc_report_usage");
    f->multishot_accept = kver >= 5019 && !ring_feature_disabled("multishot_accept");
    if (!ring_feature_disabled("register_ring_fd"))
        f->register_ring_fd = io_uring_register_ring_fd(ring) == 1;

    probe_recv_multishot(ring, f);
    if (!f->buf_ring || !f->recv_multishot) {
        snprintf(err, errlen, "this kernel lacks %s, which ringcast requires (Linux %s or later)",
                 !f->buf_ring ? "provided buffer rings (IORING_REGISTER_PBUF_RING)"
                              : "multishot recv (IORING_RECV_MULTISHOT)",
                 !f->buf_ring ? "5.19" : "6.0");
        io_uring_queue_exit(ring);
        return -EOPNOTSUPP;
    }
    return 0;
}

void ring_features_describe(const struct ring_features *f, char *buf, size_t len)
{
    const struct {
        bool on;
        const char *name;
    } list[] = {
        {f->defer_taskrun, "defer_taskrun"},       {f->coop_taskrun, "coop_taskrun"},
        {f->single_issuer, "single_issuer"},       {f->register_ring_fd, "register_ring_fd"},
        {f->multishot_accept, "multishot_accept"}, {f->send_zc, "send_zc"},
        {f->zc_report_usage, "zc_report_usage"},   {f->fixed_buffers, "fixed_buffers"},
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        if (!list[i].on || used >= len)
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", list[i].name);
        if (n > 0)
            used += (size_t)n;
    }
}

int ring_bufs_init(struct io_uring *ring, struct ring_bufs *b, uint16_t bgid, uint32_t count,
                   uint32_t size)
{
    memset(b, 0, sizeof(*b));
    size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED)
        return -errno;
    /* Buffer memory is touched only as data arrives: idle connections cost none of it. */
    void *mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        int e = -errno;
        munmap(br, ring_bytes);
        return e;
    }
    b->br = br;
    b->mem = mem;
    b->count = count;
    b->size = size;
    b->bgid = bgid;
    io_uring_buf_ring_init(b->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)br, .ring_entries = count, .bgid = bgid};
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret < 0) {
        munmap(mem, (size_t)count * size);
        munmap(br, ring_bytes);
        memset(b, 0, sizeof(*b));
        return ret;
    }
    for (uint32_t i = 0; i < count; i++)
        ring_bufs_recycle(b, (uint16_t)i);
    ring_bufs_publish(b);
    return 0;
}

void ring_bufs_destroy(struct io_uring *ring, struct ring_bufs *b)
{
    if (!b->br)
        return;
    io_uring_unregister_buf_ring(ring, b->bgid);
    munmap(b->mem, (size_t)b->count * b->size);
    munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
    memset(b, 0, sizeof(*b));
}

struct io_uring_sqe *ring_get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}
