"""kafka-python 3 (idempotent by default, protocol versions negotiated from ApiVersions): a
user's produce, a two-member group that splits the topic and commits, a later member that
finds nothing left, and describe_log_dirs reporting each partition's bytes on disk.

kafka-python 3 and the 2.x of ci/requirements.txt are the same `kafka` package, so 3.x lives
in its own virtualenv (ci/.venv-kafka-python3, made by ci/test.sh from
ci/requirements-kafka-python3.txt) and runs as a subprocess: kafka_python3_client.py.
SPATE_KAFKA_PYTHON3 names another interpreter; without one the test is skipped, unless
SPATE_REQUIRE_ALL_CLIENTS=1 (ci/test.sh sets it) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON = Path(os.environ.get("SPATE_KAFKA_PYTHON3",
                             HERE.parent / ".venv-kafka-python3" / "bin" / "python"))
RECORDS = 3000


@pytest.fixture
def kafka_python3():
    if not PYTHON.is_file():
        message = f"kafka-python 3's interpreter {PYTHON} is missing (ci/test.sh makes it)"
        if os.environ.get("SPATE_REQUIRE_ALL_CLIENTS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return PYTHON


def test_kafka_python3_produces_idempotently_splits_a_group_and_sizes_log_dirs(
        broker, unique_topic, kafka_python3):
    topic, group = unique_topic(), unique_topic("group")
    run = subprocess.run(
        [str(kafka_python3), str(HERE / "kafka_python3_client.py"), broker.bootstrap, topic,
         group, str(RECORDS)],
        capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"kafka-python 3 failed:\n{run.stderr[-4000:]}"
    result = json.loads(run.stdout)

    assert result["idempotent"] is True, "kafka-python 3 is idempotent by default"
    assert result["acks"] == -1
    acked = {tuple(pair) for pair in result["acked"]}
    assert len(acked) == RECORDS, "every record acknowledged at its own offset"

    members = result["members"]
    assert len(members) == 2
    consumed = [(p, o) for member in members.values() for (p, o, _) in member["records"]]
    assert sorted(consumed) == sorted(acked), "each acknowledged record read once"
    partitions = [set(member["partitions"]) for member in members.values()]
    assert all(partitions), f"both members got partitions: {partitions}"
    assert not partitions[0] & partitions[1], f"the group split the topic: {partitions}"
    assert result["leftover"] == 0, "a later member resumes from the committed offsets"

    sizes: dict[int, int] = {}
    for broker_dirs in result["log_dirs"]:
        for log_dir in broker_dirs["log_dirs"]:
            assert log_dir["error_code"] == 0
            for entry in log_dir["topics"]:
                if entry["name"] == topic:
                    for partition in entry["partitions"]:
                        sizes[partition["partition_index"]] = partition["partition_size"]
    assert sorted(sizes) == [0, 1, 2], f"every partition reported once: {sizes}"
    assert all(size > 0 for size in sizes.values()), f"sizes on disk: {sizes}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
