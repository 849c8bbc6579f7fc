"""TLS on SSL and SASL_SSL listeners (issue 18): real clients produce and consume through
rustls, including sealed segments that are read and encrypted instead of spliced; client
certificates are checked when asked for; plaintext, garbage and stalled handshakes on a TLS
port are refused without harm.

Certificates are made per module with the openssl command (a CA, a server certificate for
127.0.0.1 and localhost, a client certificate).
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import kafka_wire
from conftest import Broker, make_broker, pick_base_port
from confluent_helpers import consume, create_topic, produce
from records import first_values, make_records, verify
from test_sasl import add_alice, spate, PASSWORD

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def signed(directory: Path, name: str, subject: str, extensions: str) -> None:
    openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
            cwd=directory)
    (directory / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=spate-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    signed(directory, "server", "/CN=localhost",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
           "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    client = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    signed(directory, "client", "/CN=alice", client)
    signed(directory, "bob", "/O=Acme, Inc./CN=bob", client)
    return directory


class TlsBroker(Broker):
    """A broker with PLAINTEXT (for the harness and the CLI), SSL and SASL_SSL listeners."""

    def __init__(self, workdir, certs: Path, client_auth: str | None = None, **options):
        super().__init__(workdir, **options)
        self.certs = certs
        self.client_auth = client_auth
        taken = {self.base_port}
        self.tls_base_ports = {}
        for name in ("SSL", "SASL_SSL"):
            while True:
                port = pick_base_port(self.shard_count)
                if all(abs(port - other) >= self.shard_count for other in taken):
                    break
            taken.add(port)
            self.tls_base_ports[name] = port

    def tls_ports(self, name: str) -> list[int]:
        return [self.tls_base_ports[name] + shard for shard in range(self.shard_count)]

    def tls_bootstrap(self, name: str) -> str:
        return f"127.0.0.1:{self.tls_base_ports[name]}"

    @property
    def ports(self) -> list[int]:
        return [self.base_port + s for s in range(self.shard_count)] + \
            self.tls_ports("SSL") + self.tls_ports("SASL_SSL")

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--listen")
        listeners = ",".join([f"PLAINTEXT://{self.bootstrap}",
                              f"SSL://{self.tls_bootstrap('SSL')}",
                              f"SASL_SSL://{self.tls_bootstrap('SASL_SSL')}"])
        command[at:at + 2] = ["--listeners", listeners,
                              "--ssl-cert", str(self.certs / "server.pem"),
                              "--ssl-key", str(self.certs / "server.key")]
        if self.client_auth:
            command += ["--ssl-ca", str(self.certs / "ca.pem"),
                        "--ssl-client-auth", self.client_auth]
        return command


def tls_config(certs: Path, **more) -> dict:
    return {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca.pem"), **more}


@pytest.fixture
def tls_broker(request, spate_bin, ci_tmp, certs):
    extra_args = [str(arg) for marker in request.node.iter_markers("broker_args")
                  for arg in marker.args]
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=TlsBroker, certs=certs,
                           extra_args=extra_args)


@pytest.mark.broker_args("--tail-cache-bytes", "0", "--segment-bytes", "65536")
def test_clients_produce_and_consume_over_tls(tls_broker, unique_topic, certs):
    topic = unique_topic("ssl")
    create_topic(tls_broker.bootstrap, topic, 4)
    config = tls_config(certs)
    admin = AdminClient({"bootstrap.servers": tls_broker.tls_bootstrap("SSL"), **config})
    advertised = {broker.port for broker in admin.list_topics(timeout=20).brokers.values()}
    assert advertised == set(tls_broker.tls_ports("SSL"))
    # Enough to seal segments of 64 KiB, which are then read from files (not the tail cache)
    # and encrypted, where a plaintext listener splices them.
    records = make_records(5000, "ssl")
    delivered, errors = produce(tls_broker.tls_bootstrap("SSL"), topic, records, config)
    assert not errors, errors[:5]
    consumed = consume(tls_broker.tls_bootstrap("SSL"), topic, list(range(4)),
                       expected_count=len(records), config=config)
    verify(consumed, records, "5000 records over SSL", delivered=delivered, partition_count=4)

    add_alice(tls_broker.bootstrap)
    sasl = tls_config(certs, **{"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                                "sasl.username": "alice", "sasl.password": PASSWORD})
    more = make_records(500, "sasl-ssl")
    delivered, errors = produce(tls_broker.tls_bootstrap("SASL_SSL"), topic, more, sasl)
    assert not errors, errors[:5]
    consumed = consume(tls_broker.tls_bootstrap("SASL_SSL"), topic, list(range(4)),
                       expected_count=len(records) + len(more), config=sasl)
    assert {record.value for record in more} <= {c.value for c in consumed}

    # The CLI over TLS (-X), and over SASL_SSL with a Java client's --command-config file.
    listed = spate("topic", "list", "--brokers", tls_broker.tls_bootstrap("SSL"),
                   "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs / 'ca.pem'}")
    assert topic in listed.stdout
    properties = certs / "sasl-ssl.properties"
    properties.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        f"ssl.truststore.location={certs / 'ca.pem'}\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        f'username="alice" password="{PASSWORD}";\n')
    described = spate("topic", "describe", topic, "--brokers", tls_broker.tls_bootstrap("SASL_SSL"),
                      "--command-config", str(properties))
    assert topic in described.stdout
    untrusted = spate("topic", "list", "--brokers", tls_broker.tls_bootstrap("SSL"),
                      "-X", "security.protocol=SSL", check=False)
    assert untrusted.returncode != 0


def test_kafka_python_over_tls(tls_broker, unique_topic, certs):
    kafka = pytest.importorskip("kafka")
    topic = unique_topic("kp")
    create_topic(tls_broker.bootstrap, topic, 1)
    producer = kafka.KafkaProducer(bootstrap_servers=tls_broker.tls_bootstrap("SSL"),
                                   security_protocol="SSL", ssl_cafile=str(certs / "ca.pem"),
                                   acks="all", request_timeout_ms=20000)
    for index in range(20):
        producer.send(topic, f"kp-{index}".encode())
    producer.flush(timeout=30)
    producer.close()
    consumer = kafka.KafkaConsumer(topic, bootstrap_servers=tls_broker.tls_bootstrap("SSL"),
                                   security_protocol="SSL", ssl_cafile=str(certs / "ca.pem"),
                                   auto_offset_reset="earliest", consumer_timeout_ms=10000)
    values = first_values(consumer, 20)
    consumer.close()
    assert values == [f"kp-{index}" for index in range(20)]


@pytest.mark.broker_args("--request-receive-timeout-ms", "2000")
def test_plaintext_garbage_and_stalled_handshakes_are_refused(tls_broker):
    port = tls_broker.tls_ports("SSL")[0]
    # A Kafka request in the clear: the handshake fails and the connection closes.
    with kafka_wire.connect(port) as sock:
        sock.sendall(kafka_wire.api_versions_request(0, 1))
        closed, _ = kafka_wire.closed_by_peer(sock)
        assert closed
    # Random bytes likewise.
    with kafka_wire.connect(port) as sock:
        sock.sendall(os.urandom(4096))
        closed, _ = kafka_wire.closed_by_peer(sock)
        assert closed
    # A TLS record header that announces a handshake and never sends it: cut off after the
    # receive timeout.
    with kafka_wire.connect(port) as sock:
        started = time.monotonic()
        sock.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))
        closed, _ = kafka_wire.closed_by_peer(sock, timeout_s=15)
        assert closed and time.monotonic() - started < 12
    tls_broker.assert_alive()
    # The listener still serves.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def client_hello(certs: Path) -> bytes:
    """The first flight of a real TLS client (Python's ssl, OpenSSL): a ClientHello record."""
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def mutations(hello: bytes, count: int, seed: int):
    """Truncated, bit-flipped, length-lying, spliced and repeated variants of `hello`."""
    rng = random.Random(seed)
    for index in range(count):
        data = bytearray(hello)
        kind = index % 6
        if kind == 0:  # truncated anywhere, header included
            data = data[:rng.randrange(len(data))]
        elif kind == 1:  # a few bytes flipped
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 2:  # the record length lies (up to 64 KiB, past TLS's 16 KiB limit)
            struct.pack_into(">H", data, 3, rng.choice([0, 1, 0x3fff, 0x4000, 0x4001, 0xffff]))
        elif kind == 3:  # the handshake message's 24-bit length lies
            data[6:9] = rng.randrange(1 << 24).to_bytes(3, "big")
        elif kind == 4:  # random bytes after a valid record header
            data = data[:5] + bytearray(os.urandom(rng.randrange(1, 600)))
        else:  # the hello repeated, or followed by an alert or application data
            data += rng.choice([bytes(data), b"\x15\x03\x03\x00\x02\x02\x28",
                                b"\x17\x03\x03\x00\x10" + os.urandom(16)])
        yield bytes(data)


@pytest.mark.broker_args("--request-receive-timeout-ms", "2000")
def test_mutated_and_truncated_handshakes_leave_the_broker_serving(tls_broker, unique_topic,
                                                                    certs):
    hello = client_hello(certs)
    assert hello[0] == 0x16, "a handshake record"
    for name in ("SSL", "SASL_SSL"):
        port = tls_broker.tls_ports(name)[0]
        for case, data in enumerate(mutations(hello, 240, seed=len(name))):
            with kafka_wire.connect(port) as sock:
                try:
                    sock.sendall(data)
                    # The broker sees the end of the input: whatever it makes of the bytes,
                    # it must answer (a ServerHello or an alert) or close, not wait.
                    sock.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # it closed first
                closed, _ = kafka_wire.closed_by_peer(sock, timeout_s=10)
                assert closed, f"{name} case {case}: {data[:16].hex()} left the connection open"
        tls_broker.assert_alive(f"after mutated handshakes on {name}")
    # Refusals are logged at most once a second per kind, not once per connection.
    refused = [line for line in tls_broker.stderr_path.read_text(errors="replace").splitlines()
               if "TLS handshake failed" in line]
    assert 0 < len(refused) < 100, f"{len(refused)} log lines for 480 bad handshakes"
    # Clients that close without a TLS close_notify (librdkafka and Java do) end their
    # connections as plaintext ones do: without a log line each.
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    for correlation_id in range(5):
        with socket.create_connection(("127.0.0.1", tls_broker.tls_ports("SSL")[0]), 5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(kafka_wire.api_versions_request(0, correlation_id))
                assert struct.unpack(">i", kafka_wire.read_frame(tls)[:4])[0] == correlation_id
    # A real client is still served on both listeners.
    topic = unique_topic("after-fuzz")
    create_topic(tls_broker.bootstrap, topic, 1)
    records = make_records(10, "after-fuzz")
    config = tls_config(certs)
    delivered, errors = produce(tls_broker.tls_bootstrap("SSL"), topic, records, config)
    assert not errors, errors[:5]
    consumed = consume(tls_broker.tls_bootstrap("SSL"), topic, [0],
                       expected_count=len(records), config=config)
    verify(consumed, records, "after the mutated handshakes", delivered=delivered)
    # Checked last: the closes above were logged, if at all, long before this produce ended.
    log = tls_broker.stderr_path.read_text(errors="replace")
    assert "close_notify" not in log, "a close without close_notify was logged"


@pytest.fixture
def mtls_broker(request, spate_bin, ci_tmp, certs):
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=TlsBroker, certs=certs,
                           client_auth="required")


def test_client_certificates_are_required_when_asked(mtls_broker, unique_topic, certs):
    topic = unique_topic("mtls")
    create_topic(mtls_broker.bootstrap, topic, 1)
    without = AdminClient({"bootstrap.servers": mtls_broker.tls_bootstrap("SSL"),
                           **tls_config(certs)})
    with pytest.raises(KafkaException):
        without.list_topics(timeout=4)
    config = tls_config(certs, **{"ssl.certificate.location": str(certs / "client.pem"),
                                  "ssl.key.location": str(certs / "client.key")})
    delivered, errors = produce(mtls_broker.tls_bootstrap("SSL"), topic, make_records(50, "m"),
                                config)
    assert not errors and len(delivered) == 50
    mtls_broker.assert_alive()


@pytest.fixture
def mtls_acl_broker(request, spate_bin, ci_tmp, certs):
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=TlsBroker, certs=certs,
                           client_auth="required",
                           extra_args=["--authorizer", "acl", "--super-users", "User:ANONYMOUS"])


