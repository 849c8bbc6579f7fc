"""Compaction (cleanup.policy=compact) with real clients.

- 100k updates over 1k keys (lz4-compressed by confluent-kafka, so the cleaner decompresses,
  filters and recompresses), then tombstones for 100 keys: the cleaner leaves at most one
  record per key in the closed segments, the latest, readable by consumers; the tombstones stay
  readable for delete.retention.ms and then disappear without any new write; the result
  survives a restart (recovery of segments with offset gaps).
- Records without a key are refused on a compacted topic (INVALID_RECORD), keyed ones accepted.
- `__consumer_offsets` is compacted too: many commits of one group shrink to the latest, and
  the committed offset survives the compaction and a restart.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from confluent_helpers import admin_client, wait_for_topic, watermarks

KEYS = 1000
UPDATES = 100_000
TOMBSTONED = 100
DELETE_RETENTION_MS = 15_000

pytestmark = pytest.mark.broker_args("--log-cleaner-backoff-ms", "300")


def create_compacted(bootstrap: str, topic: str, configs: dict) -> None:
    admin = admin_client(bootstrap)
    settings = {"cleanup.policy": "compact", **configs}
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config=settings)],
        operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    wait_for_topic(bootstrap, topic, 1)


def produce_all(bootstrap: str, topic: str, items, **config) -> list[str]:
    """Produce (key, value) items in order; returns delivery errors."""
    settings = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                "message.timeout.ms": 60000, "enable.idempotence": True, **config}
    producer = Producer(settings)
    errors: list[str] = []

    def on_delivery(error, _message):
        if error is not None:
            errors.append(error.name() if hasattr(error, "name") else str(error))

    for key, value in items:
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0, "records still in flight after 60 s"
    return errors


def read_partition(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of partition 0 from the log start to the high watermark."""
    low, high = watermarks(bootstrap, topic, [0])[0]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(topic, 0, low)])
    records = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if records and records[-1][0] >= high - 1:
                break
            for message in consumer.consume(num_messages=10000, timeout=0.5):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(message.error())
                records.append((message.offset(), message.key(), message.value()))
            if high == low:
                break
        else:
            raise AssertionError(f"read {len(records)} records, not up to {high} within 60 s")
    finally:
        consumer.close()
    return records


def closed_part(records, marker_offset: int):
    """Records below the marker: they lie in segments the cleaner may clean."""
    return [record for record in records if record[0] < marker_offset]


