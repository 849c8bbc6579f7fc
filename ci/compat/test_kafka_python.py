"""kafka-python 2.x (pure Python): produce/consume with every codec, an idempotent producer,
and KafkaAdminClient create/list/delete topics.

kafka-python is slow in pure Python, so the uncompressed run uses 100k records and each
compressed codec ~20k (enough for many batches per partition), to keep the suite's wall time
reasonable on two cores. kafka-python picks its protocol versions by guessing the broker's
Kafka release from the ApiVersions response, which this also exercises.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

import kafka_wire as wire
from records import Consumed, make_records, verify

PARTITIONS = 6
COUNTS = {"none": 100_000, "gzip": 20_000, "snappy": 20_000, "lz4": 20_000, "zstd": 20_000}


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                            client_id="spate-ci-kafka-python")


def authorized_operations(bootstrap: str, topic: str) -> dict[str, int]:
    """Raw Metadata v8 with both include_*_authorized_operations flags set, as KafkaAdminClient
    sends it: returns the cluster's and the topic's authorized_operations as plain int32s."""
    request = MetadataRequest[8](topics=[topic], allow_auto_topic_creation=False,
                                 include_cluster_authorized_operations=True,
                                 include_topic_authorized_operations=True)
    port = int(bootstrap.rsplit(":", 1)[1])
    with wire.connect(port) as sock:
        sock.sendall(wire.frame(wire.request_header_v1(wire.METADATA, 8, 77) + request.encode()))
        body = wire.read_frame(sock)
    # kafka-python decodes these int32 fields as the set of their set bits; turn them back.
    response = MetadataResponse[8].decode(body[4:])

    def as_int(bits) -> int:
        return sum(1 << bit for bit in bits) - (1 << 32 if 31 in bits else 0)

    return {"cluster": as_int(response.authorized_operations),
            **{f"topic {t[1]}": as_int(t[-1]) for t in response.topics}}


@contextlib.contextmanager
def explain_authorized_operations(bootstrap: str, topic: str):
    """kafka-python's list_topics()/describe_topics() turn Metadata v8 authorized_operations
    bits into ACLOperation values and raise ValueError on bits no operation has. Say what the
    broker sent instead of just the ValueError."""
    try:
        yield
    except ValueError as error:
        if "ACLOperation" not in str(error):
            raise
        raise AssertionError(
            f"kafka-python could not decode Metadata v8 authorized_operations ({error}). The broker "
            f"answered include_*_authorized_operations=true with {authorized_operations(bootstrap, topic)}; "
            "-2147483648 means 'not provided'. Kafka, even without an authorizer, answers with the "
            "bitfield of allowed operations (bits 3-14, never bit 31).") from None


def topic_error_codes(response) -> dict[str, int]:
    """topic -> error code, from a CreateTopics or DeleteTopics response (any version)."""
    field = "topic_errors" if hasattr(response, "topic_errors") else "topic_error_codes"
    entries = getattr(response, field)
    return {entry[0]: entry[1] for entry in entries}


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """CreateTopics, then wait until the client's Metadata shows every partition with a leader.

    Readiness is read from a consumer's cluster metadata rather than describe_topics(), so that
    the produce/consume tests do not depend on what test_admin_describe_topics checks.
    """
    client = admin(bootstrap)
    try:
        response = client.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)], timeout_ms=15000)
        codes = topic_error_codes(response)
        assert codes == {topic: 0}, f"CreateTopics {topic}: {response}"
    finally:
        client.close()
    wait_for_partitions(bootstrap, topic, partitions)


def wait_for_partitions(bootstrap: str, topic: str, partitions: int, timeout_s: float = 20) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             client_id="spate-ci-kafka-python")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            found = consumer.partitions_for_topic(topic) or set()
            leaders = {p: consumer._client.cluster.leader_for_partition(TopicPartition(topic, p))
                       for p in found}
            if len(found) == partitions and all(l is not None and l >= 0 for l in leaders.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} not ready with {partitions} led partitions: "
                                     f"leaders {leaders}")
            consumer._client.cluster.request_update()
            time.sleep(0.2)
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, records, **config):
    settings = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=10,
                    batch_size=256 * 1024, request_timeout_ms=30000, delivery_timeout_ms=60000,
                    client_id="spate-ci-kafka-python")
    settings.update(config)
    producer = KafkaProducer(**settings)
    delivered: dict[str, tuple[int, int]] = {}
    errors: list[str] = []
    try:
        for record in records:
            future = producer.send(topic, key=record.key.encode(), value=record.value.encode(),
                                   headers=[(name, value.encode()) for name, value in record.headers])
            future.add_callback(
                lambda metadata, value=record.value:
                    delivered.__setitem__(value, (metadata.partition, metadata.offset)))
            future.add_errback(lambda error, value=record.value: errors.append(f"{value[:20]}: {error!r}"))
        producer.flush(timeout=90)
    finally:
        producer.close(timeout=10)
    return delivered, errors


def consume(bootstrap: str, topic: str, partitions: list[int], timeout_s: float = 60) -> list[Consumed]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="spate-ci-kafka-python",
                             max_poll_records=5000, fetch_max_wait_ms=100)
    try:
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end_offsets = consumer.end_offsets(assigned)
        consumed: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end_offsets[tp] for tp in assigned):
            if time.monotonic() > deadline:
                positions = {tp.partition: (consumer.position(tp), end_offsets[tp]) for tp in assigned}
                raise AssertionError(f"kafka-python consumer stuck on {topic}: "
                                     f"(position, end) per partition {positions}")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for message in messages:
                    consumed.append(Consumed(
                        message.partition, message.offset,
                        None if message.key is None else message.key.decode(),
                        message.value.decode(),
                        tuple((name, value.decode()) for name, value in message.headers)))
        return consumed
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", list(COUNTS))
def test_produce_consume_codec(broker, unique_topic, codec):
    topic = unique_topic(codec)
    count = COUNTS[codec]
    create_topic(broker.bootstrap, topic, PARTITIONS)
    records = make_records(count, f"kafkapython-{codec}")
    delivered, errors = produce(broker.bootstrap, topic, records,
                                compression_type=None if codec == "none" else codec)
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    assert len(delivered) == count
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)))
    verify(consumed, records, f"kafka-python {codec}: {count} records through {topic}",
           delivered=delivered, partition_count=PARTITIONS)


def test_idempotent_producer(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    records = make_records(20_000, "kafkapython-idempotent")
    delivered, errors = produce(broker.bootstrap, topic, records, enable_idempotence=True,
                                max_in_flight_requests_per_connection=1)  # kafka-python 2.x requires 1
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)))
    verify(consumed, records, f"kafka-python idempotent producer through {topic}",
           delivered=delivered, partition_count=PARTITIONS)


def test_admin_create_list_delete_topics(broker, unique_topic):
    first, second = unique_topic("a"), unique_topic("b")
    create_topic(broker.bootstrap, first, 3)
    create_topic(broker.bootstrap, second, 5)
    client = admin(broker.bootstrap)
    try:
        with explain_authorized_operations(broker.bootstrap, first):
            listed = set(client.list_topics())
        assert {first, second} <= listed, sorted(listed)
        # KafkaAdminClient raises the per-topic error code as an exception.
        with pytest.raises(TopicAlreadyExistsError):
            client.create_topics([NewTopic(first, num_partitions=3, replication_factor=1)],
                                 timeout_ms=15000)
        deleted = client.delete_topics([first], timeout_ms=15000)
        assert topic_error_codes(deleted) == {first: 0}, deleted
        deadline = time.monotonic() + 15
        while first in set(client.list_topics()):
            assert time.monotonic() < deadline, f"deleted topic {first} still listed"
            time.sleep(0.2)
        assert second in set(client.list_topics()), "deleting one topic removed another"
    finally:
        client.close()


def test_admin_describe_topics(broker, unique_topic):
    """describe_topics() asks Metadata v8 for topic authorized operations; Kafka (even without
    an authorizer) answers with a bitfield of allowed operations, and kafka-python decodes it."""
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, 4)
    client = admin(broker.bootstrap)
    try:
        with explain_authorized_operations(broker.bootstrap, topic):
            described = client.describe_topics([topic])
    finally:
        client.close()
    assert len(described) == 1 and described[0]["topic"] == topic, described
    assert described[0]["error_code"] == 0, described
    partitions = described[0]["partitions"]
    assert sorted(p["partition"] for p in partitions) == [0, 1, 2, 3], partitions
    assert all(p["leader"] >= 0 for p in partitions), partitions
