"""confluent-kafka (librdkafka 2.x): produce/consume with every codec and acks level, an
idempotent producer, and the AdminClient calls the broker serves.

Consumers use assign() from OFFSET_BEGINNING with librdkafka's default
`isolation.level=read_committed`, which needs a correct last stable offset from Fetch.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

from confluent_helpers import admin_client, consume, create_topic, produce, wait_for_topic
from records import make_records, verify

RECORD_COUNT = 100_000
PARTITIONS = 6
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(broker, unique_topic, codec):
    topic = unique_topic(codec)
    create_topic(broker.bootstrap, topic, PARTITIONS)
    records = make_records(RECORD_COUNT, f"confluent-{codec}")
    delivered, errors = produce(broker.bootstrap, topic, records,
                                {"acks": "all", "compression.type": codec})
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    assert len(delivered) == RECORD_COUNT
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)), expected_count=RECORD_COUNT)
    verify(consumed, records, f"confluent {codec}: {RECORD_COUNT} records through {topic}",
           delivered=delivered, partition_count=PARTITIONS)


@pytest.mark.parametrize("acks", ["0", "1"])
def test_produce_consume_acks(broker, unique_topic, acks):
    topic = unique_topic(f"acks{acks}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    count = 20_000
    records = make_records(count, f"confluent-acks{acks}")
    delivered, errors = produce(broker.bootstrap, topic, records, {"acks": acks})
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    # With acks=0 the broker sends no response, so delivery reports carry no offset.
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)), expected_count=count)
    verify(consumed, records, f"confluent acks={acks}: {count} records through {topic}",
           delivered=delivered if acks == "1" else None, partition_count=PARTITIONS)


def test_idempotent_producer(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    count = 50_000
    records = make_records(count, "confluent-idempotent")
    delivered, errors = produce(broker.bootstrap, topic, records,
                                {"enable.idempotence": True, "compression.type": "lz4"})
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)), expected_count=count)
    verify(consumed, records, f"confluent idempotent producer through {topic}",
           delivered=delivered, partition_count=PARTITIONS)


def test_read_uncommitted_matches_read_committed(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    records = make_records(5_000, "confluent-isolation")
    delivered, errors = produce(broker.bootstrap, topic, records)
    assert not errors, errors[:5]
    for level in ("read_committed", "read_uncommitted"):
        consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)),
                           expected_count=len(records), config={"isolation.level": level})
        verify(consumed, records, f"isolation.level={level} on {topic}", delivered=delivered)


def wait_until(predicate, timeout_s: float, what: str, describe=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s; {describe()}")


def test_admin_create_list_delete_topics(broker, unique_topic):
    admin = admin_client(broker.bootstrap)
    first, second = unique_topic("a"), unique_topic("b")
    futures = admin.create_topics([NewTopic(first, num_partitions=3, replication_factor=1),
                                   NewTopic(second, num_partitions=5, replication_factor=1)],
                                  operation_timeout=10)
    for topic, future in futures.items():
        future.result(timeout=20)
    wait_for_topic(broker.bootstrap, first, 3)
    wait_for_topic(broker.bootstrap, second, 5)
    listed = admin.list_topics(timeout=10).topics
    assert first in listed and second in listed, sorted(listed)

    again = admin.create_topics([NewTopic(first, num_partitions=3, replication_factor=1)])
    with pytest.raises(KafkaException) as raised:
        again[first].result(timeout=20)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, raised.value

    admin.delete_topics([first], operation_timeout=10)[first].result(timeout=20)
    wait_until(lambda: first not in admin.list_topics(timeout=10).topics, 15,
               f"deleted topic {first} still listed",
               lambda: f"topics: {sorted(admin.list_topics(timeout=10).topics)}")
    assert second in admin.list_topics(timeout=10).topics, "deleting one topic removed another"


def test_admin_create_partitions(broker, unique_topic):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, 2)
    admin.create_partitions([NewPartitions(topic, 5)], operation_timeout=10)[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, 5)
    records = make_records(1_000, "confluent-newpartitions")
    delivered, errors = produce(broker.bootstrap, topic, records, partition_of=lambda i, _: i % 5)
    assert not errors, errors[:5]
    assert {partition for partition, _ in delivered.values()} == set(range(5))
    consumed = consume(broker.bootstrap, topic, list(range(5)), expected_count=len(records))
    # partition_of overrides the key, so keys are spread over partitions on purpose here.
    assert sorted(c.value for c in consumed) == sorted(r.value for r in records)
    assert all(delivered[c.value] == (c.partition, c.offset) for c in consumed)


def test_admin_describe_topic_configs(broker, unique_topic):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, 2)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)
    assert configs, f"DescribeConfigs returned no configs for topic {topic}"
    names = set(configs)
    assert names & {"cleanup.policy", "retention.ms", "segment.bytes", "max.message.bytes"}, \
        f"none of the usual topic configs described; got {sorted(names)}"


def test_admin_describe_broker_configs(broker):
    admin = admin_client(broker.bootstrap)
    resource = ConfigResource(ResourceType.BROKER, "0")
    configs = admin.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)
    assert configs, "DescribeConfigs returned no configs for broker 0"


def test_admin_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    description = admin.describe_cluster(request_timeout=15).result(timeout=20)
    ports = sorted(node.port for node in description.nodes)
    assert ports == broker.ports, f"DescribeCluster nodes {description.nodes}, shards {broker.ports}"
    assert all(node.host == "127.0.0.1" for node in description.nodes), description.nodes
    assert description.cluster_id, f"empty cluster id: {description}"
    assert description.controller is not None, f"no controller: {description}"


def test_a_single_node_replicates_a_topic_sized_like_kafkas_tools_size_internal_topics(
        broker, unique_topic):
    """Kafka's tools (Schema Registry, Connect, Streams) size their topics as min(3, brokers),
    and every shard is a broker: on this two-shard node, a factor of 2. The replicas go to
    both shards, the ISR is full, and an idempotent acks=all producer with librdkafka's
    defaults rides a kill -9 with nothing lost, duplicated or reordered."""
    admin = admin_client(broker.bootstrap)
    brokers = len(admin.describe_cluster(request_timeout=15).result(timeout=20).nodes)
    factor = min(3, brokers)
    assert factor == 2, f"{brokers} brokers on a two-shard node"
    topic = unique_topic()
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=factor,
                  config={"min.insync.replicas": "2"})],
        operation_timeout=10, request_timeout=15)
    futures[topic].result(timeout=20)
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)

    def full_isr() -> bool:
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        return all(len(set(p.replicas)) == 2 and sorted(p.isrs) == sorted(p.replicas)
                   for p in partitions)

    deadline = time.monotonic() + 20
    while not full_isr():
        assert time.monotonic() < deadline, "the ISR never filled"
        time.sleep(0.2)
    settings = {"enable.idempotence": True, "linger.ms": 5}
    records = make_records(10_000, "replicated")
    first, second = records[:5_000], records[5_000:]
    delivered, errors = produce(broker.bootstrap, topic, first, settings)
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    broker.kill9()
    broker.restart(clean=False)
    deadline = time.monotonic() + 30
    while not full_isr():
        assert time.monotonic() < deadline, "the ISR never filled again after the restart"
        time.sleep(0.2)
    more, errors = produce(broker.bootstrap, topic, second, settings)
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    delivered.update(more)
    consumed = consume(broker.bootstrap, topic, list(range(PARTITIONS)),
                       expected_count=len(records))
    verify(consumed, records, f"RF=2 on one node through a kill -9 ({topic})",
           delivered=delivered, partition_count=PARTITIONS)
