#!/usr/bin/env python3
"""Catch-up fetch over PLAINTEXT (spliced from the segment files) against SSL (read, encrypted
in user space by rustls, written): throughput and the broker's CPU per GiB, in one run.

The broker runs on CPU 0 with one shard and no tail cache (every fetch reads sealed or active
segment files), the consumer (confluent-kafka, librdkafka) on CPU 1. One backlog of
--gib GiB in 64 KiB records is written once through PLAINTEXT, then read from offset 0
--rounds times through each listener, alternating. The page cache is warm: this measures the
fetch path's CPU, not the disk.

    bench-harness/scripts/tls-fetch.py [--spate target/release/spate] [--gib 1] [--rounds 3] \
        [--out bench-harness/results/tls-fetch/run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

RECORD = 64 * 1024
TICKS = os.sysconf("SC_CLK_TCK")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(directory: Path) -> None:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=bench-ca", "-addext", "basicConstraints=critical,CA:TRUE", cwd=directory)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
            cwd=directory)
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
            cwd=directory)


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
    raise SystemExit(f"broker did not open port {port}")


def read_all(bootstrap: str, topic: str, end: int, config: dict) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tls-fetch",
                         "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                         "max.partition.fetch.bytes": 10485760, **config})
    consumer.assign([TopicPartition(topic, 0, 0)])
    started = time.monotonic()
    seen = 0
    while seen < end:
        for message in consumer.consume(num_messages=1000, timeout=5):
            if message.error() is None:
                seen += 1
    elapsed = time.monotonic() - started
    consumer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spate", default="target/release/spate")
    parser.add_argument("--bench", default="target/release/spate-bench")
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="tls-fetch-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    make_certs(work)
    plain, tls = 29092, 29192
    broker = subprocess.Popen(
        ["taskset", "-c", "0", args.spate, "serve", "--smp", "1", "--data-dir", str(work / "data"),
         "--listeners", f"PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}",
         "--ssl-cert", str(work / "server.pem"), "--ssl-key", str(work / "server.key"),
         "--tail-cache-bytes", "0"],
        stdout=subprocess.DEVNULL, stderr=open(work / "broker.log", "wb"))
    try:
        wait_port(plain)
        wait_port(tls)
        total = int(args.gib * 1024 ** 3)
        subprocess.run([args.bench, "produce", "--brokers", f"127.0.0.1:{plain}", "--topic", "backlog",
                        "--partitions", "1", "--record-size", str(RECORD), "--batch-records", "4",
                        "--total-bytes", str(total), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        records = total // RECORD
        listeners = {
            "PLAINTEXT": (f"127.0.0.1:{plain}", {}),
            "SSL": (f"127.0.0.1:{tls}", {"security.protocol": "SSL",
                                        "ssl.ca.location": str(work / "ca.pem")}),
        }
        results = {name: [] for name in listeners}
        read_all(*listeners["PLAINTEXT"][:1], "backlog", records, {})  # warm the page cache
        for _ in range(args.rounds):
            for name, (bootstrap, config) in listeners.items():
                before = cpu_seconds(broker.pid)
                elapsed = read_all(bootstrap, "backlog", records, config)
                cpu = cpu_seconds(broker.pid) - before
                gib = records * RECORD / 1024 ** 3
                results[name].append({"seconds": round(elapsed, 3),
                                      "mb_per_s": round(gib * 1024 ** 3 / elapsed / 1e6, 1),
                                      "broker_cpu_s_per_gib": round(cpu / gib, 3)})
                print(name, results[name][-1], flush=True)
        summary = {}
        for name, runs in results.items():
            runs_sorted = sorted(runs, key=lambda run: run["mb_per_s"])
            summary[name] = runs_sorted[len(runs_sorted) // 2]
        summary["ratio_ssl_to_plaintext_mb_per_s"] = round(
            summary["SSL"]["mb_per_s"] / summary["PLAINTEXT"]["mb_per_s"], 3)
        summary["ratio_ssl_to_plaintext_cpu"] = round(
            summary["SSL"]["broker_cpu_s_per_gib"] / summary["PLAINTEXT"]["broker_cpu_s_per_gib"], 3)
        print(json.dumps(summary, indent=1))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"runs": results, "median": summary}, indent=1))
    finally:
        broker.terminate()
        broker.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
