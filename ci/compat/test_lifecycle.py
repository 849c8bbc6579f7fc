"""Log lifecycle with real clients: timestamp look-ups, retention, DeleteRecords.

- confluent-kafka's `offsets_for_times` answers exactly what a brute-force scan of the
  produced records says (first offset whose timestamp is >= the target, at or above the log
  start), with out-of-order timestamps across many segments and compressed batches, before and
  after DeleteRecords and after a restart (indexes reloaded).
- `retention.ms=5000` and `retention.bytes` delete old segments within a few seconds while a
  producer runs: the low watermark moves, the partition directory stays bounded, and a
  consumer starting from the beginning reads from the new start.
- DeleteRecords from confluent-kafka's `AdminClient.delete_records` and kafka-python's
  `KafkaAdminClient.delete_records`: the low watermark moves, reads below it fail with
  OFFSET_OUT_OF_RANGE and consumers reset per `auto.offset.reset`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from confluent_helpers import admin_client, wait_for_topic, watermarks

PARTITIONS = 2
BASE_TIMESTAMP_MS = 1_700_000_000_000


def create_topic_with_configs(bootstrap: str, topic: str, partitions: int, configs: dict) -> None:
    admin = admin_client(bootstrap)  # must outlive the futures
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs)],
        operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    wait_for_topic(bootstrap, topic, partitions)


def produce_timestamped(bootstrap: str, topic: str, items, config: dict | None = None):
    """Produce (partition, timestamp_ms, value) items; returns [(partition, offset, timestamp)]."""
    settings = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                "message.timeout.ms": 30000}
    settings.update(config or {})
    producer = Producer(settings)
    delivered = []
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(str(error))
        else:
            delivered.append((message.partition(), message.offset(), message.timestamp()[1]))

    for partition, timestamp_ms, value in items:
        while True:
            try:
                producer.produce(topic, value=value, partition=partition, timestamp=timestamp_ms,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0, "records left undelivered"
    assert not errors, errors[:5]
    return delivered


def consumer(bootstrap: str, **extra) -> Consumer:
    settings = {"bootstrap.servers": bootstrap, "group.id": "spate-ci-assign-only",
                "enable.auto.commit": False, "enable.partition.eof": True,
                "fetch.wait.max.ms": 100}
    settings.update(extra)
    return Consumer(settings)


def brute_force(records, partition: int, log_start: int, target: int) -> int:
    """The first offset at or above log_start whose timestamp is >= target, or -1."""
    for rec_partition, offset, timestamp in records:
        if rec_partition == partition and offset >= log_start and timestamp >= target:
            return offset
    return -1


def check_offsets_for_times(bootstrap: str, topic: str, records, log_starts: dict[int, int]):
    """Asks for every partition at once, one target per request (librdkafka merges repeated
    partitions in one query), for a sample of targets around the produced timestamps."""
    timestamps = sorted({timestamp for _, _, timestamp in records})
    targets = sorted(set(timestamps) | {t + 1 for t in timestamps})
    targets = sorted(set(random.Random(11).sample(targets, min(len(targets), 1500)))
                     | {0, timestamps[0], timestamps[-1], timestamps[-1] + 1000})
    client = consumer(bootstrap)
    try:
        mismatches = []
        for target in targets:
            query = [TopicPartition(topic, partition, target) for partition in range(PARTITIONS)]
            for answer in client.offsets_for_times(query, timeout=20):
                assert answer.error is None, answer.error
                expected = brute_force(records, answer.partition, log_starts[answer.partition],
                                       target)
                if answer.offset != expected:
                    mismatches.append((answer.partition, target, answer.offset, expected))
        assert not mismatches, (f"{len(mismatches)} of {len(targets) * PARTITIONS} look-ups differ "
                                f"from the brute force (partition, target, got, expected): "
                                f"{mismatches[:8]}")
    finally:
        client.close()


def read_one(bootstrap: str, topic: str, partition: int, offset: int):
    """The first record a consumer assigned at `offset` receives: (offset, timestamp)."""
    client = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        client.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = client.poll(0.5)
            if message is None or message.error() is not None:
                continue
            return message.offset(), message.timestamp()[1]
        raise AssertionError(f"nothing read at {topic}/{partition}@{offset}")
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_offsets_for_times_matches_a_brute_force_scan(broker, unique_topic):
    topic = unique_topic()
    create_topic_with_configs(broker.bootstrap, topic, PARTITIONS, {
        "segment.bytes": "16384", "index.interval.bytes": "1024",
        # Timestamps from 2023 would be deleted at once by the 7-day default.
        "retention.ms": "-1"})
    rng = random.Random(7)
    items = []
    for seq in range(6000):
        # Mostly increasing, with jitter and occasional records far in the past.
        timestamp = BASE_TIMESTAMP_MS + seq * 3 + rng.randrange(-40, 40)
        if rng.random() < 0.02:
            timestamp -= rng.randrange(1000, 20000)
        items.append((seq % PARTITIONS, timestamp, f"{seq:06d}".encode() + rng.randbytes(42)))
    records = produce_timestamped(broker.bootstrap, topic, items,
                                  {"compression.type": "lz4", "batch.num.messages": 40})
    records.sort(key=lambda item: (item[0], item[1]))  # by partition, then offset
    segment_files = list((broker.data_dir / f"{topic}-0").glob("*.timeindex"))
    assert len(segment_files) > 3, "the test wants several segments"
    check_offsets_for_times(broker.bootstrap, topic, records, {0: 0, 1: 0})

    # The index agrees with the log: a consumer at the answer reads a record at or after the
    # target (the batch is returned whole, the client skips to the offset).
    for partition, offset, timestamp in rng.sample(records, 20):
        got_offset, got_timestamp = read_one(broker.bootstrap, topic, partition, offset)
        assert (got_offset, got_timestamp) == (offset, timestamp)

    admin = admin_client(broker.bootstrap)
    deleted = admin.delete_records([TopicPartition(topic, 0, 1234), TopicPartition(topic, 1, 2500)])
    lows = {tp.partition: future.result(timeout=20).low_watermark for tp, future in deleted.items()}
    assert lows == {0: 1234, 1: 2500}
    check_offsets_for_times(broker.bootstrap, topic, records, lows)

    broker.restart()
    check_offsets_for_times(broker.bootstrap, topic, records, lows)


def partition_dir(broker, topic: str, partition: int) -> Path:
    return broker.data_dir / f"{topic}-{partition}"


def segment_names(broker, topic: str, partition: int) -> list[str]:
    return sorted(path.name for path in partition_dir(broker, topic, partition).glob("*.log"))


class BackgroundProducer:
    """Produces now-stamped records to partition 0 in a loop until stopped."""

    def __init__(self, bootstrap: str, topic: str):
        import threading
        self.stop_requested = threading.Event()
        self.errors: list[str] = []
        self.sent = 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  "message.timeout.ms": 30000})
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, error, _message):
        if error is not None:
            self.errors.append(str(error))

    def _run(self):
        payload = b"x" * 500
        while not self.stop_requested.is_set():
            try:
                self.producer.produce(self.topic, value=payload, partition=0,
                                      on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                self.producer.poll(0.01)
            if self.sent % 100 == 0:
                self.producer.poll(0)
                time.sleep(0.005)  # ~10 MB/s at most: a steady, moderate load
        self.producer.flush(30)

    def start(self, topic: str):
        self.topic = topic
        self.thread.start()

    def stop(self):
        self.stop_requested.set()
        self.thread.join(timeout=60)


@pytest.mark.parametrize("limit", [{"retention.ms": "5000"}, {"retention.bytes": "1000000"}],
                         ids=["retention.ms", "retention.bytes"])
@pytest.mark.timeout(120)
def test_retention_deletes_old_segments_while_producing(broker, unique_topic, limit):
    topic = unique_topic()
    configs = {"segment.bytes": "262144", "file.delete.delay.ms": "1000", **limit}
    create_topic_with_configs(broker.bootstrap, topic, 1, configs)
    producer = BackgroundProducer(broker.bootstrap, topic)
    producer.start(topic)
    try:
        started = time.monotonic()
        low = 0
        # retention.ms: the first segment is 5 s old ~5 s after the start; allow a few more.
        while time.monotonic() - started < 15:
            time.sleep(0.5)
            broker.assert_alive("under produce load with retention")
            low, high = watermarks(broker.bootstrap, topic, [0])[0]
            if low > 0 and time.monotonic() - started > 9:
                break
        assert low > 0, f"no segment deleted within 15 s (high watermark {high})"
        segments = segment_names(broker, topic, 0)
        files = sorted(path.name for path in partition_dir(broker, topic, 0).iterdir())
        if "retention.bytes" in limit:
            # Retention may delete a file between the listing and its stat.
            sizes = sum(file_size(path) for path in partition_dir(broker, topic, 0).glob("*.log"))
            # The limit, the oldest kept segment, the preallocated active one, a tick of load.
            assert sizes < 1_000_000 + 4 * 262_144 + 2_000_000, f"{sizes} bytes left: {files}"
        else:
            # What is kept is ~5 s of data: the oldest record left is not much older.
            sampled_ms = time.time() * 1000
            _, oldest_ms = read_first_timestamp(broker.bootstrap, topic, 0, low)
            age_ms = sampled_ms - oldest_ms
            assert age_ms < 5000 + 3000, f"oldest record kept is {age_ms:.0f} ms old ({len(segments)} segments)"
    finally:
        producer.stop()
    assert not producer.errors, producer.errors[:5]

    # Files renamed for deletion are unlinked after file.delete.delay.ms (1 s).
    renamed = list(partition_dir(broker, topic, 0).glob("*.deleted"))
    time.sleep(2.5)
    leftovers = [path.name for path in renamed if path.exists()]
    assert not leftovers, leftovers
    low_now = watermarks(broker.bootstrap, topic, [0])[0][0]
    assert low_now >= low
    # A consumer from the beginning starts at the low watermark.
    first_offset, _ = read_one_reset(broker.bootstrap, topic, 0, "earliest", 0)
    assert first_offset >= low, (first_offset, low)


def file_size(path) -> int:
    """A file's size, 0 if it is gone."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_first_timestamp(bootstrap: str, topic: str, partition: int, offset: int):
    """The first record at or after `offset` (or the new start, if retention moved past it):
    (offset, timestamp).

    Under produce load retention moves the start several times a second, faster than
    librdkafka's offset reset (to the log start it cached, half a second later) can follow:
    each attempt asks for the current start and fetches from it at once."""
    client = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            low, _ = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
            client.assign([TopicPartition(topic, partition, max(offset, low))])
            attempt_ends = time.monotonic() + 1
            while time.monotonic() < attempt_ends:
                message = client.poll(0.1)
                if message is not None and message.error() is None:
                    return message.offset(), message.timestamp()[1]
        raise AssertionError(f"nothing read at {topic}/{partition}@{offset}")
    finally:
        client.close()


