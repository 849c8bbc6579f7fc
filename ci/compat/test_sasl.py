"""SASL on a SASL_PLAINTEXT listener (issue 18): real clients authenticate with SCRAM-SHA-256,
SCRAM-SHA-512 and PLAIN against users made with `spate user add`, online and offline; wrong
credentials, and anything sent before authenticating, are refused without serving a byte.

Each broker here has two listeners: PLAINTEXT on its usual ports (where the harness and the
CLI talk to it) and SASL_PLAINTEXT on other ports. Clients bootstrapped from the SASL port must
be told the SASL ports of every broker, never the plaintext ones.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

import kafka_wire
from conftest import SPATE_BIN, Broker, make_broker, pick_base_port
from confluent_helpers import consume, create_topic, produce
from records import first_values, make_records, verify

PASSWORD = "alice-secret-\u00e9"
MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


class SaslBroker(Broker):
    """A broker with a PLAINTEXT and a SASL_PLAINTEXT listener (or only the SASL one)."""

    def __init__(self, workdir, sasl_only: bool = False, **options):
        super().__init__(workdir, **options)
        self.sasl_only = sasl_only
        while True:
            self.sasl_base_port = pick_base_port(self.shard_count)
            if abs(self.sasl_base_port - self.base_port) >= self.shard_count:
                break

    @property
    def sasl_ports(self) -> list[int]:
        return [self.sasl_base_port + shard for shard in range(self.shard_count)]

    @property
    def ports(self) -> list[int]:
        plaintext = [] if self.sasl_only else [self.base_port + s for s in range(self.shard_count)]
        return plaintext + self.sasl_ports

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_base_port}"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--listen")
        sasl = f"SASL_PLAINTEXT://{self.sasl_bootstrap}"
        listeners = sasl if self.sasl_only else f"PLAINTEXT://{self.bootstrap},{sasl}"
        command[at:at + 2] = ["--listeners", listeners,
                              "--sasl-mechanisms", ",".join(MECHANISMS)]
        return command


def spate(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SPATE_BIN), *args], capture_output=True, text=True, timeout=60,
                            env=Broker.environment())
    if check:
        assert result.returncode == 0, f"spate {' '.join(args)} failed: {result.stderr}"
    return result


def add_alice(bootstrap: str) -> None:
    spate("user", "add", "alice", "--password", PASSWORD, "--mechanism", "SCRAM-SHA-256",
          "--mechanism", "SCRAM-SHA-512", "--brokers", bootstrap)


@pytest.fixture
def sasl_broker(request, spate_bin, ci_tmp):
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=SaslBroker)


def sasl_config(mechanism: str, user: str = "alice", password: str = PASSWORD) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_clients_authenticate_and_are_sent_to_sasl_ports(sasl_broker, unique_topic,
                                                                   mechanism):
    add_alice(sasl_broker.bootstrap)
    topic = unique_topic(mechanism.lower())
    create_topic(sasl_broker.bootstrap, topic, 4)
    config = sasl_config(mechanism)
    admin = AdminClient({"bootstrap.servers": sasl_broker.sasl_bootstrap, **config})
    advertised = {broker.port for broker in admin.list_topics(timeout=20).brokers.values()}
    assert advertised == set(sasl_broker.sasl_ports), \
        f"clients of the SASL listener were told ports {advertised}"
    records = make_records(2000, f"sasl-{mechanism}")
    delivered, errors = produce(sasl_broker.sasl_bootstrap, topic, records, config)
    assert not errors, errors[:5]
    consumed = consume(sasl_broker.sasl_bootstrap, topic, list(range(4)),
                       expected_count=len(records), config=config)
    verify(consumed, records, f"{mechanism}: 2000 records over SASL_PLAINTEXT",
           delivered=delivered, partition_count=4)


def authentication_error(bootstrap: str, config: dict) -> KafkaError:
    """The error a client reports when the broker refuses its credentials."""
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "error_cb": errors.append, **config})
    # librdkafka connects to the bootstrap server at once and reports the refusal through
    # error_cb; a request (which could only time out) is not needed to see it.
    deadline = time.monotonic() + 10
    while not any(error.code() == KafkaError._AUTHENTICATION for error in errors):
        assert time.monotonic() < deadline, f"expected an authentication error, got {errors}"
        admin.poll(0.1)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=0.5)
    return next(error for error in errors if error.code() == KafkaError._AUTHENTICATION)


def test_wrong_credentials_are_refused(sasl_broker):
    add_alice(sasl_broker.bootstrap)
    for mechanism in MECHANISMS:
        authentication_error(sasl_broker.sasl_bootstrap, sasl_config(mechanism, password="wrong"))
        error = authentication_error(sasl_broker.sasl_bootstrap,
                                     sasl_config(mechanism, user="mallory"))
        # An unknown user is told no more than a wrong password.
        assert "mallory" not in error.str()
    # A mechanism the listener does not offer.
    offered = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
               "sasl.oauthbearer.config": "principal=alice", "enable.sasl.oauthbearer.unsecure.jwt": True}
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": sasl_broker.sasl_bootstrap,
                         "error_cb": errors.append, **offered})
    deadline = time.monotonic() + 10
    while not any("OAUTHBEARER" in error.str() or error.code() == KafkaError._AUTHENTICATION
                  for error in errors):
        assert time.monotonic() < deadline, f"expected the mechanism refused, got {errors}"
        admin.poll(0.1)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=0.5)
    sasl_broker.assert_alive()


def test_kafka_python_authenticates_with_scram_and_plain(sasl_broker, unique_topic):
    kafka = pytest.importorskip("kafka")
    add_alice(sasl_broker.bootstrap)
    topic = unique_topic("kp")
    create_topic(sasl_broker.bootstrap, topic, 1)
    for mechanism in MECHANISMS:
        producer = kafka.KafkaProducer(
            bootstrap_servers=sasl_broker.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism, sasl_plain_username="alice", sasl_plain_password=PASSWORD,
            acks="all", request_timeout_ms=20000)
        producer.send(topic, mechanism.encode()).get(timeout=30)
        producer.close()
    consumer = kafka.KafkaConsumer(
        topic, bootstrap_servers=sasl_broker.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
        sasl_plain_password=PASSWORD, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    values = first_values(consumer, len(MECHANISMS))
    consumer.close()
    assert values == MECHANISMS


def request_frame(api_key: int, version: int, body: bytes, correlation_id: int = 7) -> bytes:
    return kafka_wire.frame(kafka_wire.request_header_v1(api_key, version, correlation_id,
                                                         "sasl-test") + body)


def test_nothing_is_served_before_authentication(sasl_broker, unique_topic):
    port = sasl_broker.sasl_ports[0]
    # ApiVersions is answered, and offers the SASL APIs.
    with kafka_wire.connect(port) as sock:
        sock.sendall(kafka_wire.api_versions_request(0, 1))
        _, error, apis = kafka_wire.parse_api_versions_v0(kafka_wire.read_frame(sock))
        assert error == 0 and apis[17] == (0, 1) and apis[36][1] >= 1
    # Metadata (which would create topics) closes the connection unanswered.
    topic = unique_topic("anon")
    name = topic.encode()
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    with kafka_wire.connect(port) as sock:
        sock.sendall(request_frame(3, 1, body))
        closed, answered = kafka_wire.closed_by_peer(sock)
        assert closed and not answered
    # So does a large Produce: nothing of it is read into a log, and no more than the
    # unauthenticated frame limit is accepted.
    with kafka_wire.connect(port) as sock:
        sock.sendall(struct.pack(">i", 8 * 1024 * 1024) + kafka_wire.request_header_v1(0, 7, 1, "x"))
        closed, answered = kafka_wire.closed_by_peer(sock)
        assert closed and not answered
    # SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE, then nothing more is served.
    with kafka_wire.connect(port) as sock:
        sock.sendall(request_frame(36, 1, struct.pack(">i", 3) + b"abc"))
        response = kafka_wire.read_frame(sock)
        assert struct.unpack(">h", response[4:6])[0] == 34
        sock.sendall(kafka_wire.api_versions_request(0, 2))
        closed, _ = kafka_wire.closed_by_peer(sock)
        assert closed
    # Garbage SCRAM messages fail authentication and close.
    with kafka_wire.connect(port) as sock:
        mechanism = b"SCRAM-SHA-512"
        sock.sendall(request_frame(17, 1, struct.pack(">h", len(mechanism)) + mechanism))
        assert struct.unpack(">h", kafka_wire.read_frame(sock)[4:6])[0] == 0
        garbage = bytes(range(256)) * 4
        sock.sendall(request_frame(36, 1, struct.pack(">i", len(garbage)) + garbage))
        assert struct.unpack(">h", kafka_wire.read_frame(sock)[4:6])[0] == 58
        sock.sendall(request_frame(3, 1, body))
        closed, _ = kafka_wire.closed_by_peer(sock)
        assert closed
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap})
    assert topic not in admin.list_topics(timeout=10).topics
    sasl_broker.assert_alive()


def test_users_are_listed_removed_and_survive_a_restart(sasl_broker, unique_topic):
    add_alice(sasl_broker.bootstrap)
    spate("user", "add", "bob", "--password", "bob-secret", "--brokers", sasl_broker.bootstrap)
    listed = json.loads(spate("user", "list", "--json", "--brokers", sasl_broker.bootstrap).stdout)
    assert {(row["user"], row["mechanism"]) for row in listed} == {
        ("alice", "SCRAM-SHA-256"), ("alice", "SCRAM-SHA-512"), ("bob", "SCRAM-SHA-512")}
    assert all(row["iterations"] == 4096 for row in listed)
    refused = spate("user", "add", "carol", "--password", "x", "--iterations", "100",
                    "--brokers", sasl_broker.bootstrap, check=False)
    assert refused.returncode != 0
    sasl_broker.restart()
    topic = unique_topic("restart")
    create_topic(sasl_broker.bootstrap, topic, 1)
    delivered, errors = produce(sasl_broker.sasl_bootstrap, topic, make_records(10, "r"),
                                sasl_config("SCRAM-SHA-512", "bob", "bob-secret"))
    assert not errors and len(delivered) == 10
    spate("user", "remove", "bob", "--brokers", sasl_broker.bootstrap)
    authentication_error(sasl_broker.sasl_bootstrap, sasl_config("SCRAM-SHA-512", "bob", "bob-secret"))
    missing = spate("user", "remove", "bob", "--brokers", sasl_broker.bootstrap, check=False)
    assert missing.returncode != 0 and "no credentials" in missing.stderr


def test_the_first_user_is_added_offline_to_a_sasl_only_broker(request, spate_bin, ci_tmp,
                                                                unique_topic):
    def add_offline(broker):
        spate("user", "add", "admin", "--password", "admin-secret", "--mechanism", "SCRAM-SHA-256",
              "--data-dir", str(broker.data_dir))
        listed = json.loads(spate("user", "list", "--json", "--data-dir",
                                  str(broker.data_dir)).stdout)
        assert [row["user"] for row in listed] == ["admin"]

    for broker in make_broker(request, spate_bin, ci_tmp, broker_class=SaslBroker,
                              before_start=add_offline, sasl_only=True):
        config = sasl_config("SCRAM-SHA-256", "admin", "admin-secret")
        topic = unique_topic("offline")
        records = make_records(100, "offline")
        delivered, errors = produce(broker.sasl_bootstrap, topic, records, config)
        assert not errors and len(delivered) == 100
        consumed = consume(broker.sasl_bootstrap, topic, list(range(broker.default_partitions)),
                           expected_count=100, config=config)
        verify(consumed, records, "SASL-only broker", delivered=delivered,
               partition_count=broker.default_partitions)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", broker.base_port), timeout=1).close()
        # A data directory made by `spate user add` is a node that never ran, not one that
        # crashed: its first start warns of no unclean shutdown.
        assert "did not stop cleanly" not in broker.stderr_path.read_text(errors="replace")
        # The CLI speaks SASL itself (-X, librdkafka's names): more users are added online.
        as_admin = ["--brokers", broker.sasl_bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                    "-X", "sasl.mechanism=SCRAM-SHA-256", "-X", "sasl.username=admin",
                    "-X", "sasl.password=admin-secret"]
        assert topic in spate("topic", "list", *as_admin).stdout
        spate("user", "add", "bob", "--password", "bob-secret", *as_admin)
        listed = json.loads(spate("user", "list", "--json", *as_admin).stdout)
        assert {row["user"] for row in listed} == {"admin", "bob"}
        wrong = spate("topic", "list", *as_admin[:-1], "sasl.password=wrong", check=False)
        assert wrong.returncode != 0 and "SASL authentication as admin failed" in wrong.stderr


def test_requests_naming_very_many_users_are_answered_quickly(sasl_broker):
    """DescribeUserScramCredentials and AlterUserScramCredentials naming 200,000 users (half
    of them twice) are answered in linear time, not a quadratic freeze of the shard."""
    count = 200_000
    names = [f"user-{index % (count // 2)}".encode() for index in range(count)]
    varint, compact = kafka_wire.uvarint, kafka_wire.compact_bytes
    describe = varint(count + 1) + b"".join(compact(name) + b"\x00" for name in names) + b"\x00"
    # Upsertions: name, mechanism 1, iterations 100 (too few: refused before the controller),
    # salt, salted password; no deletions.
    upsertion = lambda name: (compact(name) + b"\x01" + struct.pack(">i", 100) + compact(b"salt")
                              + compact(b"x" * 32) + b"\x00")
    alter = varint(1) + varint(count + 1) + b"".join(upsertion(name) for name in names) + b"\x00"
    for api_key, body in ((50, describe), (51, alter)):
        with kafka_wire.connect(sasl_broker.ports[0], timeout_s=60) as sock:
            started = time.monotonic()
            sock.sendall(kafka_wire.frame(kafka_wire.request_header_v2(api_key, 0, 9, "many")
                                          + body))
            response = kafka_wire.read_frame(sock)
            elapsed = time.monotonic() - started
        assert struct.unpack(">i", response[:4])[0] == 9
        assert elapsed < 20, f"API {api_key} with {count} users took {elapsed:.1f} s"
    listed = json.loads(spate("user", "list", "--json", "--brokers", sasl_broker.bootstrap).stdout)
    assert listed == []
