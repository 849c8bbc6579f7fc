"""A randomized chaos run: faults, one after another, under a steady idempotent acks=all load.

Three `spate serve` nodes (test_cluster.py's cluster) hold a topic with replication factor 3
and min.insync.replicas=2. A librdkafka producer (test_cluster.Load) writes a steady trickle
from a thread of its own while the test picks faults at random: kill -9 of a node (often a
partition's leader), SIGSTOP of a node for less or more than its session, a controlled
SIGTERM restart, two nodes killed at once, all three killed at once, a network partition
that isolates a node from the other two, a cut between two nodes that both still reach
the third (netfaults.py; the client reaches every node throughout), and a partition
reassigned off a node and back (`spate cluster reassign`), often with a node killed while
the copy is under way. After each fault the
test heals it, waits until every partition has its full ISR again and the producer is
acknowledged again, then picks the next. At the end the producer must have had no delivery
error, every acknowledged record must be read back exactly once, in order, at its
acknowledged offset, and every replica must hold the same batches (`spate log dump`).

6 faults in CI; 200 with SPATE_FULL_TESTS=1 (or SPATE_CHAOS_FAULTS=N). The run prints its
seed; SPATE_CHAOS_SEED=S replays the same choices (the timing is the machine's);
SPATE_CHAOS_ONLY=reassign draws nothing but reassignments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from conftest import SPATE_BIN
from test_cluster import (NODES, PARTITIONS, WAIT_S, Cluster, Load,  # noqa: F401
                          create_replicated_topic, full_isr, net_cluster, partition_state,
                          replicas_of, verify_acked, wait_for)

FULL = os.environ.get("SPATE_FULL_TESTS") == "1"
FAULTS = int(os.environ.get("SPATE_CHAOS_FAULTS", "200" if FULL else "6"))
# SPATE_CHAOS_ONLY=reassign draws only reassignments (to look at that fault alone).
ONLY_REASSIGNMENTS = os.environ.get("SPATE_CHAOS_ONLY") == "reassign"
# Every fault takes a few seconds to heal (fencing, restart, catch-up); the long run's
# verification reads about a million records.
TIMEOUT_S = 300 + 30 * FAULTS
# Acknowledgements the producer must get after a fault is healed before the next one: the
# cluster takes writes again, not only reports a full ISR.
PROGRESS = 200


class Trickle(threading.Thread):
    """Feeds `load` about a thousand records a second, never more than 5,000 unanswered,
    until stopped; all of `load`'s calls (and so its delivery callbacks) run on this thread."""

    def __init__(self, load: Load):
        super().__init__(daemon=True)
        self.load = load
        self.stopping = threading.Event()

    def run(self) -> None:
        load = self.load
        while not self.stopping.is_set():
            if load.sent - len(load.acked) - len(load.errors) < 5_000:
                load.send(10)
            load.producer.poll(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def acknowledged(load: Load) -> int:
    return len(load.acked)


def leader_of(cluster: Cluster, topic: str, rng: random.Random) -> int:
    """The node leading a random partition (as the cluster says), or a random node."""
    state = partition_state(cluster.bootstrap(), topic)
    partition = rng.randrange(PARTITIONS)
    if partition in state and state[partition][0] >= 0:
        return state[partition][0] // 1024
    return rng.randint(1, NODES)


def pick_fault(cluster: Cluster, topic: str, rng: random.Random):
    """(description, apply) for a random fault; apply() does it and heals it."""
    roll = rng.random()
    if ONLY_REASSIGNMENTS:
        roll = 0.9
    node = leader_of(cluster, topic, rng) if rng.random() < 0.6 else rng.randint(1, NODES)
    broker = cluster.node(node)
    if roll < 0.25:
        down_s = rng.uniform(0.0, 3.0)

        def kill():
            broker.kill9()
            time.sleep(down_s)
            broker.start()
        return f"kill -9 of node {node}, restarted after {down_s:.1f} s", kill
    if roll < 0.45:
        # The session is 1.8 s: shorter freezes leave the node in place, longer ones fence it
        # and wake a zombie leader.
        frozen_s = rng.uniform(0.3, 4.0)

        def freeze():
            os.killpg(broker.process.pid, signal.SIGSTOP)
            try:
                time.sleep(frozen_s)
            finally:
                os.killpg(broker.process.pid, signal.SIGCONT)
        return f"SIGSTOP of node {node} for {frozen_s:.1f} s", freeze
    if roll < 0.55:
        def controlled():
            code = broker.stop()
            assert code == 0, f"node {node} exited with {code} on SIGTERM\n{cluster.logs()}"
            broker.start()
        return f"SIGTERM (controlled shutdown) of node {node}, restarted", controlled
    if roll < 0.65:
        other = rng.choice([n for n in range(1, NODES + 1) if n != node])
        down_s = rng.uniform(0.5, 3.0)

        def two_down():
            cluster.node(node).kill9()
            cluster.node(other).kill9()
            time.sleep(down_s)
            for n in (node, other):
                cluster.node(n).start_process()
            for n in (node, other):
                cluster.node(n).wait_ready(timeout_s=WAIT_S)
        return f"kill -9 of nodes {node} and {other}, restarted after {down_s:.1f} s", two_down
    if roll < 0.8:
        # Shorter and longer than the session, as for SIGSTOP; but the isolated node runs on,
        # and clients still reach it.
        cut_s = rng.uniform(0.3, 6.0)

        def isolate():
            cluster.net.isolate(node)
            try:
                time.sleep(cut_s)
            finally:
                cluster.net.heal()
        return f"network partition isolating node {node} for {cut_s:.1f} s", isolate
    if roll < 0.88:
        other = rng.choice([n for n in range(1, NODES + 1) if n != node])
        cut_s = rng.uniform(0.3, 6.0)

        def cut_pair():
            cluster.net.cut(node, other)
            try:
                time.sleep(cut_s)
            finally:
                cluster.net.heal()
        return (f"network cut between nodes {node} and {other} (both still reach the third) "
                f"for {cut_s:.1f} s", cut_pair)

    if roll < 0.95:
        partition = rng.randrange(PARTITIONS)
        victim = rng.randint(1, NODES) if rng.random() < 0.7 else None
        down_s = rng.uniform(0.0, 2.0)

        def move_off_and_back():
            original = replicas_of(cluster, topic, partition)
            assert original is not None and len(original) == NODES, original
            shrunk = [broker for broker in original if broker // 1024 != node]
            reassign(cluster, topic, partition, shrunk, wait=True)
            # Back, with a node killed while the copy is under way (the moved node, the
            # controller's, or a leader's: whichever the draw names).
            reassign(cluster, topic, partition, original, wait=False)
            if victim is not None:
                cluster.node(victim).kill9()
                time.sleep(down_s)
                cluster.node(victim).start()
            wait_for(f"the reassignment of partition {partition} completed",
                     lambda: replicas_of(cluster, topic, partition) == original
                     and not json.loads(spate_cli(cluster, "cluster", "reassignments",
                                                  "--json"))["reassignments"], cluster)
        killed = f", node {victim} killed for {down_s:.1f} s while it copies" if victim else ""
        return (f"partition {partition} reassigned off node {node} and back{killed}",
                move_off_and_back)

    def all_down():
        for n in range(1, NODES + 1):
            cluster.node(n).kill9()
        for n in range(1, NODES + 1):
            cluster.node(n).start_process()
        for n in range(1, NODES + 1):
            cluster.node(n).wait_ready(timeout_s=WAIT_S)
    return "kill -9 of all three nodes, restarted together", all_down


def spate_cli(cluster: Cluster, *args: str) -> str:
    """The `spate` CLI against the cluster (any node that answers), retried while it fails
    (a node down, a controller being elected); its standard output."""
    deadline = time.monotonic() + WAIT_S
    while True:
        done = subprocess.run([str(SPATE_BIN), *args, "--brokers", cluster.bootstrap()],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0:
            return done.stdout
        assert time.monotonic() < deadline, (
            f"spate {' '.join(args)} kept failing: {done.stderr[-2000:]}\n{cluster.logs()}")
        time.sleep(0.2)


def reassign(cluster: Cluster, topic: str, partition: int, replicas: list[int],
             wait: bool) -> None:
    spate_cli(cluster, "cluster", "reassign", "--topic", topic, "--partition", str(partition),
              "--replicas", ",".join(str(broker) for broker in replicas),
              *(["--wait"] if wait else []))


def acknowledged_by_partition(load: Load) -> str:
    """Per partition: how many records were acknowledged and the highest offset among them."""
    counts: dict[int, list[int]] = {}
    for partition, offset in list(load.acked.values()):
        entry = counts.setdefault(partition, [0, -1])
        entry[0] += 1
        entry[1] = max(entry[1], offset)
    return ", ".join(f"partition {p}: {n} acknowledged, up to offset {top}"
                     for p, (n, top) in sorted(counts.items()))


def log_dump(broker, topic: str, partition: int) -> str:
    """The batch lines of every segment of one replica, in offset order."""
    directory = broker.data_dir / f"{topic}-{partition}"
    lines: list[str] = []
    for segment in sorted(directory.glob("*.log")):
        output = subprocess.run([str(SPATE_BIN), "log", "dump", str(segment)],
                                capture_output=True, text=True, timeout=60, check=False)
        lines += [line for line in output.stdout.splitlines() if line.startswith("baseOffset")]
    return "\n".join(lines)


def replicas_agree(cluster: Cluster, topic: str) -> bool:
    for partition in range(PARTITIONS):
        dumps = [log_dump(broker, topic, partition) for broker in cluster.nodes]
        if not dumps[0] or any(dump != dumps[0] for dump in dumps):
            return False
    return True


@pytest.mark.timeout(TIMEOUT_S)
def test_a_randomized_chaos_run_loses_duplicates_and_reorders_nothing(net_cluster, unique_topic):
    cluster = net_cluster
    seed = int(os.environ.get("SPATE_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"\nchaos: {FAULTS} faults, SPATE_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    topic = unique_topic()
    create_replicated_topic(cluster, topic)
    load = Load(cluster, topic)
    trickle = Trickle(load)
    trickle.start()
    try:
        wait_for("the first acknowledgements", lambda: acknowledged(load) >= PROGRESS, cluster)
        for number in range(1, FAULTS + 1):
            what, fault = pick_fault(cluster, topic, rng)
            started = time.monotonic()
            fault()
            wait_for(f"every ISR full after fault {number} ({what}; seed {seed})",
                     lambda: full_isr(cluster, topic), cluster)
            healed = acknowledged(load)
            wait_for(f"the producer acknowledged after fault {number} ({what}; seed {seed})",
                     lambda: acknowledged(load) >= healed + PROGRESS, cluster)
            print(f"fault {number}: {what}; healed, full ISR and writing again after "
                  f"{time.monotonic() - started:.1f} s; {acknowledged(load)} acknowledged, "
                  f"{len(load.errors)} delivery errors")
            assert not load.errors, (
                f"delivery errors after fault {number} ({what}; seed {seed}): "
                f"{load.errors[:5]}\n{cluster.logs()}")
            time.sleep(rng.uniform(0.0, 1.0))
    except AssertionError:
        print(f"chaos failed (seed {seed}): {acknowledged_by_partition(load)}; "
              f"delivery errors: {load.errors[:5]}")
        raise
    finally:
        trickle.stop()
    load.finish(cluster)
    verify_acked(cluster, topic, load.acked, exclude=set(), timeout_s=WAIT_S + load.sent / 5_000)
    wait_for(f"every replica holding the same batches (seed {seed})",
             lambda: replicas_agree(cluster, topic), cluster)
    print(f"chaos: {FAULTS} faults, {len(load.acked)} records acknowledged and read back once each")
