"""Transactions with real clients (confluent-kafka, librdkafka; kafkajs): a transactional producer's
commits and aborts, the fencing of a zombie by a second producer with the same
transactional.id, `send_offsets_to_transaction` in a consume-transform-produce application,
an abandoned transaction aborted by its timeout, and the same application surviving kill -9
of the broker with a transaction open: every input record is in the output exactly once, as a
read_committed consumer sees it.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

from confluent_helpers import MESSAGE_TIMEOUT_MS, create_topic, produce
from conftest import make_broker
from records import make_records
from test_kafkajs import NODE, NODE_DIR, run_script

KAFKAJS = NODE is not None and (NODE_DIR / "node_modules" / "kafkajs").is_dir()

PARTITIONS = 3
TXN_TIMEOUT_S = 30


def transactional_producer(bootstrap: str, transactional_id: str, **settings) -> Producer:
    config = {"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
              "message.timeout.ms": MESSAGE_TIMEOUT_MS, "linger.ms": 5}
    config.update(settings)
    producer = Producer(config)
    producer.init_transactions(TXN_TIMEOUT_S)
    return producer


def read_all(bootstrap: str, topic: str, isolation: str, expected: int,
             timeout_s: float = 30.0, settle_s: float = 1.0) -> list[tuple[int, int, str]]:
    """Every record of `topic` a consumer with `isolation` reads: (partition, offset, value).
    Waits for `expected` records, then `settle_s` more for any extra."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-reader",
                         "enable.auto.commit": False, "isolation.level": isolation})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if len(got) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consumer error: {message.error()}")
                continue
            got.append((message.partition(), message.offset(), message.value().decode()))
    finally:
        consumer.close()
    return got


def values(records) -> list[str]:
    return [value for _, _, value in records]


def test_committed_and_aborted_transactions_read_as_kafka_reads_them(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = transactional_producer(broker.bootstrap, f"{topic}-txn")
    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, key=str(i), value=f"first-{i}")
    producer.commit_transaction(TXN_TIMEOUT_S)
    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, key=str(i), value=f"aborted-{i}")
    # Sent before the abort (librdkafka purges what it has not sent yet): the aborted
    # records are in the log, and read_committed must skip them.
    producer.flush(30)
    producer.abort_transaction(TXN_TIMEOUT_S)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, key=str(i), value=f"second-{i}")
    producer.commit_transaction(TXN_TIMEOUT_S)

    committed = read_all(broker.bootstrap, topic, "read_committed", 150)
    assert sorted(values(committed)) == sorted(
        [f"first-{i}" for i in range(100)] + [f"second-{i}" for i in range(50)])
    uncommitted = read_all(broker.bootstrap, topic, "read_uncommitted", 250)
    assert len(uncommitted) == 250, len(uncommitted)
    assert sum(value.startswith("aborted-") for value in values(uncommitted)) == 100
    # Per partition, the committed records keep their order: first, then second.
    for partition in range(PARTITIONS):
        seen = [value for p, _, value in committed if p == partition]
        firsts = [v for v in seen if v.startswith("first-")]
        assert seen[:len(firsts)] == firsts, f"partition {partition} out of order: {seen}"
    broker.assert_alive("after transactions")


