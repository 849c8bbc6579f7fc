"""Transactions on a three-node cluster whose transaction coordinator is killed mid-transaction.

Three `spate serve` nodes (test_cluster.py's cluster) hold `__transaction_state` and
`__consumer_offsets` with replication factor 3, and a source and a sink topic with replication
factor 3 and min.insync.replicas=2. A consume-transform-produce application (librdkafka's
transactional producer, a read_committed consumer, `send_offsets_to_transaction`) copies the
source to the sink. With its third transaction open (records sent and flushed, the group's
offsets added, no EndTxn yet) the node that coordinates its transactional id is killed with
kill -9 and stays down. The application carries on as an exactly-once application must:
it commits through the coordinator that takes over (which loaded the open transaction from
the surviving replicas of its `__transaction_state` partition), or, if the client gives up
on the transaction, aborts it and rewinds to the group's committed offsets.

What must hold: every input record is in the sink exactly once as a read_committed consumer
sees it, read from the two survivors (so the commit or abort markers were written by the
next coordinator, to leaders that may themselves have moved); and again once the killed
node is back and has caught up.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from confluent_helpers import produce
from records import make_records
from test_cluster import (NODES, PARTITIONS, WAIT_S, cluster, create_replicated_topic,  # noqa: F401
                          full_isr, wait_for)

TXN_TIMEOUT_S = 60
# Kafka's defaults for the internal topics; spate's (`--transaction-state-log-num-partitions`).
TXN_STATE_PARTITIONS = 50


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    value = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        value = (31 * value + int(unit, 16)) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def state_partition(transactional_id: str) -> int:
    """Kafka's `Utils.abs(transactionalId.hashCode()) % partitions`."""
    value = java_string_hash(transactional_id)
    return (0 if value == -(1 << 31) else abs(value)) % TXN_STATE_PARTITIONS


def coordinator_node(cluster, transactional_id: str) -> int:
    """The node leading the `__transaction_state` partition of `transactional_id`."""
    partition = state_partition(transactional_id)

    def leader():
        try:
            metadata = AdminClient({"bootstrap.servers": cluster.bootstrap()}).list_topics(
                "__transaction_state", timeout=5)
        except Exception:  # noqa: BLE001 - asked again
            return None
        topic = metadata.topics.get("__transaction_state")
        if topic is None or topic.error is not None or partition not in topic.partitions:
            return None
        leader = topic.partitions[partition].leader
        return leader // 1024 if leader >= 0 else None
    return wait_for(f"the leader of __transaction_state partition {partition}", leader, cluster)


