"""Burrow (LinkedIn's consumer lag monitor; Debian's burrow 1.2.1) against Spate.

Burrow reads the groups' commits by consuming `__consumer_offsets` itself and decoding Kafka's
record schemas, and the partitions' ends with ListOffsets v0 (which Kafka 4 dropped and Spate
still serves for it). It keeps its own state in ZooKeeper, so the test runs a real one
(Debian's zookeeper) beside the broker.

A group commits offsets 3 on a two-partition topic holding 10 and 4 records: Burrow reports
lags 7 and 1 (8 in all); once the group commits the ends, 0.

Without Burrow or ZooKeeper the test is skipped, unless SPATE_REQUIRE_ALL_CLIENTS=1
(ci/test.sh sets it, and installs both) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SPATE_BIN, pick_base_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
WAIT_S = 60


def require(what: str) -> None:
    message = f"{what} is missing (ci/test.sh installs Debian's burrow and zookeeper)"
    if os.environ.get("SPATE_REQUIRE_ALL_CLIENTS") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} never opened:\n{log.read_text(errors='replace')[-3000:]}")


def four_letter_word(port: int, word: bytes) -> bytes:
    """ZooKeeper's answer to a four-letter command (empty if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(word)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return answer
    except OSError:
        return b""


def spate(bootstrap: str, *args: str, stdin: str | None = None) -> None:
    subprocess.run([str(SPATE_BIN), *args, "--brokers", bootstrap], input=stdin, text=True,
                   capture_output=True, timeout=60, check=True)


@pytest.fixture
def zookeeper(tmp_path):
    java = shutil.which("java")
    if java is None or not ZOOKEEPER_JAR.exists():
        require("ZooKeeper (java and /usr/share/java/zookeeper.jar)")
    port = pick_base_port(1)
    data = tmp_path / "zk-data"
    data.mkdir()
    config = tmp_path / "zoo.cfg"
    config.write_text(f"tickTime=2000\ndataDir={data}\nclientPort={port}\n"
                      "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                      "4lw.commands.whitelist=srvr\n")
    log = tmp_path / "zookeeper.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [java, "-cp", f"/etc/zookeeper/conf:{ZOOKEEPER_JAR}",
             "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log)
        # The port opens before the server takes sessions (Burrow gives up on a refused
        # one): wait until `srvr` reports a mode.
        deadline = time.monotonic() + WAIT_S
        while b"Mode:" not in four_letter_word(port, b"srvr"):
            assert process.poll() is None and time.monotonic() < deadline, \
                log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


def lag_report(http_port: int, group: str) -> dict | None:
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{http_port}/v3/kafka/spate/consumer/{group}/lag",
                timeout=5) as response:
            report = json.load(response)
    except OSError:
        return None
    return None if report.get("error") else report["status"]


def lags(status: dict | None) -> dict[int, int] | None:
    if status is None:
        return None
    return {p["partition"]: p["current_lag"] for p in status["partitions"]}


def test_burrow_reports_the_lag_of_a_group_from_its_commits(broker, unique_topic, zookeeper,
                                                             tmp_path):
    burrow = shutil.which("Burrow")
    if burrow is None:
        require("Burrow")
    topic, group = unique_topic(), unique_topic("watchers")
    spate(broker.bootstrap, "topic", "create", topic, "--partitions", "2")
    spate(broker.bootstrap, "produce", topic, "--partition", "0",
          stdin="".join(f"a{i}\n" for i in range(10)))
    spate(broker.bootstrap, "produce", topic, "--partition", "1",
          stdin="".join(f"b{i}\n" for i in range(4)))
    spate(broker.bootstrap, "group", "reset-offsets", group, "--topic", topic,
          "--to-offset", "3", "--execute")

    http_port = pick_base_port(1)
    config_dir = tmp_path / "burrow"
    config_dir.mkdir()
    servers = json.dumps([broker.bootstrap])
    (config_dir / "burrow.toml").write_text(f"""
[general]
pidfile="{config_dir}/burrow.pid"

[logging]
level="info"

[zookeeper]
servers=["127.0.0.1:{zookeeper}"]
timeout=6
root-path="/burrow"

[client-profile.spate]
client-id="burrow"
kafka-version="2.0.0"

[cluster.spate]
class-name="kafka"
servers={servers}
client-profile="spate"
topic-refresh=5
offset-refresh=1

[consumer.spate]
class-name="kafka"
cluster="spate"
servers={servers}
client-profile="spate"
start-latest=false

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=4
intervals=10
expire-group=604800
min-distance=1
""")
    log = tmp_path / "burrow.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([burrow, "--config-dir", str(config_dir)],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(http_port, process, log)
        deadline = time.monotonic() + WAIT_S
        while lags(lag_report(http_port, group)) != {0: 7, 1: 1}:
            assert time.monotonic() < deadline, (
                f"Burrow reports {lag_report(http_port, group)}\n"
                f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        assert lag_report(http_port, group)["totallag"] == 8
        # Caught up: the group commits the ends, and Burrow sees no lag.
        spate(broker.bootstrap, "group", "reset-offsets", group, "--topic", topic,
              "--to-latest", "--execute")
        while lags(lag_report(http_port, group)) != {0: 0, 1: 0}:
            assert time.monotonic() < deadline, f"Burrow reports {lag_report(http_port, group)}"
            time.sleep(0.5)
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if '"level":"error"' in line]
        assert not errors, errors[:5]
    finally:
        process.kill()
        process.wait(timeout=10)
