"""Large produce requests from real clients take the one-copy path: the broker receives their
batches from the socket straight into the DMA chunks it writes them from. The broker's /stats
count those bytes (`produce_append_bytes.in_place`); the records read back as produced.

librdkafka (confluent-kafka) sends flexible Produce versions (v9+), kafka-python the older
layout (v3-v8), so both of the broker's request walkers meet a real client here.
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

import confluent_helpers
import test_kafka_python
from conftest import make_broker
from records import make_records, verify

PARTITIONS = 4
COUNT = 40_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stats_broker(request, spate_bin, ci_tmp):
    """A broker with its /stats endpoint on a free port (`broker.stats_url`)."""
    port = free_port()
    for broker in make_broker(request, spate_bin, ci_tmp,
                              extra_args=["--stats-listen", f"127.0.0.1:{port}"]):
        broker.stats_url = f"http://127.0.0.1:{port}/stats"
        yield broker


def appended_bytes(broker) -> dict[str, int]:
    with urllib.request.urlopen(broker.stats_url, timeout=10) as response:
        shards = json.load(response)["shards"]
    totals = {"in_place": 0, "copied": 0}
    for shard in shards:
        for path, count in shard["produce_append_bytes"].items():
            totals[path] += count
    return totals


def check_in_place(broker, before: dict[str, int], context: str) -> None:
    after = appended_bytes(broker)
    received = after["in_place"] - before["in_place"]
    assert received > 0, f"{context}: no batch was received in place ({before} -> {after})"


def test_confluent_large_batches_are_received_in_place(stats_broker, unique_topic):
    topic = unique_topic()
    confluent_helpers.create_topic(stats_broker.bootstrap, topic, PARTITIONS)
    records = make_records(COUNT, "confluent-in-place")
    before = appended_bytes(stats_broker)
    delivered, errors = confluent_helpers.produce(
        stats_broker.bootstrap, topic, records, {"linger.ms": 100, "batch.size": 1_000_000})
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    check_in_place(stats_broker, before, "confluent-kafka")
    consumed = confluent_helpers.consume(stats_broker.bootstrap, topic, list(range(PARTITIONS)),
                                         expected_count=COUNT)
    verify(consumed, records, f"confluent in place: {COUNT} records through {topic}",
           delivered=delivered, partition_count=PARTITIONS)


def test_kafka_python_large_batches_are_received_in_place(stats_broker, unique_topic):
    topic = unique_topic()
    test_kafka_python.create_topic(stats_broker.bootstrap, topic, PARTITIONS)
    records = make_records(COUNT, "kafkapython-in-place")
    before = appended_bytes(stats_broker)
    delivered, errors = test_kafka_python.produce(
        stats_broker.bootstrap, topic, records, linger_ms=100, batch_size=1024 * 1024)
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:5]}"
    check_in_place(stats_broker, before, "kafka-python")
    consumed = test_kafka_python.consume(stats_broker.bootstrap, topic, list(range(PARTITIONS)))
    verify(consumed, records, f"kafka-python in place: {COUNT} records through {topic}",
           delivered=delivered, partition_count=PARTITIONS)
