"""SASL_SSL with every mechanism (issue 18): kcat, kafkajs, confluent-kafka and kafka-python
authenticate with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS, produce, and read back
what they wrote; a wrong password is refused with nothing delivered; no password reaches the
broker's log.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from confluent_helpers import consume, create_topic, produce
from records import first_values, make_records, verify
from test_kafkajs import NODE, NODE_DIR, produce_and_verify
from test_sasl import MECHANISMS, PASSWORD, add_alice
from test_tls import TlsBroker, certs, tls_config  # noqa: F401 (certs is a fixture)
from conftest import make_broker

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
WRONG = "Wr0ng-pa55word-7"


@pytest.fixture
def sasl_ssl_broker(request, spate_bin, ci_tmp, certs):  # noqa: F811
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=TlsBroker, certs=certs,
                           extra_args=["--sasl-mechanisms", ",".join(MECHANISMS)])


def kcat_security(certs, mechanism: str, password: str = PASSWORD) -> list[str]:
    return ["-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanisms={mechanism}",
            "-X", "sasl.username=alice", "-X", f"sasl.password={password}",
            "-X", f"ssl.ca.location={certs / 'ca.pem'}"]


def kcat(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (ci/test.sh installs it)")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_over_sasl_ssl(sasl_ssl_broker, unique_topic, certs, mechanism):  # noqa: F811
    """Debian's kcat is built on librdkafka 2.0.2, which enables SASL only when SaslHandshake
    v0 is advertised and sends its SCRAM nonce twice in its final message: both as Kafka 4
    takes them."""
    broker = sasl_ssl_broker
    add_alice(broker.bootstrap)
    topic = unique_topic("kcat-sasl-ssl")
    create_topic(broker.bootstrap, topic, 1)
    bootstrap = broker.tls_bootstrap("SASL_SSL")
    lines = [f"{mechanism}-{index}" for index in range(200)]
    produced = kcat("-b", bootstrap, *kcat_security(certs, mechanism), "-P", "-t", topic,
                    "-p", "0", stdin="\n".join(lines) + "\n")
    assert produced.returncode == 0, produced.stderr
    consumed = kcat("-b", bootstrap, *kcat_security(certs, mechanism), "-C", "-t", topic,
                    "-p", "0", "-o", "beginning", "-e", "-q")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == lines

    refused = kcat("-b", bootstrap, *kcat_security(certs, mechanism, WRONG), "-P", "-t", topic,
                   "-p", "0", "-m", "10", stdin="stolen\n")
    assert refused.returncode != 0 or "Authentication failed" in refused.stderr, refused.stderr
    after = kcat("-b", bootstrap, *kcat_security(certs, mechanism), "-C", "-t", topic, "-p", "0",
                 "-o", "beginning", "-e", "-q")
    assert "stolen" not in after.stdout.splitlines()
    log = broker.stderr_path.read_text(errors="replace")
    assert PASSWORD not in log and WRONG not in log, "a password reached the broker's log"


@pytest.mark.skipif(NODE is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
                    reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafkajs_over_sasl_ssl(sasl_ssl_broker, unique_topic, certs, tmp_path,  # noqa: F811
                               mechanism):
    broker = sasl_ssl_broker
    add_alice(broker.bootstrap)
    topic = unique_topic("kafkajs-sasl-ssl")
    create_topic(broker.bootstrap, topic, 1)
    produce_and_verify(broker, tmp_path, topic, 300, "none",
                       bootstrap=broker.tls_bootstrap("SASL_SSL"), partitions=1,
                       client_options={"ssl": {"ca": str(certs / "ca.pem")},
                                       "sasl": {"mechanism": mechanism.lower(),
                                                "username": "alice", "password": PASSWORD}})
    assert PASSWORD not in broker.stderr_path.read_text(errors="replace")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_over_sasl_ssl(sasl_ssl_broker, unique_topic, certs,  # noqa: F811
                                       mechanism):
    broker = sasl_ssl_broker
    add_alice(broker.bootstrap)
    topic = unique_topic("confluent-sasl-ssl")
    create_topic(broker.bootstrap, topic, 2)
    config = tls_config(certs, **{"security.protocol": "SASL_SSL", "sasl.mechanisms": mechanism,
                                  "sasl.username": "alice", "sasl.password": PASSWORD})
    bootstrap = broker.tls_bootstrap("SASL_SSL")
    records = make_records(300, f"confluent-{mechanism}")
    delivered, errors = produce(bootstrap, topic, records, config)
    assert not errors, errors[:5]
    consumed = consume(bootstrap, topic, [0, 1], expected_count=len(records), config=config)
    verify(consumed, records, f"confluent-kafka over SASL_SSL with {mechanism}",
           delivered=delivered, partition_count=2)


def test_kafka_python_over_sasl_ssl_with_each_mechanism(sasl_ssl_broker, unique_topic,
                                                        certs):  # noqa: F811
    kafka = pytest.importorskip("kafka")
    broker = sasl_ssl_broker
    add_alice(broker.bootstrap)
    topic = unique_topic("kp-sasl-ssl")
    create_topic(broker.bootstrap, topic, 1)
    tls = {"bootstrap_servers": broker.tls_bootstrap("SASL_SSL"), "security_protocol": "SASL_SSL",
           "ssl_cafile": str(certs / "ca.pem"), "sasl_plain_username": "alice",
           "sasl_plain_password": PASSWORD}
    for mechanism in MECHANISMS:
        producer = kafka.KafkaProducer(sasl_mechanism=mechanism, acks="all",
                                       request_timeout_ms=20000, **tls)
        producer.send(topic, mechanism.encode()).get(timeout=30)
        producer.close()
    consumer = kafka.KafkaConsumer(topic, sasl_mechanism="SCRAM-SHA-256",
                                   auto_offset_reset="earliest", consumer_timeout_ms=10000, **tls)
    values = first_values(consumer, len(MECHANISMS))
    consumer.close()
    assert values == MECHANISMS
