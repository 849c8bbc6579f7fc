#!/usr/bin/env python3
"""One round of a replication benchmark: as fast as possible, then open loop at half that
rate, for one topic; prints throughput (beside fio), latency percentiles of both runs and
the broker CPU-seconds per GiB of client payload, in all and per replica (CPU summed over
every broker process given, read from /proc before and after each run).

Usage: replicated-rounds.py BENCH BROKERS TOPIC PARTITIONS FACTOR FIO_MB_S OUT ROUND PID...
(spate-bench's own settings come from the environment: PRODUCERS, BATCH_RECORDS, DURATION.)
"""

import json
import os
import subprocess
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def run(bench, brokers, topic, partitions, out, pids, rate=None):
    command = [bench, "produce", "--brokers", brokers, "--topic", topic,
               "--partitions", partitions, "--producers", os.environ.get("PRODUCERS", "3"),
               "--batch-records", os.environ.get("BATCH_RECORDS", "256"),
               "--record-size", "1024", "--acks", "all",
               "--duration", os.environ.get("DURATION", "10"), "--warmup", "2",
               "--quiet", "--json", out]
    if rate is not None:
        command += ["--rate", f"{rate:.0f}MB/s"]
    before = cpu_seconds(pids)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   stderr=open(out + ".err", "w"))
    after = cpu_seconds(pids)
    result = json.load(open(out))
    seconds = float(os.environ.get("DURATION", "10")) + 2  # the warm-up burns CPU too
    gib = result["throughput_mb_s"] * 1e6 * seconds / 2**30
    return result, (after - before) / gib if gib else float("nan")


def main():
    bench, brokers, topic, partitions, factor, fio, out, round_ = sys.argv[1:9]
    pids = sys.argv[9:]
    factor, fio = int(factor), float(fio)
    full, cpu = run(bench, brokers, topic, partitions, f"{out}/{round_}-{topic}.json", pids)
    half, _ = run(bench, brokers, topic, partitions, f"{out}/{round_}-{topic}-half.json", pids,
                  rate=full["throughput_mb_s"] / 2)
    l, h = full["latency_us"], half["latency_us"]
    print(f"round {round_} {topic} (RF={factor}): {full['throughput_mb_s']:.0f} MB/s = "
          f"{full['throughput_mb_s'] / fio:.2f} of fio {fio:.0f} MB/s; p50 {l['p50'] / 1000:.1f} "
          f"p99 {l['p99'] / 1000:.1f} ms; CPU {cpu:.2f} s/GiB ({cpu / factor:.2f} per replica); "
          f"at half ({half['throughput_mb_s']:.0f} MB/s) p50 {h['p50'] / 1000:.1f} "
          f"p99 {h['p99'] / 1000:.1f} p99.9 {h['p999'] / 1000:.1f} ms; "
          f"errors {full['errors'] + half['errors']}")


main()
