#!/usr/bin/env python3
"""Transactional produce against the same idempotent produce, and what read_committed costs a
consumer, in one run (issue 17's benchmark).

The broker runs on CPU 0 with one shard, the client (confluent-kafka, librdkafka) on CPU 1.
For each group size K (--per-txn, default 100 and 10 records of --record-size bytes) and each
round, alternating:
- idempotent: produce K records (acks=all, enable.idempotence) then flush(): the client waits
  for every ack of the group, as a transaction's commit does;
- transactional: begin_transaction, produce K records, commit_transaction (AddPartitionsToTxn,
  the produce, EndTxn; the coordinator's writes and the markers).
Each runs for --seconds. Reported per mode: records/s, MB/s, the group's latency (flush or
commit, p50 and p99) and the broker's CPU-seconds per GiB; and the ratio transactional /
idempotent. Then one topic holding committed and aborted transactions is read from offset 0
with read_uncommitted and read_committed: records/s of each.

    bench-harness/scripts/txn-produce.py [--spate target/release/spate] [--seconds 10] \
        [--rounds 2] [--per-txn 100 10] [--out bench-harness/results/txn-produce/run.json] \
        [--broker-arg=--transaction-partition-verification-enable --broker-arg=false]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TICKS = os.sysconf("SC_CLK_TCK")
PARTITIONS = 4


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the broker did not listen on {port}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_mode(bootstrap: str, pid: int, topic: str, mode: str, per_txn: int, seconds: float,
             payload: bytes, round_number: int) -> dict:
    settings = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                "enable.idempotence": True}
    if mode == "transactional":
        settings["transactional.id"] = f"bench-{per_txn}-{round_number}"
    producer = Producer(settings)
    if mode == "transactional":
        producer.init_transactions(30)
    latencies = []
    records = 0
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        group_started = time.monotonic()
        if mode == "transactional":
            producer.begin_transaction()
        for index in range(per_txn):
            while True:
                try:
                    producer.produce(topic, payload, key=str(index).encode())
                    break
                except BufferError:
                    producer.poll(0.01)
        if mode == "transactional":
            producer.commit_transaction(30)
        else:
            producer.flush(30)
        latencies.append((time.monotonic() - group_started) * 1000)
        records += per_txn
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu_before
    gib = records * len(payload) / 2**30
    return {"mode": mode, "per_txn": per_txn, "records_per_s": records / elapsed,
            "mb_per_s": records * len(payload) / elapsed / 1e6,
            "group_ms_p50": percentile(latencies, 0.5), "group_ms_p99": percentile(latencies, 0.99),
            "broker_cpu_s_per_gib": cpu / gib if gib else None}


def read_rate(bootstrap: str, topic: str, isolation: str, expected: int) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "fetch.max.bytes": 52428800})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    read = 0
    started = time.monotonic()
    idle_since = None
    while read < expected:
        messages = consumer.consume(10000, 0.5)
        if not messages:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3:
                break
            continue
        idle_since = None
        read += sum(1 for message in messages if not message.error())
    elapsed = time.monotonic() - started
    consumer.close()
    return {"isolation": isolation, "records": read, "records_per_s": read / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spate", default="target/release/spate")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-txn", type=int, nargs="+", default=[100, 10])
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--out")
    parser.add_argument("--broker-arg", action="append", default=[],
                        help="one more `spate serve` argument (repeat for several)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="txn-produce-"))
    port = free_port()
    broker = subprocess.Popen(
        ["taskset", "-c", "0", args.spate, "serve", "--data-dir", str(workdir / "data"),
         "--listen", f"127.0.0.1:{port}", "--smp", "1", *args.broker_arg],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "broker.log", "w"))
    os.sched_setaffinity(0, {1})
    bootstrap = f"127.0.0.1:{port}"
    results = {"produce": [], "read": []}
    try:
        wait_port(port)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = ["bench-produce", "bench-read"]
        for future in admin.create_topics(
                [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics]).values():
            future.result(30)
        payload = os.urandom(args.record_size)
        for per_txn in args.per_txn:
            for round_number in range(args.rounds):
                for mode in ("idempotent", "transactional"):
                    result = run_mode(bootstrap, broker.pid, "bench-produce", mode, per_txn,
                                      args.seconds, payload, round_number)
                    result["round"] = round_number
                    results["produce"].append(result)
                    print(json.dumps(result), flush=True)
        # A topic of committed transactions with one aborted in every ten.
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "bench-read",
                             "linger.ms": 5})
        producer.init_transactions(30)
        written = 0
        for txn in range(2000):
            producer.begin_transaction()
            for index in range(100):
                producer.produce("bench-read", payload, key=str(index).encode())
            if txn % 10 == 9:
                producer.flush(30)
                producer.abort_transaction(30)
            else:
                producer.commit_transaction(30)
            written += 100
        for isolation in ("read_uncommitted", "read_committed"):
            expected = written if isolation == "read_uncommitted" else written * 9 // 10
            result = read_rate(bootstrap, "bench-read", isolation, expected)
            results["read"].append(result)
            print(json.dumps(result), flush=True)
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {}
    for per_txn in args.per_txn:
        def median(mode, key):
            return statistics.median(r[key] for r in results["produce"]
                                     if r["mode"] == mode and r["per_txn"] == per_txn)
        summary[per_txn] = {
            "idempotent_records_per_s": median("idempotent", "records_per_s"),
            "transactional_records_per_s": median("transactional", "records_per_s"),
            "ratio": median("transactional", "records_per_s") / median("idempotent", "records_per_s"),
            "idempotent_group_ms_p50": median("idempotent", "group_ms_p50"),
            "transactional_group_ms_p50": median("transactional", "group_ms_p50"),
            "idempotent_cpu_s_per_gib": median("idempotent", "broker_cpu_s_per_gib"),
            "transactional_cpu_s_per_gib": median("transactional", "broker_cpu_s_per_gib"),
        }
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
