#!/usr/bin/env python3
"""The producer's stall when a partition leader is killed (issue 15's "≤ 3 s at p99"), frozen
or cut off from the other nodes.

Usage (the Python clients of ci/.venv; `ci/test.sh` creates it):
    ci/.venv/bin/python bench-harness/scripts/failover-stall.py [--kills 10] [--rate 2000]
        [--fault kill|freeze|isolate] [--spate target/release/spate]
        [--node-arg=--broker-session-timeout-ms=3000 ...]

Three single-shard `spate serve` nodes on loopback with their default timeouts (a controller
quorum of three), a 3-partition topic with replication factor 3 and min.insync.replicas=2, and
one idempotent acks=all librdkafka producer (confluent-kafka, its defaults but for
`linger.ms=5`) sending 1 KiB records round-robin at a fixed rate (open loop: the send times
do not wait for acknowledgements, so a stall shows in full). Each round kills -9 the node that
leads partition 0, measures, restarts it and waits until every ISR is full again.
`--victim controller` picks the active controller's node instead (recovery timed on a
partition it leads): its death costs an election before anyone can fence it.
`--fault freeze` SIGSTOPs the leader instead (SIGCONT at the end of the round), and
`--fault isolate` cuts it off from the other two nodes with nftables (ci/compat/netfaults.py;
root and `nft` needed; healed at the end of the round) while the client still reaches it:
neither closes a port, so the cluster has to wait for the session timeout, where a kill is
noticed when the dead node's controller port refuses a connection.

What a round reports:
- stall: the longest time a record sent in the round waited for its acknowledgement, which
  for a record sent just as the leader died is the whole outage as the client sees it;
- recovered: from the kill until every record sent after it is acknowledged, sampled as the
  kill until the first acknowledgement of a record sent after the kill to partition 0;
- errors: delivery errors (there must be none: the producer retries through the failover).
A baseline round without a kill gives the same stall figure for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci" / "compat"))
import netfaults  # noqa: E402
PARTITIONS = 3
TOPIC = "stall"


def free_port_block(count: int) -> int:
    for base in range(21000, 30000, 37):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no free port block")


class Node:
    def __init__(self, spate: str, node_id: int, workdir: Path, kafka_port: int,
                 controller_port: int, voters: str, extra: list[str]):
        self.node_id = node_id
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.log = workdir / f"node-{node_id}.log"
        self.command = [spate, "serve", "--node-id", str(node_id), "--smp", "1",
                        "--data-dir", str(workdir / f"data-{node_id}"),
                        "--listen", self.bootstrap,
                        "--controller-listen", f"127.0.0.1:{controller_port}",
                        "--controller-quorum-voters", voters, *extra]
        self.process: subprocess.Popen | None = None
        self.cgroup_procs: Path | None = None  # entered before exec, for --fault isolate

    def _before_exec(self) -> None:
        if self.cgroup_procs is not None:
            netfaults.enter(self.cgroup_procs)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, start_new_session=True,
                                            env={**os.environ, "NO_COLOR": "1"},
                                            preexec_fn=self._before_exec)

    def kill9(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def partition_state(bootstrap: str) -> dict[int, tuple[int, list[int]]]:
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TOPIC, timeout=3)
    except Exception:  # noqa: BLE001 - a node that is down answers nothing
        return {}
    entry = metadata.topics.get(TOPIC)
    if entry is None or entry.error is not None:
        return {}
    return {pid: (p.leader, sorted(p.isrs)) for pid, p in entry.partitions.items()}


def controller_node(bootstrap: str) -> int | None:
    """The node of the active controller, as Metadata names it."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3)
    except Exception:  # noqa: BLE001
        return None
    return metadata.controller_id // 1024 if metadata.controller_id >= 0 else None


def wait_for(what: str, condition, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not within {timeout_s} s")
        time.sleep(0.1)


class Load:
    """Open-loop sender: record i is due at start + i / rate, whatever the acknowledgements."""

    def __init__(self, bootstrap: str, rate: float, record_size: int):
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120_000,
        })
        self.rate = rate
        self.payload = b"x" * record_size
        self.sent: list[tuple[float, int]] = []  # (send time, partition) per record index
        self.acked: dict[int, float] = {}
        self.errors: list[str] = []

    def _delivered(self, error, message):
        index = int(message.key())
        if error is not None:
            self.errors.append(str(error))
        else:
            self.acked[index] = time.monotonic()

    def run_for(self, seconds: float, during=None) -> tuple[int, int]:
        """Sends for `seconds` at the rate, calling `during()` once after a third of it;
        returns the range of record indexes sent."""
        first = len(self.sent)
        start = time.monotonic()
        called = during is None
        while True:
            now = time.monotonic()
            if now - start >= seconds:
                break
            if not called and now - start >= seconds / 3:
                called = True
                during()
            due = int((now - start) * self.rate)
            while len(self.sent) - first < due:
                index = len(self.sent)
                partition = index % PARTITIONS
                self.sent.append((time.monotonic(), partition))
                while True:
                    try:
                        self.producer.produce(TOPIC, key=str(index).encode(), value=self.payload,
                                              partition=partition, on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.001)
            self.producer.poll(0.001)
        return first, len(self.sent)

    def drain(self) -> None:
        self.producer.flush(120)