@pytest.mark.timeout(240)
def test_compaction_keeps_the_latest_record_per_key_and_drops_tombstones(broker, unique_topic):
    topic = unique_topic()
    create_compacted(broker.bootstrap, topic, {
        "segment.bytes": "65536", "segment.ms": "1500", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(DELETE_RETENTION_MS), "file.delete.delay.ms": "500"})
    latest: dict[bytes, bytes] = {}
    updates = []
    for seq in range(UPDATES):
        key = f"key-{(seq * 7919) % KEYS:04}".encode()
        value = f"{key.decode()}:{seq:06}".encode() + b"." * 40
        updates.append((key, value))
        latest[key] = value
    errors = produce_all(broker.bootstrap, topic, updates, **{"compression.type": "lz4"})
    assert not errors, errors[:5]
    tombstoned = sorted(latest)[:TOMBSTONED]
    assert not produce_all(broker.bootstrap, topic, [(key, None) for key in tombstoned])
    tombstones_at = time.monotonic()
    # A marker written after segment.ms closes the segment holding the tombstones.
    time.sleep(2.0)
    assert not produce_all(broker.bootstrap, topic, [(b"marker", b"m")])
    marker_offset = watermarks(broker.bootstrap, topic, [0])[0][1] - 1
    survivors = {key: value for key, value in latest.items() if key not in tombstoned}

    # Phase 1: at most one record per key below the marker, the latest; tombstones readable.
    saw_tombstones = False
    deadline = time.monotonic() + 60
    while True:
        broker.assert_alive("while compacting")
        closed = closed_part(read_partition(broker.bootstrap, topic), marker_offset)
        keys = [key for _, key, _ in closed]
        compacted = len(keys) == len(set(keys)) and all(
            survivors.get(key, None) == value for _, key, value in closed if value is not None)
        if compacted:
            values = {key: value for _, key, value in closed}
            assert {key: value for key, value in values.items() if value is not None} == survivors
            if time.monotonic() - tombstones_at < DELETE_RETENTION_MS / 1000 - 1:
                assert all(values.get(key, b"?") is None for key in tombstoned), \
                    "tombstones are readable until delete.retention.ms"
                saw_tombstones = True
            break
        assert time.monotonic() < deadline, \
            f"not compacted within 60 s: {len(keys)} records, {len(set(keys))} keys"
        time.sleep(0.5)
    assert saw_tombstones, "compaction took longer than delete.retention.ms; could not see tombstones"
    log_dir = broker.data_dir / f"{topic}-0"
    sizes = sum(path.stat().st_size for path in log_dir.glob("*.log"))
    assert sizes < 20 * 65536, f"{sizes} bytes of segments left after compaction"

    # Phase 2: after delete.retention.ms the tombstones go, with no new write.
    deadline = tombstones_at + DELETE_RETENTION_MS / 1000 + 30
    while True:
        closed = closed_part(read_partition(broker.bootstrap, topic), marker_offset)
        if all(value is not None for _, _, value in closed):
            break
        assert time.monotonic() < deadline, "tombstones still there 30 s after delete.retention.ms"
        time.sleep(0.5)
    assert {key: value for _, key, value in closed} == survivors

    # The compacted log, offset gaps and all, survives a restart.
    broker.restart()
    records = read_partition(broker.bootstrap, topic)
    assert {key: value for offset, key, value in records if offset < marker_offset} == survivors
    assert records[-1] == (marker_offset, b"marker", b"m")
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(set(offsets))


def test_records_without_a_key_are_refused_on_compacted_topics(broker, unique_topic):
    topic = unique_topic()
    create_compacted(broker.bootstrap, topic, {})
    errors = produce_all(broker.bootstrap, topic, [(None, b"no key")], **{
        "enable.idempotence": False, "retries": 0})
    assert errors == ["INVALID_RECORD"], errors
    assert not produce_all(broker.bootstrap, topic, [(b"k", b"with key")])
    assert [value for _, _, value in read_partition(broker.bootstrap, topic)] == [b"with key"]


@pytest.mark.timeout(180)
def test_consumer_offsets_is_compacted_and_commits_survive(broker, unique_topic):
    admin = admin_client(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets", incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in {"segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01",
                            "segment.ms": "1000"}.items()])
    for future in admin.incremental_alter_configs([resource], request_timeout=15).values():
        future.result(timeout=20)
    topic = unique_topic()
    create_compacted(broker.bootstrap, topic, {})
    assert not produce_all(broker.bootstrap, topic, [(b"k", b"v")] * 10)
    group = f"{topic}-group"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    commits = 3000
    try:
        for number in range(commits):
            consumer.commit(offsets=[TopicPartition(topic, 0, number % 10 + 1)],
                            asynchronous=False)
    finally:
        consumer.close()
    last_committed = (commits - 1) % 10 + 1
    # The group's __consumer_offsets partition (the largest) shrinks to a few records.
    busiest = max(broker.data_dir.glob("__consumer_offsets-*"),
                  key=lambda path: sum(file.stat().st_size for file in path.glob("*.log")))
    before = sum(file.stat().st_size for file in busiest.glob("*.log"))
    deadline = time.monotonic() + 60
    while True:
        size = sum(file.stat().st_size for file in busiest.glob("*.log"))
        cleaned = any("compacted" in line and "topic=__consumer_offsets" in line
                      for line in broker.stderr_path.read_text(errors="replace").splitlines())
        if size < 50_000 and cleaned:
            break
        assert time.monotonic() < deadline, \
            f"{busiest.name} still holds {size} bytes (from {before}) after 60 s"
        time.sleep(0.5)

    def committed() -> int:
        reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        try:
            return reader.committed([TopicPartition(topic, 0)], timeout=20)[0].offset
        finally:
            reader.close()

    assert committed() == last_committed
    broker.restart()
    assert committed() == last_committed
