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


def confluent_round_trip(bootstrap: str, topic: str, records):
    confluent_helpers.create_topic(bootstrap, topic, PARTITIONS)
    delivered, errors = confluent_helpers.produce(
        bootstrap, topic, records, {"linger.ms": 100, "batch.size": 1_000_000})
    consume = lambda: confluent_helpers.consume(  # noqa: E731
        bootstrap, topic, list(range(PARTITIONS)), expected_count=len(records))
    return delivered, errors, consume


def kafka_python_round_trip(bootstrap: str, topic: str, records):
    test_kafka_python.create_topic(bootstrap, topic, PARTITIONS)
    delivered, errors = test_kafka_python.produce(
        bootstrap, topic, records, linger_ms=100, batch_size=1024 * 1024)
    consume = lambda: test_kafka_python.consume(  # noqa: E731
        bootstrap, topic, list(range(PARTITIONS)))
    return delivered, errors, consume


@pytest.mark.parametrize("client,round_trip", [
    ("confluent-kafka", confluent_round_trip),
    ("kafka-python", kafka_python_round_trip),
])
def test_large_batches_are_received_in_place(stats_broker, unique_topic, client, round_trip):
    topic = unique_topic()
    records = make_records(COUNT, f"{client}-in-place")
    before = appended_bytes(stats_broker)
    delivered, errors, consume = round_trip(stats_broker.bootstrap, topic, records)
    assert not errors, f"{client}: {len(errors)} delivery errors, e.g. {errors[:5]}"
    after = appended_bytes(stats_broker)
    assert after["in_place"] > before["in_place"], \
        f"{client}: no batch was received in place ({before} -> {after})"
    verify(consume(), records, f"{client} in place: {COUNT} records through {topic}",
           delivered=delivered, partition_count=PARTITIONS)
