"""SASL_SSL with every mechanism (issue 18): kcat and kafkajs authenticate with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 over TLS, produce, and read back what they wrote; a wrong
password is refused with nothing delivered; no password reaches the broker's log.

(confluent-kafka and kafka-python over SASL are in test_sasl.py, over TLS in test_tls.py.)
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from confluent_helpers import create_topic
from test_kafkajs import NODE, NODE_DIR, produce_and_verify
from test_sasl import MECHANISMS, PASSWORD, add_alice
from test_tls import TlsBroker, certs  # noqa: F401 (certs is a fixture)
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
