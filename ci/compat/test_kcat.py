"""kcat (librdkafka's command-line client): metadata, and produce/consume with every codec.

kcat attaches the same `-H` headers to every record of a run, so the per-record check compares
against those run headers. Records are produced from a generated file (`-l`) as `key:value`
lines (`-K:`) and the topic is auto-created with the broker's default partition count.
Each partition is read back separately with `-C -p P -o beginning -e` (no consumer group).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from records import Consumed, make_records, verify

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
RECORD_COUNT = 100_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Fields are separated by '|' and end with a marker, so that an empty header list parses.
CONSUME_FORMAT = "%p|%o|%k|%s|%h|END\n"

pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (ci/test.sh installs it)")


def kcat(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    command = [KCAT, *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) \
            else (expired.stderr or "")
        raise AssertionError(f"{' '.join(command)} did not finish within {timeout_s} s\n"
                             f"stderr: {stderr[-3000:]}") from None
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n"
                             f"stderr: {result.stderr[-3000:]}")
    return result


def metadata(bootstrap: str, topic: str | None = None) -> dict:
    args = ["-b", bootstrap, "-L", "-J", "-m", "15"]
    if topic:
        args += ["-t", topic]
    return json.loads(kcat(*args).stdout)


def test_metadata_lists_one_broker_per_shard(broker, unique_topic):
    topic = unique_topic()
    # Asking for a topic auto-creates it with the default partition count.
    listing = metadata(broker.bootstrap, topic)
    brokers = sorted((entry["id"], entry["name"]) for entry in listing["brokers"])
    assert len(brokers) == broker.shard_count, f"expected one broker per shard, got {brokers}"
    advertised_ports = sorted(int(name.rsplit(":", 1)[1]) for _, name in brokers)
    assert advertised_ports == broker.ports, f"advertised {brokers}, shards listen on {broker.ports}"
    assert all(name.startswith("127.0.0.1:") for _, name in brokers), brokers

    described = None
    for _ in range(20):
        described = next((t for t in metadata(broker.bootstrap, topic)["topics"]
                          if t["topic"] == topic), None)
        if described and not described.get("error") and \
                len(described["partitions"]) == broker.default_partitions:
            break
    assert described and len(described["partitions"]) == broker.default_partitions, \
        f"auto-created topic metadata: {described}"
    leaders = {partition["leader"] for partition in described["partitions"]}
    broker_ids = {broker_id for broker_id, _ in brokers}
    assert leaders <= broker_ids, f"partition leaders {leaders} not among brokers {broker_ids}"
    assert len(leaders) == broker.shard_count, \
        f"partitions should be spread over all shards; leaders {leaders}"


def parse_consumed(stdout: str) -> list[Consumed]:
    consumed = []
    for line in stdout.splitlines():
        if not line:
            continue
        partition, offset, key, value, headers, end = line.split("|")
        assert end == "END", f"unparsable kcat line {line!r}"
        header_pairs = tuple(tuple(item.split("=", 1)) for item in headers.split(",") if item)
        consumed.append(Consumed(int(partition), int(offset), key, value, header_pairs))
    return consumed


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(broker, unique_topic, tmp_path, codec):
    topic = unique_topic(codec)
    records = make_records(RECORD_COUNT, f"kcat-{codec}", with_headers=False)
    run_headers = (("client", "kcat"), ("codec", codec))
    input_path = tmp_path / "records.txt"
    input_path.write_text("".join(f"{r.key}:{r.value}\n" for r in records))

    header_args = [arg for name, value in run_headers for arg in ("-H", f"{name}={value}")]
    produced = kcat("-P", "-b", broker.bootstrap, "-t", topic, "-K:", *header_args,
                    "-X", f"compression.codec={codec}", "-X", "acks=all", "-X", "linger.ms=20",
                    "-X", "message.timeout.ms=60000", "-l", str(input_path), timeout_s=120)
    # kcat's exit code has not always reflected failed deliveries, so read its stderr too.
    assert "Delivery failed" not in produced.stderr, produced.stderr[-3000:]

    consumed: list[Consumed] = []
    for partition in range(broker.default_partitions):
        result = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", str(partition),
                      "-o", "beginning", "-e", "-q", "-f", CONSUME_FORMAT, timeout_s=60)
        consumed.extend(parse_consumed(result.stdout))

    verify(consumed, records, f"kcat {codec}: {RECORD_COUNT} records through {topic}",
           expected_headers=lambda record: run_headers,
           partition_count=broker.default_partitions)
    used = {item.partition for item in consumed}
    assert len(used) > 1, f"all records landed in partitions {used}; keys should spread them"
