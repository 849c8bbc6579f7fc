"""Crash loop: kill -9 at random moments under acks=all load, many times, and check the log
and its indexes after every restart.

Each cycle runs an idempotent confluent-kafka producer (acks=all) for a random 0.5-2.5 s
against a 4-partition topic with small segments (so that crashes land around segment rolls
and index writes too), SIGKILLs the broker, restarts it on the same data directory and reads
everything back. 4 cycles in CI; 20 with SPATE_FULL_TESTS=1 (or SPATE_CRASH_CYCLES=N).

After every restart:
  - every acknowledged record is present exactly once, at its acknowledged offset, in
    produce order, offsets contiguous, and everything read after earlier restarts unchanged
    (the checks of test_crash.py);
  - the indexes agree with the log: ListOffsets by timestamp (`offsets_for_times`) answers
    what a brute-force scan of the records read says, and fetches at random offsets return
    the record at that offset.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from confluent_helpers import admin_client, wait_for_topic
from records import Consumed
from test_crash import check_recovered, examples

PARTITIONS = 4
FULL = os.environ.get("SPATE_FULL_TESTS") == "1"
CYCLES = int(os.environ.get("SPATE_CRASH_CYCLES", 20 if FULL else 4))
RUN_BEFORE_KILL_S = (0.5, 2.5)
RECORDS_PER_SECOND_MAX = 20_000
PACE_EVERY = 50
TIMESTAMP_LOOKUPS_PER_PARTITION = 25
RANDOM_FETCHES_PER_PARTITION = 5


class ProducerRun:
    """One cycle's producer thread and the deliveries it saw acknowledged."""

    def __init__(self, bootstrap: str, topic: str, cycle: int):
        self.topic = topic
        self.cycle = cycle
        self.stop_requested = threading.Event()
        self.killed = False
        self.acked: dict[str, tuple[int, int]] = {}
        self.errors_before_kill: list[str] = []
        self.sent = 0
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 1, "message.timeout.ms": 15000, "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
            # After the kill librdkafka logs every refused reconnect; the delivery reports say
            # all that matters.
            "log_level": 0,
        })
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, error, message):
        value = message.value().decode()
        if error is None:
            self.acked[value] = (message.partition(), message.offset())
        elif not self.killed:
            self.errors_before_kill.append(f"{value}: {error}")

    def _run(self):
        seq = 0
        started = time.monotonic()
        while not self.stop_requested.is_set():
            if seq % PACE_EVERY == 0:
                ahead_s = seq / RECORDS_PER_SECOND_MAX - (time.monotonic() - started)
                if ahead_s > 0:
                    time.sleep(ahead_s)
            value = f"c{self.cycle}-{seq:09d}"
            try:
                self.producer.produce(self.topic, value=value.encode(),
                                      partition=seq % PARTITIONS, on_delivery=self._on_delivery)
            except BufferError:
                self.producer.poll(0.01)
                continue
            seq += 1
            self.sent = seq
            if seq % 200 == 0:
                self.producer.poll(0)
        self.producer.flush(2)
        self.producer.purge()
        self.producer.poll(0.5)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_requested.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "producer thread did not stop"
        self.producer = None  # destroy the handle: it would keep reconnecting


def consumer(bootstrap: str, reset: str = "error") -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "spate-ci-assign-only",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "auto.offset.reset": reset, "fetch.wait.max.ms": 100})


