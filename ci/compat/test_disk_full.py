"""A full disk: produce is refused with KAFKA_STORAGE_ERROR, nothing unacknowledged is
claimed, the broker keeps running, and everything it acknowledged stays readable; once space
is back produce works again without a restart; and a broker restarted on a full disk starts
and serves reads.

The data directory is a 48 MiB ext4 file system on a loop device, so the test needs root
and loop devices; where it cannot mount one it is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from confluent_helpers import consume, create_topic

RECORD_BYTES = 1000
RECORDS = 60_000  # 60 MB: more than the file system holds


BALLAST_BYTES = 8 * 1024 * 1024


def fill_until_refused(bootstrap: str, topic: str) -> tuple[list[int], dict[str, int]]:
    """Produces RECORDS records of RECORD_BYTES to partition 0; returns the acknowledged
    offsets and the errors by name."""
    acknowledged: list[int] = []
    errors: dict[str, int] = {}

    def on_delivery(error, message):
        if error is None:
            acknowledged.append(message.offset())
        else:
            errors[error.name()] = errors.get(error.name(), 0) + 1

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
                         "linger.ms": 5, "partitioner": "consistent"})
    for index in range(RECORDS):
        producer.produce(topic, value=b"x" * RECORD_BYTES, partition=0, on_delivery=on_delivery)
        if index % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return acknowledged, errors


def produce_once(bootstrap: str, topic: str) -> tuple[int | None, str | None]:
    """One acks=all record; its offset, or the error's name."""
    outcome: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
                         "message.timeout.ms": 10_000})
    producer.produce(topic, value=b"after", partition=0,
                     on_delivery=lambda error, message: outcome.append((error, message)))
    producer.flush(15)
    assert outcome, "no delivery report"
    error, message = outcome[0]
    return (None, error.name()) if error else (message.offset(), None)


@pytest.mark.broker_args("--offsets-topic-partitions", "1")
def test_full_disk_refuses_produce_heals_when_space_returns_and_restarts_full(broker):
    broker.stop()
    # The image's blocks are reserved on the host up front: a sparse image on a host disk
    # that is itself nearly full fails the loop device's writes with ENOSPC from the first
    # byte (a CI run once saw exactly that: nothing acknowledged), which is the host's
    # shortage, not the small file system's.
    image = broker.data_dir.parent / "small.img"
    reserved = subprocess.run(["fallocate", "-l", "48M", str(image)], capture_output=True, text=True)
    if reserved.returncode != 0:
        pytest.skip(f"cannot reserve 48 MiB for the image on the host: {reserved.stderr.strip()}")
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    shutil.rmtree(broker.data_dir)
    broker.data_dir.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(broker.data_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        image.unlink()
        pytest.skip(f"cannot loop-mount a small file system here: {mounted.stderr.strip()}")
    try:
        # Space to give back later, so that the broker can be seen to heal without a restart.
        ballast = broker.data_dir / "ballast"
        ballast.write_bytes(b"\0" * BALLAST_BYTES)
        broker.start()
        create_topic(broker.bootstrap, "fill", 1)
        acknowledged, errors = fill_until_refused(broker.bootstrap, "fill")
        assert acknowledged, "nothing was acknowledged before the disk filled"
        assert set(errors) == {"KAFKA_STORAGE_ERROR"}, errors
        broker.assert_alive("after the disk filled")
        records = consume(broker.bootstrap, "fill", [0], expected_count=len(acknowledged))
        offsets = [record.offset for record in records]
        # Everything acknowledged is there, once. (Records whose write reached the disk before
        # a later write of the same flush failed may be there too: the log reopens during the
        # fill and recovers them, as Kafka may keep a record whose produce failed.)
        assert set(acknowledged) <= set(offsets)
        assert len(offsets) == len(set(offsets)), "a record was read twice"
        # An offset commit on the full disk is refused or taken, never fatal.
        committer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "full-disk",
                              "enable.auto.commit": False})
        try:
            committer.commit(offsets=[TopicPartition("fill", 0, 1)], asynchronous=False)
        except KafkaException:
            pass
        finally:
            committer.close()
        broker.assert_alive("after an offset commit on a full disk")
        # One log line per refused request, not per record.
        assert broker.stderr_tail(lines=100_000).count("disk full: produce refused") < 1000

        # Space comes back: produce works again, without a restart, once the partition has
        # reopened its log (at most a second after the next request).
        ballast.unlink()
        deadline = time.monotonic() + 20
        while True:
            offset, error = produce_once(broker.bootstrap, "fill")
            if offset is not None or time.monotonic() > deadline:
                break
            assert error == "KAFKA_STORAGE_ERROR", error
        assert offset is not None, f"produce still refused 20 s after space came back: {error}"
        assert offset > max(acknowledged)
        acknowledged.append(offset)
        records = consume(broker.bootstrap, "fill", [0], expected_count=len(acknowledged))
        offsets = [record.offset for record in records]
        assert set(acknowledged) <= set(offsets), "an acknowledged record is missing after healing"

        # Full again, then a restart on the full disk: the broker starts and serves reads.
        more, errors = fill_until_refused(broker.bootstrap, "fill")
        assert set(errors) <= {"KAFKA_STORAGE_ERROR"}, errors
        acknowledged += more
        broker.stop()
        broker.start()
        records = consume(broker.bootstrap, "fill", [0], expected_count=len(acknowledged))
        offsets = [record.offset for record in records]
        assert set(acknowledged) <= set(offsets), "an acknowledged record is missing after the restart"
        assert len(offsets) == len(set(offsets)), "a record was read twice"
        broker.assert_alive("after a restart on a full disk")
    finally:
        broker.stop()
        subprocess.run(["umount", str(broker.data_dir)], check=False)
        image.unlink(missing_ok=True)