def test_a_client_certificate_is_the_principal(mtls_acl_broker, unique_topic, certs):
    """On an SSL listener the client certificate's subject, in Kafka's RFC 2253 form, is the
    principal the authorizer checks: alice's certificate may write where an ACL for
    User:CN=alice allows it, bob's (O=Acme, Inc.) is refused with TOPIC_AUTHORIZATION_FAILED
    and allowed once his escaped distinguished name has an ACL too."""
    broker = mtls_acl_broker
    topic = unique_topic("cert-principal")
    create_topic(broker.bootstrap, topic, 1)
    def allow(principal: str) -> None:
        spate("acl", "add", "--allow", principal, "--operation", "Write", "--operation",
              "Describe", "--topic", topic, "--brokers", broker.bootstrap)
    allow("User:CN=alice")

    def as_client(name: str) -> dict:
        return tls_config(certs, **{"ssl.certificate.location": str(certs / f"{name}.pem"),
                                    "ssl.key.location": str(certs / f"{name}.key"),
                                    "message.timeout.ms": 10000})

    delivered, errors = produce(broker.tls_bootstrap("SSL"), topic, make_records(20, "a"),
                                as_client("client"))
    assert not errors and len(delivered) == 20
    delivered, errors = produce(broker.tls_bootstrap("SSL"), topic, make_records(5, "b"),
                                as_client("bob"))
    assert not delivered and errors, "bob wrote without an ACL"
    assert all("TOPIC_AUTHORIZATION_FAILED" in str(error) for error in errors), errors
    allow("User:CN=bob,O=Acme\\, Inc.")
    deadline = time.monotonic() + 20
    while True:
        delivered, errors = produce(broker.tls_bootstrap("SSL"), topic, make_records(5, "b"),
                                    as_client("bob"))
        if delivered and not errors:
            break
        assert time.monotonic() < deadline, f"bob still refused: {errors}"
        time.sleep(0.2)
    broker.assert_alive()


