"""One consumer-group member, run as a subprocess by ci/compat/test_groups.py.

    python group_member.py '<json options>'

The client is confluent-kafka (librdkafka) or kafka-python, picked by `options["client"]`; the
kafkajs twin of this script is ci/node/group.js. Running every member in its own process lets a
test SIGKILL one (so that it cannot send LeaveGroup) and restart a static member with the same
`group.instance.id`.

Everything the member does is written to stdout as JSON lines, one event each, flushed at once:

    {"event": "started"}
    {"event": "assigned", "partitions": [..], "member_id": .., "generation": ..}
    {"event": "revoked", "partitions": [..]}
    {"event": "records", "items": [[partition, offset, seq], ..]}   seq = the record's number
    {"event": "committed", "offsets": {"partition": next offset, ..}}
    {"event": "commit_error", "error": ".."}
    {"event": "stats", "rebalance_cnt": .., "state": .., "join_state": ..}   (confluent only)
    {"event": "done"}      after max_records + uncommitted records were processed
    {"event": "closed"}    after a clean close

Options: client, bootstrap, group, topic, client_id, instance_id (static membership),
session_timeout_ms, heartbeat_interval_ms, max_poll_interval_ms, group_protocol ("consumer":
KIP-848, confluent only; assignments then come incrementally and each "assigned" event carries
the whole set owned), remote_assignor, commit (commit what was
processed after every batch, synchronously), max_records (process this many records, committing
them, then `uncommitted` more without committing, then stop processing and report "done"),
uncommitted, close_when_done, debug (librdkafka debug contexts, e.g. "cgrp", on stderr).

Commands on stdin, one a line: `close` closes the consumer (a dynamic member sends LeaveGroup, a
static one does not) and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

SEQ_DIGITS = 8
POLL_S = 0.2

_output_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    fields["event"] = event
    fields["t"] = time.time()
    line = json.dumps(fields)
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def seq_of(value: bytes | None) -> int:
    try:
        return int(value[:SEQ_DIGITS])
    except (TypeError, ValueError):
        return -1


class Progress:
    """Counts processed records and decides which are processed, and which committed."""

    def __init__(self, options: dict):
        self.max_records = options.get("max_records")
        self.uncommitted = options.get("uncommitted", 0)
        self.commit = options.get("commit", True)
        self.processed = 0
        self.done = False
        self.finish_pending = False  # "done" still to be reported

    def take(self, partition: int, offset: int) -> tuple[bool, bool]:
        """(process this record?, commit it?)"""
        if self.done:
            return False, False
        if self.max_records is None:
            self.processed += 1
            return True, self.commit
        if self.processed >= self.max_records + self.uncommitted:
            self.finish()
            return False, False
        self.processed += 1
        commit = self.commit and self.processed <= self.max_records
        if self.processed >= self.max_records + self.uncommitted:
            self.finish()
        return True, commit

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.finish_pending = True


def watch_stdin(commands: list[str]) -> None:
    for line in sys.stdin:
        commands.append(line.strip())
    commands.append("close")  # the test process went away


def run_confluent(options: dict, progress: Progress, commands: list[str]) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topic = options["topic"]
    last_stats: dict = {}

    def on_stats(text: str) -> None:
        cgrp = json.loads(text).get("cgrp") or {}
        summary = {key: cgrp.get(key) for key in ("rebalance_cnt", "state", "join_state")}
        if summary != last_stats:
            last_stats.clear()
            last_stats.update(summary)
            emit("stats", **summary)

    config = {
        "bootstrap.servers": options["bootstrap"],
        "group.id": options["group"],
        "client.id": options.get("client_id", "spate-ci-group"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": options.get("max_poll_interval_ms", 20000),
        "fetch.wait.max.ms": 100,
        "statistics.interval.ms": 500,
        "stats_cb": on_stats,
    }
    # KIP-848 (group.protocol=consumer): the coordinator assigns and sets the session and
    # heartbeat timing; librdkafka refuses the classic settings then.
    incremental = options.get("group_protocol") == "consumer"
    if incremental:
        config["group.protocol"] = "consumer"
        if options.get("remote_assignor"):
            config["group.remote.assignor"] = options["remote_assignor"]
    else:
        config["session.timeout.ms"] = options.get("session_timeout_ms", 6000)
        config["heartbeat.interval.ms"] = options.get("heartbeat_interval_ms", 1000)
    if options.get("instance_id"):
        config["group.instance.id"] = options["instance_id"]
    if options.get("debug"):
        config["debug"] = options["debug"]  # librdkafka debug contexts, logged to stderr
    consumer = Consumer(config)

    owned: set[int] = set()

    def on_assign(consumer, partitions):
        if incremental:
            # Incremental: only the partitions added; report the whole set owned.
            owned.update(p.partition for p in partitions)
            emit("assigned", partitions=sorted(owned), member_id=consumer.memberid(),
                 generation=None)
        else:
            emit("assigned", partitions=sorted(p.partition for p in partitions),
                 member_id=consumer.memberid(), generation=None)

    def on_revoke(consumer, partitions):
        if incremental:
            owned.difference_update(p.partition for p in partitions)
            emit("assigned", partitions=sorted(owned), member_id=consumer.memberid(),
                 generation=None)
        else:
            emit("revoked", partitions=sorted(p.partition for p in partitions))

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    emit("started")
    while "close" not in commands:
        messages = consumer.consume(num_messages=500, timeout=POLL_S)
        items, to_commit = [], {}
        for message in messages:
            if message.error() is not None:
                emit("consumer_error", error=str(message.error()))
                continue
            process, commit = progress.take(message.partition(), message.offset())
            if not process:
                continue
            items.append([message.partition(), message.offset(), seq_of(message.value())])
            if commit:
                to_commit[message.partition()] = message.offset() + 1
        if items:
            emit("records", items=items)
        if to_commit:
            try:
                consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in to_commit.items()],
                                asynchronous=False)
                emit("committed", offsets={str(p): o for p, o in to_commit.items()})
            except KafkaException as error:
                emit("commit_error", error=str(error), offsets={str(p): o for p, o in to_commit.items()})
        if progress.finish_pending:
            progress.finish_pending = False
            emit("done")
            if options.get("close_when_done"):
                break
    consumer.close()
    emit("closed")


def run_kafka_python(options: dict, progress: Progress, commands: list[str]) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    topic = options["topic"]
    consumer = KafkaConsumer(
        bootstrap_servers=options["bootstrap"],
        group_id=options["group"],
        group_instance_id=options.get("instance_id") or None,
        client_id=options.get("client_id", "spate-ci-group"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=options.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=options.get("heartbeat_interval_ms", 1000),
        max_poll_interval_ms=options.get("max_poll_interval_ms", 20000),
        fetch_max_wait_ms=100,
    )

    def generation():
        current = getattr(consumer._coordinator, "_generation", None)
        return (getattr(current, "generation_id", None), getattr(current, "member_id", None))

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            generation_id, member_id = generation()
            emit("assigned", partitions=sorted(tp.partition for tp in assigned),
                 member_id=member_id, generation=generation_id)

    consumer.subscribe(topics=[topic], listener=Listener())
    emit("started")
    while "close" not in commands:
        batches = consumer.poll(timeout_ms=int(POLL_S * 1000), max_records=500)
        items, to_commit = [], {}
        for tp, records in sorted(batches.items(), key=lambda entry: entry[0].partition):
            for record in records:
                process, commit = progress.take(tp.partition, record.offset)
                if not process:
                    continue
                items.append([tp.partition, record.offset, seq_of(record.value)])
                if commit:
                    to_commit[tp.partition] = record.offset + 1
        if items:
            emit("records", items=items)
        if to_commit:
            try:
                consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                                 for p, o in to_commit.items()})
                emit("committed", offsets={str(p): o for p, o in to_commit.items()})
            except KafkaError as error:
                emit("commit_error", error=repr(error), offsets={str(p): o for p, o in to_commit.items()})
        if progress.finish_pending:
            progress.finish_pending = False
            emit("done")
            if options.get("close_when_done"):
                break
    consumer.close(autocommit=False)
    emit("closed")


def main() -> None:
    options = json.loads(sys.argv[1])
    commands: list[str] = []
    threading.Thread(target=watch_stdin, args=(commands,), daemon=True).start()
    progress = Progress(options)
    runner = {"confluent": run_confluent, "kafka-python": run_kafka_python}[options["client"]]
    try:
        runner(options, progress, commands)
    except BaseException as error:  # report, then die: the test reads the event
        emit("crash", error=repr(error))
        raise
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
