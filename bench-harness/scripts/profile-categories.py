#!/usr/bin/env python3
"""Puts each sample of `perf script -F comm,ip,sym` output in one category, by its stack
(first matching rule wins), and prints each category's share and, given the CPU time per
batch in microseconds, its microseconds per batch.

Usage: profile-categories.py PERF_SCRIPT_TXT [US_PER_BATCH]
"""

import collections
import sys

# (category, test on (thread name, stack of symbols, innermost first)).
RULES = [
    ("fdatasync: ext4 metadata writes and the device flush (io_uring workers)",
     lambda comm, stack: comm.startswith("iou-wrk") or any(
         frame in stack for frame in ("io_fsync", "ext4_sync_file", "blkdev_issue_flush",
                                      "ext4_fsync_nojournal.constprop.0"))),
    ("the shard waiting for completions (io_cqring_wait: switching out and back in)",
     lambda comm, stack: "io_cqring_wait" in stack),
    ("O_DIRECT write submission (iomap, page pinning, virtio doorbell)",
     lambda comm, stack: any(frame in stack for frame in (
         "__iomap_dio_rw", "io_write", "gup_fast_fallback", "bio_iov_iter_get_pages"))),
    ("socket receive (the payload's one copy, into DMA chunks)",
     lambda comm, stack: any(frame in stack for frame in (
         "tcp_recvmsg", "io_recv", "sock_recvmsg", "_copy_to_iter"))),
    ("socket send (responses)",
     lambda comm, stack: any(frame in stack for frame in ("tcp_sendmsg", "io_send", "sock_sendmsg"))),
    ("CRC-32C", lambda comm, stack: any("crc32c" in frame for frame in stack)),
    ("other io_uring submission and completion",
     lambda comm, stack: any(frame in stack for frame in (
         "__do_sys_io_uring_enter", "io_submit_sqes", "io_uring_submit"))),
    ("request decode, validation, append, response encode (user space)",
     lambda comm, stack: any(marker in frame for frame in stack for marker in (
         "spate", "kafka_protocol", "glommio", "mi_", "memmove", "memcpy", "memset"))),
]


def samples(path):
    current = None
    for line in open(path):
        if not line.strip():
            if current:
                yield current
            current = None
        elif not line[0].isspace():
            current = (line.split()[0], [])
        elif current is not None:
            fields = line.strip().split(None, 1)
            if len(fields) == 2:
                current[1].append(fields[1])
    if current:
        yield current


def main():
    counts = collections.Counter()
    for comm, stack in samples(sys.argv[1]):
        category = next((name for name, rule in RULES if rule(comm, stack)),
                        "other kernel work (scheduling, interrupts, timers)")
        counts[category] += 1
    total = sum(counts.values())
    per_batch = float(sys.argv[2]) if len(sys.argv) > 2 else None
    print("| share | µs per batch | where |" if per_batch else "| share | where |")
    print("|---:|---:|---|" if per_batch else "|---:|---|")
    for name, count in counts.most_common():
        share = f"{100 * count / total:.1f}%"
        if per_batch:
            print(f"| {share} | {per_batch * count / total:.1f} | {name} |")
        else:
            print(f"| {share} | {name} |")
    print(f"({total} samples)")


if __name__ == "__main__":
    main()