def test_a_new_producer_with_the_same_transactional_id_fences_the_zombie(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    transactional_id = f"{topic}-txn"
    zombie = transactional_producer(broker.bootstrap, transactional_id)
    zombie.begin_transaction()
    for i in range(20):
        zombie.produce(topic, key=str(i), value=f"zombie-{i}")
    zombie.flush(30)
    # The new producer's init aborts the zombie's open transaction and bumps the epoch.
    successor = transactional_producer(broker.bootstrap, transactional_id)
    with pytest.raises(KafkaException) as refused:
        zombie.produce(topic, key="late", value="zombie-late")
        zombie.commit_transaction(TXN_TIMEOUT_S)
    error = refused.value.args[0]
    assert error.fatal() or error.txn_requires_abort(), error
    successor.begin_transaction()
    for i in range(20):
        successor.produce(topic, key=str(i), value=f"successor-{i}")
    successor.commit_transaction(TXN_TIMEOUT_S)
    committed = read_all(broker.bootstrap, topic, "read_committed", 20)
    assert sorted(values(committed)) == sorted(f"successor-{i}" for i in range(20))


def transform(bootstrap: str, source: str, sink: str, group: str, transactional_id: str,
              total: int, before_commit=None, deadline_s: float = 90.0) -> int:
    """A consume-transform-produce loop: each batch read from `source` is written to `sink`
    (same partition, value prefixed) with the group's offsets in one transaction. Returns
    how many records it committed; stops once the group's offsets reach `total` records.
    `before_commit(batch_number)` runs once a batch is sent, before its commit."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "session.timeout.ms": 10000})
    consumer.subscribe([source])
    producer = transactional_producer(bootstrap, transactional_id)
    committed = 0
    batch_number = 0
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            messages = [m for m in consumer.consume(200, 0.5) if not m.error()]
            if not messages:
                positions = consumer.committed(
                    [TopicPartition(source, p) for p in range(PARTITIONS)], timeout=10)
                if sum(max(tp.offset, 0) for tp in positions) >= total:
                    return committed
                continue
            producer.begin_transaction()
            for message in messages:
                producer.produce(sink, key=message.key(),
                                 value=b"out-" + message.value(), partition=message.partition())
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(),
                TXN_TIMEOUT_S)
            batch_number += 1
            if before_commit is not None:
                producer.flush(TXN_TIMEOUT_S)
                before_commit(batch_number)
            producer.commit_transaction(TXN_TIMEOUT_S)
            committed += len(messages)
        raise AssertionError(f"the pipeline did not finish in {deadline_s} s")
    finally:
        consumer.close()


def check_exactly_once(bootstrap: str, sink: str, inputs: list[str]) -> None:
    output = read_all(bootstrap, sink, "read_committed", len(inputs), timeout_s=60, settle_s=2)
    got = values(output)
    duplicates = len(got) - len(set(got))
    missing = set(f"out-{v}" for v in inputs) - set(got)
    extra = set(got) - set(f"out-{v}" for v in inputs)
    assert not duplicates and not missing and not extra, (
        f"{len(got)} output records for {len(inputs)} inputs: {duplicates} duplicated, "
        f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected")


def test_offsets_sent_to_a_transaction_commit_and_abort_with_it(broker, unique_topic):
    source, sink = unique_topic("in"), unique_topic("out")
    create_topic(broker.bootstrap, source, PARTITIONS)
    create_topic(broker.bootstrap, sink, PARTITIONS)
    records = make_records(600, "eos-input")
    _, errors = produce(broker.bootstrap, source, records)
    assert not errors, errors[:3]
    group = f"{source}-app"

    # A transaction with the group's offsets that is aborted moves nothing.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([source])
    messages = []
    deadline = time.monotonic() + 30
    while not messages and time.monotonic() < deadline:
        messages = [m for m in consumer.consume(100, 0.5) if not m.error()]
    assert messages, "the consumer read nothing"
    producer = transactional_producer(broker.bootstrap, f"{group}-txn")
    producer.begin_transaction()
    producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                         consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
    producer.abort_transaction(TXN_TIMEOUT_S)
    committed = consumer.committed([TopicPartition(source, p) for p in range(PARTITIONS)],
                                   timeout=10)
    assert all(tp.offset < 0 for tp in committed), f"an aborted transaction committed {committed}"
    consumer.close()

    transform(broker.bootstrap, source, sink, group, f"{group}-txn", len(records))
    check_exactly_once(broker.bootstrap, sink, [r.value for r in records])


@pytest.fixture
def quick_abort_broker(request, spate_bin, ci_tmp):
    """A broker that looks for transactions past their timeout every 200 ms."""
    yield from make_broker(request, spate_bin, ci_tmp, extra_args=[
        "--transaction-abort-timed-out-transaction-cleanup-interval-ms", "200"])


def test_an_abandoned_transaction_is_aborted_by_its_timeout(quick_abort_broker, unique_topic):
    broker = quick_abort_broker
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    abandoned = transactional_producer(broker.bootstrap, f"{topic}-txn",
                                       **{"transaction.timeout.ms": 2000,
                                          "message.timeout.ms": 2000})
    abandoned.begin_transaction()
    for i in range(30):
        abandoned.produce(topic, key=str(i), value=f"abandoned-{i}", partition=i % PARTITIONS)
    abandoned.flush(30)
    # Records after the open transaction stay invisible to read_committed until it ends.
    _, errors = produce(broker.bootstrap, topic, make_records(30, "after"),
                        partition_of=lambda index, _: index % PARTITIONS)
    assert not errors, errors[:3]
    started = time.monotonic()
    visible = read_all(broker.bootstrap, topic, "read_committed", 30, timeout_s=30, settle_s=0.5)
    waited = time.monotonic() - started
    assert len(visible) == 30, f"read_committed saw {len(visible)} of 30 records after the abort"
    assert not any(v.startswith("abandoned-") for v in values(visible))
    assert waited < 25, f"the abandoned transaction blocked readers for {waited:.1f} s"
    # Its producer was fenced by the abort (the epoch was bumped).
    with pytest.raises(KafkaException):
        abandoned.commit_transaction(TXN_TIMEOUT_S)


def test_an_exactly_once_pipeline_survives_kill9_with_a_transaction_open(broker, unique_topic):
    source, sink = unique_topic("in"), unique_topic("out")
    create_topic(broker.bootstrap, source, PARTITIONS)
    create_topic(broker.bootstrap, sink, PARTITIONS)
    records = make_records(3000, "eos-kill")
    _, errors = produce(broker.bootstrap, source, records, {"batch.num.messages": 100})
    assert not errors, errors[:3]
    group = f"{source}-app"
    killed = threading.Event()

    def crash_during_the_third_transaction(batch_number):
        if batch_number == 3:
            killed.set()
            broker.kill9()
            broker.start()
            # The machine went down: the application dies with the broker.
            raise ApplicationCrash()

    # The broker dies with the application's third transaction open: its records and the
    # group's offsets sent, no EndTxn. After the restart the application starts again with
    # a new producer, whose init_transactions aborts that transaction (and fences the old
    # producer), and a new consumer, which resumes at the offsets committed with the last
    # committed transaction. (A client that carries on instead meets librdkafka's
    # send_offsets_to_transaction hang on a restarted group coordinator,
    # confluentinc/librdkafka#5456 and #5511.)
    with pytest.raises(ApplicationCrash):
        transform(broker.bootstrap, source, sink, group, f"{group}-txn", len(records),
                  before_commit=crash_during_the_third_transaction)
    assert killed.is_set()
    transform(broker.bootstrap, source, sink, group, f"{group}-txn", len(records))
    check_exactly_once(broker.bootstrap, sink, [r.value for r in records])
    # The open transaction's records were in the log (flushed before the kill) and were
    # aborted: a read_uncommitted consumer sees them twice.
    everything = read_all(broker.bootstrap, sink, "read_uncommitted", len(records) + 1,
                          timeout_s=30)
    assert len(everything) > len(records), "the transaction open at the kill wrote nothing"


@pytest.mark.skipif(not KAFKAJS, reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)")
def test_kafkajs_transactions_commit_abort_and_fence(broker, unique_topic):
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    count = 50
    result = run_script("transactions.js", {"brokers": [broker.bootstrap], "topic": topic,
                                            "transactionalId": f"{topic}-kafkajs", "count": count})
    # Its next produce is refused for its old epoch, as Kafka refuses it.
    assert result["zombieError"] in ("INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED"), \
        f"the zombie was not fenced: {result['zombieError']}"
    committed = read_all(broker.bootstrap, topic, "read_committed", 2 * count)
    expected = [f"kafkajs-committed-{i}" for i in range(count)] + \
        [f"kafkajs-successor-{i}" for i in range(count)]
    assert sorted(values(committed)) == sorted(expected)
    # Aborted and fenced records are in the log, for read_uncommitted only.
    uncommitted = values(read_all(broker.bootstrap, topic, "read_uncommitted", 4 * count))
    assert sum(v.startswith("kafkajs-aborted-") for v in uncommitted) == count
    assert sum(v.startswith("kafkajs-zombie-") for v in uncommitted) >= count


class ApplicationCrash(Exception):
    """The application's end, mid-transaction, in a test."""