@pytest.fixture
def mapped_principal_broker(request, spate_bin, ci_tmp, certs):
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=TlsBroker, certs=certs,
                           client_auth="required",
                           extra_args=["--authorizer", "acl", "--super-users", "User:ANONYMOUS",
                                       "--ssl-principal-mapping-rules",
                                       "RULE:^CN=([a-z]+)$/$1/U"])


def test_principal_mapping_rules_rename_certificates_and_refuse_what_no_rule_matches(
        mapped_principal_broker, unique_topic, certs):
    """Kafka's ssl.principal.mapping.rules: alice's subject `CN=alice` becomes `User:ALICE`
    (the rule's group, upper-cased), which is what her ACL names; bob's `CN=bob,O=Acme\\,
    Inc.` matches no rule, so his connections are refused, as Kafka refuses them."""
    broker = mapped_principal_broker
    topic = unique_topic("mapped-principal")
    create_topic(broker.bootstrap, topic, 1)
    spate("acl", "add", "--allow", "User:ALICE", "--operation", "Write", "--operation",
          "Describe", "--topic", topic, "--brokers", broker.bootstrap)

    def as_client(name: str, timeout_ms: int) -> dict:
        return tls_config(certs, **{"ssl.certificate.location": str(certs / f"{name}.pem"),
                                    "ssl.key.location": str(certs / f"{name}.key"),
                                    "message.timeout.ms": timeout_ms})

    delivered, errors = produce(broker.tls_bootstrap("SSL"), topic, make_records(20, "a"),
                                as_client("client", 10_000))
    assert not errors and len(delivered) == 20, errors[:3]
    delivered, errors = produce(broker.tls_bootstrap("SSL"), topic, make_records(5, "b"),
                                as_client("bob", 3_000))
    assert not delivered and errors, "bob wrote although no rule maps his subject"
    log = broker.stderr_tail(lines=10_000)
    assert "client certificate refused" in log and "applies to CN=bob" in log, log[-3000:]
    assert "TOPIC_AUTHORIZATION_FAILED" not in str(errors), "bob got as far as a request"
    broker.assert_alive()