def read_everything(bootstrap: str, topic: str, timeout_s: float = 120):
    """Every record of every partition: [(Consumed, timestamp)]."""
    client = consumer(bootstrap)
    out = []
    at_end = {partition: False for partition in range(PARTITIONS)}
    try:
        client.assign([TopicPartition(topic, partition, 0) for partition in range(PARTITIONS)])
        deadline = time.monotonic() + timeout_s
        while not all(at_end.values()):
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout_s} s"
            for message in client.consume(num_messages=5000, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    at_end[message.partition()] = True
                    continue
                at_end[message.partition()] = False
                consumed = Consumed(message.partition(), message.offset(), None,
                                    message.value().decode())
                out.append((consumed, message.timestamp()[1]))
    finally:
        client.close()
    return out


def check_indexes(bootstrap: str, topic: str, records, rng: random.Random) -> list[str]:
    """ListOffsets by timestamp and fetches at random offsets against the records read."""
    problems = []
    by_partition: dict[int, list[tuple[int, int, str]]] = {p: [] for p in range(PARTITIONS)}
    for item, timestamp in records:
        by_partition[item.partition].append((item.offset, timestamp, item.value))
    client = consumer(bootstrap)
    try:
        for partition, items in by_partition.items():
            items.sort()
            if not items:
                continue
            timestamps = [timestamp for _, timestamp, _ in items]
            targets = rng.sample(timestamps, min(len(timestamps), TIMESTAMP_LOOKUPS_PER_PARTITION))
            targets += [t + 1 for t in targets[:5]] + [0, max(timestamps) + 1]
            for target in targets:
                answer = client.offsets_for_times([TopicPartition(topic, partition, target)],
                                                  timeout=20)[0]
                expected = next((offset for offset, timestamp, _ in items if timestamp >= target), -1)
                if answer.error is not None or answer.offset != expected:
                    problems.append(f"partition {partition}: offsets_for_times({target}) = "
                                    f"{answer.offset} ({answer.error}), a scan says {expected}")
    finally:
        client.close()
    for partition, items in by_partition.items():
        for offset, _, value in rng.sample(items, min(len(items), RANDOM_FETCHES_PER_PARTITION)):
            got = fetch_one(bootstrap, topic, partition, offset)
            if got != (offset, value):
                problems.append(f"partition {partition}: fetch at {offset} gave {got}, "
                                f"expected {(offset, value)}")
    return problems


def fetch_one(bootstrap: str, topic: str, partition: int, offset: int):
    client = consumer(bootstrap)
    try:
        client.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = client.poll(0.5)
            if message is not None and message.error() is None:
                return message.offset(), message.value().decode()
        return None
    finally:
        client.close()


@pytest.mark.timeout(300 + 60 * CYCLES)
def test_acknowledged_records_and_indexes_survive_a_kill9_loop(broker, unique_topic):
    topic = unique_topic()
    admin = admin_client(broker.bootstrap)
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                                            config={"segment.bytes": "262144",
                                                    "index.interval.bytes": "2048"})],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)
    rng = random.Random(os.environ.get("SPATE_CRASH_SEED", time.time_ns()))
    acked_total: dict[str, tuple[int, int]] = {}
    previously_read: dict[tuple[int, int], str] = {}
    report = []
    in_flight_cycles = 0
    for cycle in range(1, CYCLES + 1):
        run = ProducerRun(broker.bootstrap, topic, cycle)
        run.start()
        time.sleep(rng.uniform(*RUN_BEFORE_KILL_S))
        broker.assert_alive(f"under produce load in cycle {cycle}")
        run.killed = True
        broker.kill9()
        unreported = run.sent - len(run.acked) - len(run.errors_before_kill)
        in_flight_cycles += unreported > 0
        run.stop()
        assert not run.errors_before_kill, (
            f"cycle {cycle}: deliveries failed before the kill: {examples(run.errors_before_kill)}")
        acked_total.update(run.acked)

        broker.start()
        records = read_everything(broker.bootstrap, topic)
        consumed = [item for item, _ in records]
        report.append(f"cycle {cycle}: sent {run.sent}, acked {len(run.acked)}, "
                      f"in flight at kill {unreported}, read back {len(consumed)}")
        problems = check_recovered(consumed, acked_total, previously_read, cycle)
        problems += check_indexes(broker.bootstrap, topic, records, rng)
        assert not problems, (f"after kill -9 and restart in cycle {cycle} ("
                              + "; ".join(report[-3:]) + "):\n  - " + "\n  - ".join(problems[:20]))
        previously_read = {(item.partition, item.offset): item.value for item in consumed}
    assert in_flight_cycles >= CYCLES // 2, \
        f"only {in_flight_cycles} of {CYCLES} kills landed with records in flight:\n" + "\n".join(report)
    print("\n".join(report))