def read_one_reset(bootstrap: str, topic: str, partition: int, reset: str, offset: int):
    """Assign at `offset` with `auto.offset.reset=reset`; the first record read."""
    client = consumer(bootstrap, **{"auto.offset.reset": reset})
    try:
        client.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        errors = []
        while time.monotonic() < deadline:
            message = client.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(str(message.error()))
                continue
            return message.offset(), message.value()
        raise AssertionError(f"nothing read at {topic}/{partition}@{offset}: {errors[:5]}")
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_delete_records_with_confluent_admin(broker, unique_topic):
    topic = unique_topic()
    create_topic_with_configs(broker.bootstrap, topic, PARTITIONS, {"segment.bytes": "16384"})
    now = int(time.time() * 1000)
    items = [(seq % PARTITIONS, now, f"{seq:06d}".encode() * 10) for seq in range(4000)]
    produce_timestamped(broker.bootstrap, topic, items)
    admin = admin_client(broker.bootstrap)
    futures = admin.delete_records([TopicPartition(topic, 0, 700), TopicPartition(topic, 1, -1)])
    lows = {tp.partition: future.result(timeout=20).low_watermark for tp, future in futures.items()}
    assert lows == {0: 700, 1: 2000}
    assert watermarks(broker.bootstrap, topic, [0, 1]) == {0: (700, 2000), 1: (2000, 2000)}
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    beyond = admin.delete_records([TopicPartition(topic, 0, 2001)])
    with pytest.raises(Exception) as failure:
        list(beyond.values())[0].result(timeout=20)
    assert "OFFSET_OUT_OF_RANGE" in str(failure.value) or "out of range" in str(failure.value).lower()
    # A consumer below the start resets per its policy.
    offset, value = read_one_reset(broker.bootstrap, topic, 0, "earliest", 10)
    assert offset == 700 and value == f"{1400:06d}".encode() * 10
    # Survives a restart.
    broker.restart()
    assert watermarks(broker.bootstrap, topic, [0, 1]) == {0: (700, 2000), 1: (2000, 2000)}


@pytest.mark.timeout(120)
def test_delete_records_with_kafka_python_admin(broker, unique_topic):
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import KafkaAdminClient

    topic = unique_topic()
    create_topic_with_configs(broker.bootstrap, topic, 1, {"segment.bytes": "16384"})
    now = int(time.time() * 1000)
    produce_timestamped(broker.bootstrap, topic, [(0, now, b"r" * 100) for _ in range(1000)])
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        result = admin.delete_records({KafkaTopicPartition(topic, 0): 321})
    finally:
        admin.close()
    (partition, answer), = result.items()
    assert partition.partition == 0
    low = answer["low_watermark"] if isinstance(answer, dict) else answer.low_watermark
    assert low == 321
    assert watermarks(broker.bootstrap, topic, [0]) == {0: (321, 1000)}
