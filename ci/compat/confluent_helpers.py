"""confluent-kafka (librdkafka) helpers shared by several tests.

Several tests (kcat, kafkajs, crash, bad input) use confluent-kafka as the independent
reader. Consumers here never join a group: they use `assign()` with explicit partitions and
offsets, so a reader's view does not depend on the group coordinator (test_groups.py tests
that separately). The Python binding refuses to build a Consumer without `group.id`, so a
placeholder id is set; with `assign()` and auto-commit off, librdkafka neither joins nor
commits.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from records import Consumed, Record

CONSUME_TIMEOUT_S = 60.0
# librdkafka's default message.timeout.ms is 300 s; a broker that stops answering should fail a
# test in about a minute instead.
MESSAGE_TIMEOUT_MS = 60_000


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 20.0) -> None:
    """Wait until Metadata shows `topic` with `partitions` partitions, each with a leader."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10)
        last = metadata.topics.get(topic)
        if last is not None and last.error is None and len(last.partitions) == partitions \
                and all(p.leader >= 0 and p.error is None for p in last.partitions.values()):
            return
        time.sleep(0.2)
    detail = None if last is None else {
        "error": last.error,
        "partitions": {pid: (p.leader, p.error) for pid, p in last.partitions.items()},
    }
    raise AssertionError(f"topic {topic} not ready with {partitions} led partitions "
                         f"within {timeout_s} s; last metadata: {detail}")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """CreateTopics through AdminClient, then wait for Metadata to show every partition led."""
    admin = admin_client(bootstrap)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    wait_for_topic(bootstrap, topic, partitions)


def produce(bootstrap: str, topic: str, records: list[Record], config: dict | None = None,
            partition_of=None, timeout_s: float = 90.0):
    """Produce `records`; returns (delivered value -> (partition, offset), [delivery errors]).

    `partition_of(index, record)` pins a record to a partition; by default the key decides.
    """
    settings = {"bootstrap.servers": bootstrap, "linger.ms": 10, "acks": "all",
                "message.timeout.ms": MESSAGE_TIMEOUT_MS}
    settings.update(config or {})
    producer = Producer(settings)
    delivered: dict[str, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(f"{message.value()[:24]!r}: {error}")
        else:
            delivered[message.value().decode()] = (message.partition(), message.offset())

    for index, record in enumerate(records):
        extra = {}
        if partition_of is not None:
            extra["partition"] = partition_of(index, record)
        while True:
            try:
                producer.produce(topic, value=record.value.encode(),
                                 key=None if record.key is None else record.key.encode(),
                                 headers=[(name, value.encode()) for name, value in record.headers],
                                 on_delivery=on_delivery, **extra)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(timeout_s)
    if remaining:
        errors.append(f"{remaining} records still undelivered after flush({timeout_s})")
    return delivered, errors


def consume(bootstrap: str, topic: str, partitions: list[int], expected_count: int | None = None,
            timeout_s: float = CONSUME_TIMEOUT_S, config: dict | None = None,
            start_offset: int = OFFSET_BEGINNING) -> list[Consumed]:
    """Read `partitions` of `topic` from the beginning to their end with assign().

    Ends when every partition has reported end-of-partition since its last record and, if
    given, at least `expected_count` records were read. Fails with a description of what was
    read if that doesn't happen within `timeout_s`.
    """
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": "spate-ci-assign-only",  # required by the binding; no group is joined.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    }
    settings.update(config or {})
    consumer = Consumer(settings)
    consumed: list[Consumed] = []
    errors: list[str] = []
    at_end = {partition: False for partition in partitions}
    try:
        consumer.assign([TopicPartition(topic, partition, start_offset) for partition in partitions])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            enough = expected_count is None or len(consumed) >= expected_count
            if all(at_end.values()) and enough:
                break
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end[message.partition()] = True
                    else:
                        errors.append(str(error))
                        if error.fatal():
                            raise AssertionError(f"fatal consumer error: {error}")
                    continue
                at_end[message.partition()] = False
                key = message.key()
                consumed.append(Consumed(
                    message.partition(), message.offset(),
                    None if key is None else key.decode(),
                    message.value().decode(),
                    tuple((name, value.decode() if value is not None else None)
                          for name, value in (message.headers() or [])),
                ))
        else:
            per_partition = {p: sum(1 for c in consumed if c.partition == p) for p in partitions}
            raise AssertionError(
                f"consuming {topic} {partitions} did not finish within {timeout_s} s: read "
                f"{len(consumed)} (per partition {per_partition}), expected {expected_count}, "
                f"at end {at_end}; consumer errors: {errors[:10]}")
    finally:
        consumer.close()
    return consumed


def watermarks(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(low, high) per partition, through ListOffsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "spate-ci-assign-only",
                         "enable.auto.commit": False})
    try:
        return {partition: consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                          timeout=10)
                for partition in partitions}
    finally:
        consumer.close()


def produce_consume_smoke(bootstrap: str, topic: str, count: int = 200) -> None:
    """A normal produce + consume round trip; used to show the broker still serves."""
    from records import make_records, verify
    records = make_records(count, "smoke")
    delivered, errors = produce(bootstrap, topic, records, {"message.timeout.ms": 20000},
                                timeout_s=30)
    assert not errors, f"smoke produce to {topic} failed: {errors[:5]}"
    partitions = sorted({partition for partition, _ in delivered.values()})
    metadata = admin_client(bootstrap).list_topics(topic, timeout=10).topics[topic]
    consumed = consume(bootstrap, topic, sorted(metadata.partitions), expected_count=count,
                       timeout_s=30)
    verify(consumed, records, f"smoke round trip on {topic} (partitions {partitions})",
           delivered=delivered)
