"""kafkajs 2.2.4 (Node.js), driven through the scripts in ci/node/.

kafkajs has no group-less consumer, so to keep this file about producing, every record
kafkajs produces is read back with confluent-kafka assign() and checked against the
(partition, offset) that kafkajs's produce responses imply. kafkajs consumer groups are
tested in test_groups.py.

Codecs: none and gzip are built in; snappy comes from kafkajs-snappy (pure JavaScript) and lz4
from kafkajs-lz4 (an optional dependency with a native build; skipped if it did not install).
zstd is not tested with kafkajs: @kafkajs/zstd needs cppzst, whose native build fails on Node 20.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from confluent_helpers import consume
from records import make_records, verify

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
RECORD_COUNT = 100_000
PARTITIONS = 6
CODECS = ["none", "gzip", "snappy", "lz4"]
SCRIPT_TIMEOUT_S = 180

pytestmark = pytest.mark.skipif(
    NODE is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
    reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)")


def run_script(script: str, options: dict, timeout_s: float = SCRIPT_TIMEOUT_S):
    command = [NODE, str(NODE_DIR / script), json.dumps(options)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                cwd=NODE_DIR, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"node {script} did not finish within {timeout_s} s; stderr tail: "
                             f"{(expired.stderr or b'')[-3000:]!r}")
    if result.returncode != 0:
        raise AssertionError(f"node {script} exited {result.returncode}\n"
                             f"stderr: {result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def admin(broker, *steps):
    return run_script("admin.js", {"brokers": [broker.bootstrap], "steps": list(steps)}, timeout_s=90)


def lz4_available() -> bool:
    return (NODE_DIR / "node_modules" / "kafkajs-lz4").is_dir() and subprocess.run(
        [NODE, "-e", "require('kafkajs-lz4')"], cwd=NODE_DIR, capture_output=True).returncode == 0


def produce_and_verify(broker, tmp_path, topic, count, codec, idempotent=False,
                       bootstrap=None, client_options=None, partitions=PARTITIONS):
    """kafkajs produces `count` records to `topic` (through `bootstrap`, with `client_options`
    such as ssl and sasl, when given); confluent-kafka reads them back over the broker's
    PLAINTEXT port and checks them against the offsets kafkajs was told."""
    records = make_records(count, f"kafkajs-{codec}{'-idem' if idempotent else ''}")
    input_path = tmp_path / "records.jsonl"
    output_path = tmp_path / "delivered.jsonl"
    input_path.write_text("".join(
        json.dumps({"key": r.key, "value": r.value, "headers": list(r.headers)}) + "\n"
        for r in records))
    summary = run_script("produce.js", {
        "brokers": [bootstrap or broker.bootstrap], "topic": topic, "inputPath": str(input_path),
        "outputPath": str(output_path), "codec": codec, "idempotent": idempotent,
        **(client_options or {}),
    })
    assert summary["produced"] == count, summary
    delivered = {}
    for line in output_path.read_text().splitlines():
        value, partition, offset = json.loads(line)
        delivered[value] = (partition, offset)
    consumed = consume(broker.bootstrap, topic, list(range(partitions)), expected_count=count)
    verify(consumed, records, f"kafkajs {codec}{' idempotent' if idempotent else ''}: "
           f"{count} records through {topic}", delivered=delivered, partition_count=partitions)


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(broker, unique_topic, tmp_path, codec):
    if codec == "lz4" and not lz4_available():
        pytest.skip("kafkajs-lz4 (optional dependency) did not install")
    topic = unique_topic(codec)
    assert admin(broker, {"op": "create", "topics": [[topic, PARTITIONS]]}) == [True]
    produce_and_verify(broker, tmp_path, topic, RECORD_COUNT, codec)


def test_idempotent_producer(broker, unique_topic, tmp_path):
    topic = unique_topic()
    assert admin(broker, {"op": "create", "topics": [[topic, PARTITIONS]]}) == [True]
    produce_and_verify(broker, tmp_path, topic, 30_000, "gzip", idempotent=True)


def test_admin_create_list_delete_topics(broker, unique_topic):
    first, second = unique_topic("a"), unique_topic("b")
    created, again, listed, described = admin(
        broker,
        {"op": "create", "topics": [[first, 3], [second, 5]]},
        {"op": "create", "topics": [[first, 3]]},
        {"op": "list"},
        {"op": "metadata", "topics": [first, second]},
    )
    assert created is True, f"createTopics returned {created}"
    assert again is False, f"createTopics of an existing topic returned {again}, expected false"
    assert {first, second} <= set(listed), listed
    partition_counts = {topic["name"]: len(topic["partitions"]) for topic in described}
    assert partition_counts == {first: 3, second: 5}, described
    assert all(p["leader"] >= 0 and p["error"] == 0 for t in described for p in t["partitions"]), described

    deleted, listed_after = admin(broker, {"op": "delete", "topics": [first]}, {"op": "list"})
    assert deleted is True
    if first in listed_after:
        # Deletion may take a moment to show in Metadata; give it one more look.
        listed_after = admin(broker, {"op": "list"})[0]
    assert first not in listed_after and second in listed_after, listed_after