class Pipeline:
    """The consume-transform-produce application: each batch read from `source` goes to
    `sink` (same partition, value prefixed) with the group's offsets in one transaction."""

    def __init__(self, bootstrap: str, source: str, sink: str, group: str, transactional_id: str):
        self.source, self.sink = source, sink
        self.rebalanced = False
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "session.timeout.ms": 10000})
        self.consumer.subscribe([source], on_assign=self._on_rebalance,
                                on_revoke=self._on_rebalance)
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "transactional.id": transactional_id,
            "linger.ms": 5, "message.timeout.ms": TXN_TIMEOUT_S * 1000,
            "transaction.timeout.ms": TXN_TIMEOUT_S * 1000,
            # A dead node's requests must not wait out librdkafka's 30 s default.
            "request.timeout.ms": 5000, "socket.timeout.ms": 5000,
            "topic.metadata.refresh.interval.ms": 1000})
        self.producer.init_transactions(TXN_TIMEOUT_S)
        self.aborted = 0
        self.transactions = 0
        self.closed = False

    def _on_rebalance(self, consumer, partitions) -> None:
        self.rebalanced = True

    def committed_total(self) -> int:
        positions = self.consumer.committed(
            [TopicPartition(self.source, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in positions)

    def rewind(self) -> None:
        """Back to the group's committed offsets: what an aborted transaction consumed is
        read again."""
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for tp in self.consumer.committed(assigned, timeout=10):
            tp.offset = tp.offset if tp.offset >= 0 else 0
            self.consumer.seek(tp)

    def run(self, total: int, before_commit=None, deadline_s: float = 180.0) -> None:
        """Until the group's offsets cover `total` input records. `before_commit(n)` runs
        with the n-th transaction's records flushed and its offsets sent, before EndTxn."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            self.rebalanced = False
            messages = [m for m in self.consumer.consume(200, 0.5) if not m.error()]
            if self.rebalanced:
                # Positions changed under this batch: read it again from the committed offsets.
                self.rewind()
                continue
            if not messages:
                if self.committed_total() >= total:
                    return
                continue
            self.producer.begin_transaction()
            try:
                for message in messages:
                    self.producer.produce(self.sink, key=message.key(),
                                          value=b"out-" + message.value(),
                                          partition=message.partition())
                self.producer.send_offsets_to_transaction(
                    self.consumer.position(self.consumer.assignment()),
                    self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
                self.transactions += 1
                if before_commit is not None:
                    self.producer.flush(TXN_TIMEOUT_S)
                    before_commit(self.transactions)
                self.commit()
            except KafkaException as error:
                if not error.args[0].txn_requires_abort():
                    raise
                self.producer.abort_transaction(TXN_TIMEOUT_S)
                self.aborted += 1
                self.rewind()
        raise AssertionError(f"the pipeline did not finish in {deadline_s} s")

    def commit(self) -> None:
        """commit_transaction, called again while librdkafka says it may be retried (its
        EndTxn timed out on a coordinator that went away)."""
        while True:
            try:
                self.producer.commit_transaction(TXN_TIMEOUT_S)
                return
            except KafkaException as error:
                if not error.args[0].retriable():
                    raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


def read_committed(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0,
                   settle_s: float = 2.0, isolation: str = "read_committed") -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-reader",
                         "enable.auto.commit": False, "isolation.level": isolation})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if len(got) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                got.append(message.value().decode())
    finally:
        consumer.close()
    return got


def check_exactly_once(bootstrap: str, sink: str, inputs: list[str], cluster) -> None:
    got = read_committed(bootstrap, sink, len(inputs))
    duplicates = len(got) - len(set(got))
    missing = set(f"out-{v}" for v in inputs) - set(got)
    extra = set(got) - set(f"out-{v}" for v in inputs)
    assert not duplicates and not missing and not extra, (
        f"{len(got)} output records for {len(inputs)} inputs: {duplicates} duplicated, "
        f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected\n"
        f"{cluster.logs()}")


class ApplicationCrash(Exception):
    """The application dies with the node (they shared a machine)."""


@pytest.mark.parametrize("application", ["carries_on", "crashes_too"])
def test_a_transaction_survives_kill9_of_its_coordinators_node(cluster, unique_topic,
                                                                application):
    source, sink = unique_topic("in"), unique_topic("out")
    create_replicated_topic(cluster, source)
    create_replicated_topic(cluster, sink)
    records = make_records(2000, "cluster-eos")
    _, errors = produce(cluster.bootstrap(), source, records, {"batch.num.messages": 100})
    assert not errors, errors[:3]
    group = f"{source}-app"
    transactional_id = f"{group}-txn"
    pipeline = Pipeline(cluster.bootstrap(), source, sink, group, transactional_id)
    # init_transactions made __transaction_state; every partition of it is replicated.
    wait_for("__transaction_state led with its full ISR",
             lambda: full_isr_of(cluster, "__transaction_state"), cluster)
    killed: list[int] = []

    def kill_the_coordinator(transaction: int) -> None:
        if transaction == 3:
            node = coordinator_node(cluster, transactional_id)
            cluster.node(node).kill9()
            killed.append(node)
            if application == "crashes_too":
                raise ApplicationCrash()

    try:
        pipeline.run(len(records), before_commit=kill_the_coordinator)
    except ApplicationCrash:
        # A new instance: its init_transactions goes to the coordinator that took over, which
        # aborts the open transaction (markers to every partition of it) and fences the old
        # producer; its consumer resumes at the offsets of the last committed transaction.
        pipeline.close()
        pipeline = Pipeline(cluster.bootstrap(exclude=set(killed)), source, sink, group,
                            transactional_id)
        pipeline.run(len(records))
    finally:
        pipeline.close()
    assert killed, "the pipeline finished before its third transaction"
    inputs = [r.value for r in records]
    # From the survivors alone: the markers came from the coordinator that took over.
    check_exactly_once(cluster.bootstrap(exclude=set(killed)), sink, inputs, cluster)

    # The killed node comes back, catches up (markers included), and changes nothing.
    cluster.node(killed[0]).start()
    wait_for("the sink's full ISR again", lambda: full_isr(cluster, sink), cluster,
             timeout_s=WAIT_S)
    check_exactly_once(cluster.bootstrap(), sink, inputs, cluster)
    if application == "crashes_too":
        # The transaction open at the kill had written its records (flushed): they are in the
        # log, aborted, and a read_uncommitted consumer sees them beside their second copy.
        everything = read_committed(cluster.bootstrap(), sink, len(inputs) + 1, timeout_s=30,
                                    isolation="read_uncommitted")
        assert len(everything) > len(inputs), "the transaction open at the kill wrote nothing"
    print(f"node {killed[0]} killed; {pipeline.transactions} transactions, "
          f"{pipeline.aborted} aborted by the application")


def full_isr_of(cluster, topic: str):
    """Every partition of `topic` led, with all NODES replicas in sync."""
    try:
        metadata = AdminClient({"bootstrap.servers": cluster.bootstrap()}).list_topics(
            topic, timeout=5)
    except Exception:  # noqa: BLE001
        return None
    entry = metadata.topics.get(topic)
    if entry is None or entry.error is not None or not entry.partitions:
        return None
    return all(p.leader >= 0 and len(p.isrs) == NODES for p in entry.partitions.values())