def summarize(load: Load, first: int, end: int, kill_at: float | None,
              partition: int = 0) -> dict:
    waits = [load.acked[i] - load.sent[i][0] for i in range(first, end) if i in load.acked]
    result = {"records": end - first, "acked": len(waits),
              "stall_s": round(max(waits), 3) if waits else None,
              "p99_s": round(statistics.quantiles(waits, n=100)[98], 4) if len(waits) > 100 else None}
    if kill_at is not None:
        after = [load.acked[i] for i in range(first, end)
                 if load.sent[i][0] >= kill_at and load.sent[i][1] == partition
                 and i in load.acked]
        result["recovered_s"] = round(min(after) - kill_at, 3) if after else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="rounds (one fault each)")
    parser.add_argument("--fault", choices=("kill", "freeze", "isolate"), default="kill")
    parser.add_argument("--victim", choices=("leader", "controller"), default="leader",
                        help="the leader of partition 0, or the active controller's node (and "
                        "a partition it leads)")
    parser.add_argument("--rate", type=float, default=2000.0, help="records per second")
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--round-seconds", type=float, default=9.0)
    parser.add_argument("--spate", default=str(ROOT / "target" / "release" / "spate"))
    parser.add_argument("--node-arg", action="append", default=[],
                        help="an extra `spate serve` argument for every node (repeatable)")
    parser.add_argument("--json", help="write the rounds as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spate-stall-", dir=os.environ.get("TMPDIR", "/tmp")))
    kafka_base = free_port_block(103)  # Kafka ports at base.., controller ports at base+100..
    controller_base = kafka_base + 100
    voters = ",".join(f"{n}@127.0.0.1:{controller_base + n - 1}" for n in (1, 2, 3))
    nodes = [Node(args.spate, n, workdir, kafka_base + n - 1, controller_base + n - 1, voters,
                  args.node_arg) for n in (1, 2, 3)]
    bootstrap = ",".join(node.bootstrap for node in nodes)
    rounds = []
    net = None
    if args.fault == "isolate":
        reason = netfaults.unavailable()
        if reason is not None:
            raise SystemExit(f"--fault isolate: {reason}")
        net = netfaults.NetFaults()
        for node, n in zip(nodes, (1, 2, 3)):
            node.cgroup_procs = net.cgroup_procs(n)
            net.set_ports(n, [kafka_base + n - 1, controller_base + n - 1])
    try:
        for node in nodes:
            node.start()

        def created():
            admin = AdminClient({"bootstrap.servers": bootstrap})
            futures = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS,
                                                    replication_factor=3,
                                                    config={"min.insync.replicas": "2"})])
            try:
                futures[TOPIC].result(timeout=10)
                return True
            except Exception as error:  # noqa: BLE001
                return "already exists" in str(error).lower()

        def full_isr():
            state = partition_state(bootstrap)
            return len(state) == PARTITIONS and all(
                leader >= 0 and len(isr) == 3 for leader, isr in state.values())

        wait_for("the topic", created)
        wait_for("a full ISR", full_isr)
        load = Load(bootstrap, args.rate, args.record_size)
        load.run_for(3.0)  # warm-up: connections, producer id, first batches
        first, end = load.run_for(args.round_seconds)
        load.drain()
        baseline = summarize(load, first, end, None)
        print(f"baseline (no kill): {json.dumps(baseline)}", flush=True)
        for round_no in range(1, args.kills + 1):
            state = partition_state(bootstrap)
            controller = controller_node(bootstrap)
            victim = state[0][0] // 1024
            if args.victim == "controller" and controller is not None:
                victim = controller
            # The partition whose recovery is timed: one the victim leads.
            watched = next((p for p, (leader, _) in sorted(state.items())
                            if leader // 1024 == victim), 0)
            killed = {}

            def kill():
                killed["at"] = time.monotonic()
                process = nodes[victim - 1].process
                if args.fault == "kill":
                    nodes[victim - 1].kill9()
                elif args.fault == "freeze":
                    os.killpg(process.pid, signal.SIGSTOP)
                else:
                    net.isolate(victim)

            first, end = load.run_for(args.round_seconds, during=kill)
            # Heal before draining: a record the client sent to the frozen or isolated node
            # is retried or answered once it can be.
            if args.fault == "freeze":
                os.killpg(nodes[victim - 1].process.pid, signal.SIGCONT)
            elif args.fault == "isolate":
                net.heal()
            load.drain()
            result = summarize(load, first, end, killed["at"], watched)
            result.update(round=round_no, victim=victim, errors=len(load.errors))
            if load.errors:
                result["first_errors"] = sorted(set(load.errors))[:3]
            result["fault"] = args.fault
            # Killing the active controller's node costs an election before anyone fences it.
            result["victim_was_controller"] = controller == victim
            rounds.append(result)
            print(json.dumps(result), flush=True)
            if args.fault == "kill":
                nodes[victim - 1].start()
            wait_for("the victim back in every ISR", full_isr, timeout_s=90)
        stalls = sorted(r["stall_s"] for r in rounds if r["stall_s"] is not None)
        if stalls:
            p99 = stalls[min(len(stalls) - 1, int(round(0.99 * (len(stalls) - 1))))]
            for label, was in (("the controller's node", True), ("another node", False)):
                some = sorted(r["stall_s"] for r in rounds
                              if r["stall_s"] is not None and r["victim_was_controller"] == was)
                if some:
                    print(f"  victim {label}: {len(some)} faults, p50 "
                          f"{statistics.median(some):.2f} s, max {some[-1]:.2f} s")
            print(f"stall over {len(stalls)} faults ({args.fault}): "
                  f"p50 {statistics.median(stalls):.2f} s, p99 {p99:.2f} s, max {stalls[-1]:.2f} s; baseline max wait "
                  f"{baseline['stall_s']} s; delivery errors {len(load.errors)}")
        if args.json:
            Path(args.json).write_text(json.dumps({"baseline": baseline, "rounds": rounds},
                                                  indent=1))
    finally:
        for node in nodes:
            if node.process and node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGCONT)
            node.kill9()
        if net is not None:
            net.close()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
