#!/usr/bin/env python3
"""Writes the generated seeds of tests/fuzz/corpus/fanout/ (scripts in fuzz_fanout.c's format).

Usage: tests/fuzz/seeds_fanout.py tests/fuzz/corpus/fanout

Each seed is a run like test_relay_model.c's random batches, written out as a script: per batch,
every slot's send completion, POLLOUT, notification and read, now and then a recv end, toggle,
leave or join, then the recvs, shuffled, then the end of the batch. The corpus's other seeds are
inputs the fuzzer found (see README.md)."""
import os
import random
import sys

BATCH, RECV, SEND, POLL, NOTIF, RECV_END, READ, TOGGLE, JOIN, LEAVE = range(10)


def seed(path, rng_seed, flags, max_frame, max_queue, pace, sockbuf, recv_buf, recvs, clients,
         publishers, batches, churn=True, stopped=()):
    r = random.Random(rng_seed)
    out = bytearray([flags, max_frame, max_queue, pace, sockbuf, recv_buf, recvs, clients,
                     publishers])

    def op(kind, slot, a=0, b=0):
        out.extend([kind | slot << 4, a, b])

    for slot in stopped:
        op(TOGGLE, slot)
    for _ in range(batches):
        evs = []
        for s in range(8):
            evs.append((SEND, s, r.choice([0] * 7 + ([210, 230, 254, 255] if churn else []))))
            evs.append((POLL, s))
            evs.append((NOTIF, s))
            evs.append((READ, s, r.choice([255, 255, 10, 40, 0])))
            if churn and r.random() < 0.03:
                evs.append((RECV_END, s))
            if churn and r.random() < 0.06:
                evs.append((TOGGLE, s))
            if churn and r.random() < 0.02:
                evs.append((LEAVE, s))
            if churn and r.random() < 0.04:
                evs.append((JOIN, s, r.randrange(256)))
        for _ in range(recvs % 12 + 1):
            evs.append((RECV, r.randrange(8), r.randrange(256), r.randrange(256)))
        r.shuffle(evs)
        for e in evs:
            op(*e)
        op(BATCH, 0)
    with open(path, "wb") as f:
        f.write(out)


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    # flags: 1 len32, 2 echo, 4 drop, 8 zero-copy; sizes as fuzz_fanout.c's params_from reads them
    seed(f"{d}/line-disconnect-churn", 1, 0x00, 60, 4, 100, 40, 100, 3, 5, 0b00111, 30,
         stopped=(3,))
    seed(f"{d}/len32-drop-echo", 2, 0x07, 50, 30, 200, 30, 80, 4, 4, 0b0011, 30)
    seed(f"{d}/line-drop-zerocopy", 3, 0x0c, 80, 60, 128, 60, 120, 3, 5, 0b10101, 30,
         stopped=(1,))
    seed(f"{d}/len32-disconnect-zerocopy-echo", 4, 0x0b, 100, 50, 255, 50, 200, 2, 3, 0b011, 30,
         stopped=(2,))
    seed(f"{d}/line-drop-small-frames", 5, 0x04, 10, 4, 60, 8, 15, 11, 6, 0b110011, 27)
    seed(f"{d}/line-steady-no-churn", 6, 0x00, 22, 255, 255, 255, 63, 11, 4, 0b1111, 25,
         churn=False)


if __name__ == "__main__":
    main()
