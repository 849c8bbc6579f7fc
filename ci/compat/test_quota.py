"""Client quotas (issue 18): `spate quota` sets produce and fetch byte rates and request time per
user and client id; real librdkafka clients are held to them, told so in throttle_time_ms, and
clients that no quota binds keep their full speed.

The brokers here sample rates over 3 windows of 1 s (Kafka's quota.window.num and
quota.window.size.seconds, 11 and 1 by default) so that a client's first burst, which Kafka
allows up to (windows - 1) seconds of its quota, is over in two seconds; rates are measured
after it.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from confluent_helpers import create_topic
from test_sasl import spate

pytestmark = pytest.mark.broker_args("--quota-window-num", "3", "--quota-window-size-seconds", "1")

RECORD = b"q" * 1024
# Kafka allows a new client (windows - 1) windows of its quota at once.
BURST_S = 2.0


def set_quota(bootstrap: str, *args: str) -> None:
    spate("quota", "set", *args, "--brokers", bootstrap)


class PacedProducer:
    """Keeps a librdkafka producer's queue full for `seconds`, noting when each record's
    delivery was reported and every throttle time the broker sent."""

    def __init__(self, bootstrap: str, topic: str, client_id: str, seconds: float):
        self.delivered: list[float] = []
        self.failed: list = []
        self.throttles: list[int] = []
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
            "batch.size": 16384, "message.timeout.ms": 60000,
            "queue.buffering.max.kbytes": 512,
            "throttle_cb": lambda event: self.throttles.append(event.throttle_time),
        })
        self.topic = topic
        self.seconds = seconds

    def on_delivery(self, error, _message) -> None:
        if error is None:
            self.delivered.append(time.monotonic())
        elif error.code() not in (KafkaError._PURGE_INFLIGHT, KafkaError._PURGE_QUEUE):
            self.failed.append(error)

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                self.producer.produce(self.topic, RECORD, partition=0,
                                      on_delivery=self.on_delivery)
            except BufferError:
                self.producer.poll(0.05)
            self.producer.poll(0)
        self.producer.purge()  # what is still queued is not part of the measurement
        self.producer.flush(60)

    def rate_after_burst(self) -> float:
        """Record bytes per second delivered from the end of the burst to the last delivery."""
        assert self.delivered, f"nothing delivered: {self.failed}"
        start = self.delivered[0] + BURST_S
        after = [at for at in self.delivered if at >= start]
        assert len(after) > 10, f"only {len(after)} deliveries after the burst"
        return (len(after) - 1) * len(RECORD) / (after[-1] - after[0])


def test_a_producer_is_held_to_its_byte_rate_and_others_are_not(broker):
    """A client id's producer_byte_rate holds it within 10% of its rate, with throttle_time_ms
    in its responses, while a producer with another client id to the same partition runs free."""
    create_topic(broker.bootstrap, "quota-produce", 1)
    quota = 256 * 1024
    set_quota(broker.bootstrap, "--client-id", "throttled", "--producer-byte-rate", str(quota))
    throttled = PacedProducer(broker.bootstrap, "quota-produce", "throttled", 10.0)
    free = PacedProducer(broker.bootstrap, "quota-produce", "free", 10.0)
    threads = [threading.Thread(target=producer.run) for producer in (throttled, free)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not throttled.failed and not free.failed, (throttled.failed, free.failed)
    rate = throttled.rate_after_burst()
    # The quota counts whole requests (batch and request headers too), so the record bytes
    # delivered come out a little under it.
    assert 0.9 * quota <= rate <= 1.1 * quota, f"{rate:.0f} B/s against a quota of {quota}"
    assert throttled.throttles and max(throttled.throttles) > 0, "no throttle_time_ms seen"
    assert free.rate_after_burst() > 4 * quota, "an unthrottled producer was held back"
    assert not free.throttles or max(free.throttles) == 0


def test_a_consumer_is_held_to_its_byte_rate(broker):
    """consumer_byte_rate on a user (every client of User:ANONYMOUS on this PLAINTEXT broker)
    holds a reader to within 10% of its rate."""
    create_topic(broker.bootstrap, "quota-fetch", 1)
    # Small batches: a fetch returns whole batches, and the rate is measured per record.
    loader = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20,
                       "batch.size": 16384})
    for _ in range(8 * 1024):
        while True:
            try:
                loader.produce("quota-fetch", RECORD, partition=0)
                break
            except BufferError:
                loader.poll(0.1)
    assert loader.flush(60) == 0
    quota = 512 * 1024
    set_quota(broker.bootstrap, "--user", "ANONYMOUS", "--consumer-byte-rate", str(quota))
    throttles: list[int] = []
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": "quota-reader",
        "enable.auto.commit": False, "fetch.max.bytes": 65536,
        "max.partition.fetch.bytes": 65536, "message.max.bytes": 65536,
        "throttle_cb": lambda event: throttles.append(event.throttle_time),
    })
    try:
        consumer.assign([TopicPartition("quota-fetch", 0, OFFSET_BEGINNING)])
        received: list[tuple[float, int]] = []
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                received.append((time.monotonic(), len(message.value())))
    finally:
        consumer.close()
    assert received, "nothing consumed"
    start = received[0][0] + BURST_S
    after = [(at, size) for at, size in received if at >= start]
    assert len(after) > 100, f"only {len(after)} records after the burst"
    rate = sum(size for _, size in after[1:]) / (after[-1][0] - after[0][0])
    assert 0.9 * quota <= rate <= 1.1 * quota, f"{rate:.0f} B/s against a quota of {quota}"
    assert throttles and max(throttles) > 0, "no throttle_time_ms seen"


def test_request_time_quota_throttles_and_delivers(broker):
    """A request_percentage so small that any client exceeds it: the default user's producer is
    throttled (throttle_time_ms > 0) yet every record is delivered, in order."""
    create_topic(broker.bootstrap, "quota-time", 1)
    set_quota(broker.bootstrap, "--default-user", "--request-percentage", "0.01")
    throttles: list[int] = []
    delivered: list[bytes] = []
    throttled_at = None
    producer = Producer({
        "bootstrap.servers": broker.bootstrap, "linger.ms": 0, "message.timeout.ms": 60000,
        "throttle_cb": lambda event: throttles.append(event.throttle_time),
    })
    # One request per record, whatever the machine's load: the bucket allows a burst of
    # 0.01% x 2 s = 200 us of shard time, which a few requests exceed. Once throttled (each
    # request then waits a few hundred ms), five more records show the producer still served.
    sent = 0
    while sent < 200 and (not throttles or sent < throttled_at + 5):
        producer.produce("quota-time", str(sent).encode(), partition=0,
                         on_delivery=lambda error, message: error is None and
                         delivered.append(message.value()))
        assert producer.flush(30) == 0
        sent += 1
        if throttles and throttled_at is None:
            throttled_at = sent
    assert delivered == [str(index).encode() for index in range(sent)]
    assert throttles and max(throttles) > 0, "no throttle_time_ms seen"
    listed = spate("quota", "list", "--json", "--brokers", broker.bootstrap).stdout
    assert '"request_percentage": 0.01' in listed, listed
