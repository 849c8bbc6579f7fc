"""A full disk: produce is refused with KAFKA_STORAGE_ERROR, nothing unacknowledged is
claimed, the broker keeps running, and everything it acknowledged stays readable.

The data directory is a 48 MiB ext4 file system on a loop device, so the test needs root
and loop devices; where it cannot mount one it is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from confluent_kafka import Producer

from confluent_helpers import consume, create_topic

RECORD_BYTES = 1000
RECORDS = 60_000  # 60 MB: more than the file system holds


@pytest.mark.broker_args("--offsets-topic-partitions", "1")
def test_full_disk_refuses_produce_and_keeps_serving_reads(broker, tmp_path):
    broker.stop()
    image = tmp_path / "small.img"
    subprocess.run(["truncate", "-s", "48M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    shutil.rmtree(broker.data_dir)
    broker.data_dir.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(broker.data_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount a small file system here: {mounted.stderr.strip()}")
    try:
        broker.start()
        create_topic(broker.bootstrap, "fill", 1)
        acknowledged: list[int] = []
        errors: dict[str, int] = {}

        def on_delivery(error, message):
            if error is None:
                acknowledged.append(message.offset())
            else:
                errors[error.name()] = errors.get(error.name(), 0) + 1

        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0,
                             "linger.ms": 5, "partitioner": "consistent"})
        for index in range(RECORDS):
            producer.produce("fill", value=b"x" * RECORD_BYTES, partition=0, on_delivery=on_delivery)
            if index % 1000 == 0:
                producer.poll(0)
        producer.flush(60)

        assert acknowledged, "nothing was acknowledged before the disk filled"
        assert set(errors) == {"KAFKA_STORAGE_ERROR"}, errors
        broker.assert_alive("after the disk filled")
        records = consume(broker.bootstrap, "fill", [0], expected_count=len(acknowledged))
        assert sorted(record.offset for record in records) == sorted(acknowledged)
        # One log line per refused request, not per record.
        assert broker.stderr_tail(lines=100_000).count("disk full: produce refused") < 1000
    finally:
        broker.stop()
        subprocess.run(["umount", str(broker.data_dir)], check=False)
