"""Sarama, the Go client (Debian's golang-github-shopify-sarama-dev 1.22, built offline in
GOPATH mode from ci/go/sarama_client.go): the cluster admin creates a topic, an idempotent
acks=all producer writes keyed records, and a two-member consumer group splits the topic and
reads every acknowledged record once.

Committed offsets are not part of it: Sarama 1.22 commits with OffsetCommit v1, which Kafka 4
removed (KIP-896) and Spate does not serve either.

Without Go or Sarama's sources the test is skipped, unless SPATE_REQUIRE_ALL_CLIENTS=1
(ci/test.sh sets it, and installs both) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "go" / "sarama_client.go"
GOPATH = Path("/usr/share/gocode")
RECORDS = 3000


@pytest.fixture(scope="module")
def sarama_client(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/github.com/Shopify/sarama").is_dir():
        message = "go or Debian's golang-github-shopify-sarama-dev is missing (ci/test.sh installs them)"
        if os.environ.get("SPATE_REQUIRE_ALL_CLIENTS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("sarama")
    binary = out / "sarama_client"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH),
           "GOCACHE": str(out / "cache"), "GOFLAGS": ""}
    build = subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"go build failed:\n{build.stderr[-4000:]}"
    return binary


def test_sarama_idempotent_producer_and_a_group_that_splits_the_topic(
        broker, unique_topic, sarama_client):
    topic, group = unique_topic(), unique_topic("group")
    run = subprocess.run([str(sarama_client), broker.bootstrap, topic, group, str(RECORDS)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"sarama failed:\n{run.stderr[-4000:]}"
    result = json.loads(run.stdout)
    acked = sorted((a["partition"], a["offset"]) for a in result["acked"])
    assert len(acked) == RECORDS and len(set(acked)) == RECORDS, "each record at its own offset"
    for partition in range(3):
        offsets = [o for p, o in acked if p == partition]
        assert offsets == list(range(len(offsets))), f"partition {partition} has no gaps"
    consumed = sorted((r["partition"], r["offset"]) for m in result["members"] for r in m["records"])
    assert consumed == acked, "each acknowledged record read once"
    partitions = [set(m["partitions"]) for m in result["members"]]
    assert all(partitions) and not partitions[0] & partitions[1], partitions
