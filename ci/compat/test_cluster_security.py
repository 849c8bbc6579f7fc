"""Security in a three-node replicated cluster (issue 18 on top of issue 15): SCRAM users and
ACLs written through one node hold on every node, and brokers replicate to each other over a
SASL listener as a super user while the authorizer refuses anonymous clients. Two more
clusters are secure from their first start: one with only SASL listeners, whose first users
come from `spate user add --data-dir` on each node, and one whose brokers replicate over
mutual TLS as their certificates' principal and whose controller quorum runs over mutual TLS
too, admitting only super users' certificates.

The cluster is secured the way a Kafka operator secures a running one, with rolling restarts
and no acknowledged record lost. It starts with PLAINTEXT and SASL_PLAINTEXT listeners, no
authorizer, and PLAINTEXT between brokers. The users (broker, admin, alice) are added online. A first rolling restart moves replication to SASL_PLAINTEXT, with brokers
logging in as `broker`. A second turns on `--authorizer acl` with `broker` and `admin` as
super users, and the admin then grants alice WRITE through another node. After each node's
restart, every partition must be back to its full ISR: that
is replication working as the new settings say.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from confluent_helpers import consume, produce
from conftest import Broker, pick_base_port
from records import make_records, verify
from test_cluster import (NODE_ARGS, NODES, PARTITIONS, WAIT_S, Load, create_replicated_topic,
                          run_cluster, verify_acked, wait_for)
from test_sasl import PASSWORD, SaslBroker, sasl_config, spate
from test_tls import certs, signed, tls_config  # noqa: F401 - certs is a fixture

BROKER_PASSWORD = "broker-secret"
ADMIN_PASSWORD = "admin-secret"


class SecureNode(SaslBroker):
    """A cluster node whose environment the test may add to (a password kept off the
    command line, as an operator would)."""

    def __init__(self, workdir, **options):
        super().__init__(workdir, **options)
        self.extra_env: dict[str, str] = {}

    def environment(self) -> dict[str, str]:  # an instance's, unlike Broker's
        return {**Broker.environment(), **self.extra_env}


class SecureCluster:
    """Three nodes with a PLAINTEXT and a SASL_PLAINTEXT listener each; the same shape as
    test_cluster.Cluster, so its helpers (create_replicated_topic, wait_for) apply."""

    def __init__(self, workdir: Path, more_args: list[str] = (), node_class=SecureNode,
                 **node_options):
        controller_base = pick_base_port(NODES)
        voters = ",".join(f"{n}@127.0.0.1:{controller_base + n - 1}" for n in range(1, NODES + 1))
        self.nodes = [
            node_class(workdir / f"node-{n}", shard_count=1, extra_args=[
                "--node-id", str(n), "--controller-quorum-voters", voters, *NODE_ARGS,
                *more_args], extra_ports=[controller_base + n - 1], **node_options)
            for n in range(1, NODES + 1)
        ]

    def node(self, node_id: int) -> SecureNode:
        return self.nodes[node_id - 1]

    def bootstrap(self, exclude: set[int] = frozenset()) -> str:
        return ",".join(node.bootstrap for n, node in enumerate(self.nodes, 1) if n not in exclude)

    def sasl_bootstrap(self) -> str:
        return ",".join(node.sasl_bootstrap for node in self.nodes)

    def logs(self) -> str:
        return "\n".join(f"--- node {n} ---\n{node.stderr_tail(40)}"
                         for n, node in enumerate(self.nodes, 1))


@pytest.fixture
def secure_cluster(request, spate_bin, ci_tmp):
    yield from run_cluster(request, ci_tmp, make=SecureCluster)


def full_isr_as(bootstrap: str, topic: str, config: dict) -> bool:
    """Whether every partition has a leader and all three replicas in its ISR, as Metadata
    on `bootstrap` with `config` says."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap, **config}).list_topics(
            topic, timeout=5)
    except Exception:  # noqa: BLE001 - a node that is down answers nothing
        return False
    entry = metadata.topics.get(topic)
    if entry is None or entry.error is not None or len(entry.partitions) != PARTITIONS:
        return False
    return all(p.leader >= 0 and len(p.isrs) == NODES for p in entry.partitions.values())


class SaslLoad(Load):
    """test_cluster.Load (an idempotent acks=all producer) as a SASL client."""

    def __init__(self, cluster: SecureCluster, topic: str, config: dict):
        super().__init__(cluster, topic)
        self.producer = Producer({
            "bootstrap.servers": cluster.sasl_bootstrap(), "enable.idempotence": True,
            "acks": "all", "linger.ms": 5, "message.timeout.ms": 90_000,
            "request.timeout.ms": 5_000, "socket.timeout.ms": 5_000,
            "topic.metadata.refresh.interval.ms": 1_000, **config})


def roll(cluster: SecureCluster, topic: str, more_args: list[str], check: dict, load: Load,
         more_env: dict[str, str] | None = None) -> None:
    """Restarts each node in turn with `more_args` (and `more_env`) added, while `load`
    writes; after each, waits until every partition is back to its full ISR, asked as
    `check` (client properties) on the SASL listeners."""
    for n, node in enumerate(cluster.nodes, 1):
        load.send(200)  # in flight as the node stops
        node.stop()
        node.extra_args = [*node.extra_args, *more_args]
        node.extra_env.update(more_env or {})
        node.start()
        node.wait_ready(timeout_s=WAIT_S)
        wait_for(f"the full ISR after node {n} restarted with {more_args[:2]}",
                   lambda: full_isr_as(cluster.sasl_bootstrap(), topic, check), cluster)
        load.send(200)
        load.wait_acked(load.sent, cluster)


def test_a_running_cluster_is_secured_by_rolling_restarts_without_losing_a_record(
        secure_cluster, unique_topic):
    cluster = secure_cluster
    admin = sasl_config("SCRAM-SHA-512", "admin", ADMIN_PASSWORD)
    alice = sasl_config("SCRAM-SHA-512", "alice", PASSWORD)
    # Users written through node 1 are in the metadata every node serves.
    for user, password in (("broker", BROKER_PASSWORD), ("admin", ADMIN_PASSWORD),
                           ("alice", PASSWORD)):
        spate("user", "add", user, "--password", password, "--mechanism", "SCRAM-SHA-512",
              "--brokers", cluster.node(1).bootstrap)
    wait_for("alice logging in on node 3",
               lambda: _authenticated(cluster.node(3).sasl_bootstrap, alice), cluster)

    topic, alices = unique_topic("secured"), unique_topic("alices")
    create_replicated_topic(cluster, topic)
    create_replicated_topic(cluster, alices)
    # The admin (a super user once the authorizer is on) writes throughout, idempotently.
    load = SaslLoad(cluster, topic, admin)
    load.send(300)
    load.wait_acked(load.sent, cluster)

    # Step 1: brokers replicate over SASL_PLAINTEXT, logging in as `broker`.
    roll(cluster, topic, ["--inter-broker-listener-name", "SASL_PLAINTEXT",
                          "--inter-broker-user", "broker"], admin, load,
         {"SPATE_INTER_BROKER_PASSWORD": BROKER_PASSWORD})
    # Step 2: the authorizer, with brokers and the admin as super users.
    roll(cluster, topic, ["--authorizer", "acl", "--super-users", "User:broker;User:admin"],
         admin, load)
    load.finish(cluster)
    # The admin grants alice WRITE through node 2; node 3 learns it from the quorum.
    spate("acl", "add", "--allow", "User:alice", "--operation", "Write", "--topic", alices,
          "--brokers", cluster.node(2).sasl_bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
          "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=admin",
          "-X", f"sasl.password={ADMIN_PASSWORD}")
    wait_for("alice seeing her topic on node 3",
               lambda: full_isr_as(cluster.node(3).sasl_bootstrap, alices, alice), cluster)
    # alice may write, through node 3's SASL listener, with acks=all: the followers that
    # count for min.insync.replicas=2 replicate as `broker` under the authorizer.
    records = make_records(600, "alice")
    delivered, errors = produce(cluster.node(3).sasl_bootstrap, alices, records, alice)
    assert not errors, errors[:5]
    # An anonymous client on the PLAINTEXT listener is refused, and writes nothing.
    refused, errors = produce(cluster.bootstrap(), alices, make_records(1, "anonymous"),
                              {"message.timeout.ms": 10000})
    assert not refused and errors and "AUTHORIZATION" in " ".join(errors).upper(), errors
    # Everything acknowledged is there once, in order, at its offset, read as the admin.
    verify_acked(cluster, topic, load.acked, set(), consumer_config=admin,
                 bootstrap=cluster.sasl_bootstrap())
    consumed = consume(cluster.sasl_bootstrap(), alices, list(range(PARTITIONS)),
                       expected_count=len(records), config=admin)
    verify(consumed, records, "alice's records", delivered=delivered, partition_count=PARTITIONS)
    assert wait_for("the full ISR at the end",
                      lambda: full_isr_as(cluster.sasl_bootstrap(), topic, admin), cluster)
    # No broker was refused by another: replication never met the authorizer's no.
    for n, node in enumerate(cluster.nodes, 1):
        log = node.stderr_path.read_text(errors="replace")
        assert "User:broker may not" not in log, f"node {n} refused the broker principal"
        assert BROKER_PASSWORD not in log and ADMIN_PASSWORD not in log


def create_topic_as(cluster: SecureCluster, bootstrap: str, topic: str, config: dict,
                    replication_factor: int = NODES) -> None:
    """CreateTopics (replication factor 3 unless told, min.insync.replicas=2) as the client
    `config` says, retried while the quorum is still forming."""
    def created():
        client = AdminClient({"bootstrap.servers": bootstrap, **config})
        futures = client.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                                 replication_factor=replication_factor,
                                                 config={"min.insync.replicas": "2"})],
                                       request_timeout=15)
        try:
            futures[topic].result(timeout=20)
            return True
        except Exception as error:  # noqa: BLE001 - the quorum may still be forming
            return "already exists" in str(error).lower()
    wait_for(f"CreateTopics of {topic}", created, cluster)


def replicate_and_read_back(cluster: SecureCluster, bootstrap: str, topic: str, config: dict,
                            tag: str) -> None:
    """Creates `topic` (RF=3, min.insync.replicas=2) and writes 500 records with acks=all as
    the client `config` says, then reads them back once each, in order. A new topic's ISR is
    all its replicas, so the proof that the followers replicate is the acks=all writes: the
    high watermark moves only once they fetched."""
    create_topic_as(cluster, bootstrap, topic, config)
    wait_for("every partition led", lambda: full_isr_as(bootstrap, topic, config), cluster)
    records = make_records(500, tag)
    delivered, errors = produce(bootstrap, topic, records, config)
    assert not errors, errors[:5]
    consumed = consume(bootstrap, topic, list(range(PARTITIONS)), expected_count=len(records),
                       config=config)
    verify(consumed, records, f"{tag}: replicated and read back", delivered=delivered,
           partition_count=PARTITIONS)


def _authenticated(bootstrap: str, config: dict) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, **config}).list_topics(timeout=5)
        return True
    except Exception:  # noqa: BLE001
        return False


def add_first_users(cluster: SecureCluster) -> None:
    """What an operator does to each node's data directory before the cluster's first start
    (Kafka's `kafka-storage format --add-scram`); carol only on node 3."""
    for node in cluster.nodes:
        for user, password in (("broker", BROKER_PASSWORD), ("admin", ADMIN_PASSWORD)):
            spate("user", "add", user, "--password", password, "--mechanism", "SCRAM-SHA-512",
                  "--data-dir", str(node.data_dir))
    spate("user", "add", "carol", "--password", "carol-secret", "--mechanism", "SCRAM-SHA-512",
          "--data-dir", str(cluster.node(3).data_dir))


@pytest.fixture
def sasl_only_cluster(request, spate_bin, ci_tmp):
    def make(workdir):
        cluster = SecureCluster(workdir, sasl_only=True, more_args=[
            "--inter-broker-user", "broker", "--authorizer", "acl",
            "--super-users", "User:broker;User:admin"])
        for node in cluster.nodes:
            node.extra_env["SPATE_INTER_BROKER_PASSWORD"] = BROKER_PASSWORD
        return cluster
    yield from run_cluster(request, ci_tmp, make=make, before_start=add_first_users)


def test_a_cluster_born_with_only_sasl_listeners_takes_its_first_users_from_its_data_dirs(
        sasl_only_cluster, unique_topic):
    cluster = sasl_only_cluster
    admin = sasl_config("SCRAM-SHA-512", "admin", ADMIN_PASSWORD)
    carol = sasl_config("SCRAM-SHA-512", "carol", "carol-secret")
    bootstrap = cluster.sasl_bootstrap()
    topic = unique_topic("born-secure")

    # Followers log in as `broker`.
    replicate_and_read_back(cluster, bootstrap, topic, admin, "born-secure")
    # Each node's first users were sent once, then set aside.
    for node in cluster.nodes:
        assert (node.data_dir / "metadata.sent-to-cluster").is_dir(), node.data_dir
        assert not (node.data_dir / "metadata").exists(), node.data_dir
    # carol came from node 3's directory alone; removed online, she stays removed when node 3
    # restarts.
    assert _authenticated(cluster.node(1).sasl_bootstrap, carol)
    as_admin = ["--brokers", cluster.node(1).sasl_bootstrap, "-X",
                "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-512",
                "-X", "sasl.username=admin", "-X", f"sasl.password={ADMIN_PASSWORD}"]
    spate("user", "remove", "carol", *as_admin)
    wait_for("carol refused", lambda: not _authenticated(cluster.node(3).sasl_bootstrap, carol),
               cluster)
    cluster.node(3).restart()
    wait_for("the full ISR after node 3 restarted",
               lambda: full_isr_as(bootstrap, topic, admin), cluster)
    assert not _authenticated(cluster.node(3).sasl_bootstrap, carol)


class TlsClusterNode(Broker):
    """A cluster node with a PLAINTEXT listener (for the harness) and an SSL one that asks
    every client, brokers included, for a certificate."""

    def __init__(self, workdir, certs: Path, **options):
        super().__init__(workdir, **options)
        while True:
            self.tls_base_port = pick_base_port(self.shard_count)
            if abs(self.tls_base_port - self.base_port) >= self.shard_count:
                break
        self.certs = certs

    @property
    def ports(self) -> list[int]:
        return [self.base_port, self.tls_base_port]

    @property
    def tls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.tls_base_port}"

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--listen")
        command[at:at + 2] = [
            "--listeners", f"PLAINTEXT://{self.bootstrap},SSL://{self.tls_bootstrap}",
            "--ssl-cert", str(self.certs / "broker.pem"), "--ssl-key", str(self.certs / "broker.key"),
            "--ssl-ca", str(self.certs / "ca.pem"), "--ssl-client-auth", "required"]
        return command


@pytest.fixture
def tls_cluster(request, spate_bin, ci_tmp, certs):
    # A certificate for brokers, good as a server's and as a client's (Kafka brokers' are).
    signed(certs, "broker", "/CN=broker",
           "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
           "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")

    def make(workdir):
        return SecureCluster(workdir, node_class=TlsClusterNode, certs=certs, more_args=[
            "--inter-broker-listener-name", "SSL", "--controller-security-protocol", "SSL",
            "--authorizer", "acl", "--super-users", "User:CN=broker;User:CN=alice"])
    yield from run_cluster(request, ci_tmp, make=make)


def quorum_hello(port: int, context: ssl.SSLContext | None) -> bytes:
    """Opens a connection to a controller port (under TLS if `context`), sends the quorum's
    hello as a member would (`cluster/raft/network.rs`: `[u32 length][kind 0][JSON]`), and
    returns what came back before the port closed it or 5 s passed (a refusal in the TLS
    handshake reads as nothing)."""
    body = json.dumps({"version": 1, "node_id": 99}).encode()
    frame = struct.pack(">I", len(body) + 1) + b"\0" + body
    received = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            stream = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
            stream.sendall(frame)
            while len(received) < 4 or len(received) < 4 + struct.unpack(">I", received[:4])[0]:
                chunk = stream.recv(4096)
                if not chunk:
                    break
                received += chunk
    except (OSError, ssl.SSLError):
        pass
    return received


def member_context(certs: Path, name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if name is not None:
        context.load_cert_chain(str(certs / f"{name}.pem"), str(certs / f"{name}.key"))
    return context


def test_brokers_replicate_over_mutual_tls_and_the_controller_port_admits_only_members(
        tls_cluster, certs, unique_topic):
    cluster = tls_cluster
    alice = tls_config(certs, **{"ssl.certificate.location": str(certs / "client.pem"),
                                 "ssl.key.location": str(certs / "client.key")})
    bootstrap = ",".join(node.tls_bootstrap for node in cluster.nodes)
    topic = unique_topic("mtls")

    # The quorum formed over its TLS port (nodes register through it), and followers
    # replicate over TLS as User:CN=broker (without it in --super-users, every record times
    # out).
    replicate_and_read_back(cluster, bootstrap, topic, alice, "mtls")
    for n, node in enumerate(cluster.nodes, 1):
        log = node.stderr_path.read_text(errors="replace")
        assert "User:CN=broker may not" not in log, f"node {n} refused a broker"
        assert "controller port refused" not in log, f"node {n} refused a member"
        assert 'security="SSL"' in log or "security=SSL" in log, f"node {n}: {log[-2000:]}"

    # Who may talk to a controller port: only a certificate of the CA whose principal is a
    # super user (alice is one here); not a plain socket, not TLS without a certificate, not
    # bob's certificate (same CA, no ClusterAction).
    node = cluster.node(1)
    port = node.extra_ports[0]
    answer = quorum_hello(port, member_context(certs, "client"))
    assert len(answer) > 5 and answer[4] == 0 and json.loads(answer[5:])["node_id"] == 1, answer
    for who, context in (("a plain socket", None),
                         ("TLS without a certificate", member_context(certs, None)),
                         ("bob's certificate", member_context(certs, "bob"))):
        answer = quorum_hello(port, context)
        assert b"node_id" not in answer, f"{who} was answered: {answer!r}"
    wait_for("node 1 logging bob's refusal",
             lambda: "CN=bob" in node.stderr_path.read_text(errors="replace"), cluster)
    assert "controller port refused a member" in node.stderr_path.read_text(errors="replace")
    node.assert_alive("after refusing strangers on its controller port")

    # The controller's node stops: the other two elect a new controller over TLS, which takes
    # CreateTopics; the node comes back and rejoins the quorum and its ISRs.
    controller = controller_node_of(cluster)
    cluster.node(controller).stop()
    others = ",".join(other.tls_bootstrap for n, other in enumerate(cluster.nodes, 1)
                      if n != controller)
    wait_for("a new controller named", lambda: controller_node_of(cluster, exclude={controller})
             not in (None, controller), cluster)
    create_topic_as(cluster, others, unique_topic("after-failover"), alice, replication_factor=2)
    cluster.node(controller).start()
    wait_for(f"node {controller} back in every ISR", lambda: full_isr_as(bootstrap, topic, alice),
             cluster)


def controller_node_of(cluster: SecureCluster, exclude: set[int] = frozenset()) -> int | None:
    """The node of the active controller as Metadata on the PLAINTEXT listeners names it."""
    try:
        metadata = AdminClient({"bootstrap.servers": cluster.bootstrap(exclude)}).list_topics(
            timeout=5)
    except Exception:  # noqa: BLE001 - a node that is down answers nothing
        return None
    return metadata.controller_id // 1024 if metadata.controller_id >= 0 else None


@pytest.fixture
def wrong_password_cluster(request, spate_bin, ci_tmp):
    def make(workdir):
        cluster = SecureCluster(workdir, sasl_only=True, more_args=[
            "--inter-broker-listener-name", "SASL_PLAINTEXT", "--inter-broker-user", "broker"])
        for n, node in enumerate(cluster.nodes, 1):
            node.extra_env["SPATE_INTER_BROKER_PASSWORD"] = \
                "not-the-password" if n == 3 else BROKER_PASSWORD
        return cluster
    yield from run_cluster(request, ci_tmp, make=make, before_start=add_first_users)


def test_a_broker_whose_inter_broker_login_is_refused_says_so(wrong_password_cluster,
                                                              unique_topic):
    cluster = wrong_password_cluster
    admin = sasl_config("SCRAM-SHA-512", "admin", ADMIN_PASSWORD)
    create_topic_as(cluster, cluster.sasl_bootstrap(), unique_topic("refused"), admin)
    node3 = cluster.node(3)
    wait_for("node 3 warning that its login is refused",
             lambda: "refuses this broker's inter-broker login"
             in node3.stderr_path.read_text(errors="replace"), cluster)
    log = node3.stderr_path.read_text(errors="replace")
    assert "not-the-password" not in log
    for node in cluster.nodes[:2]:
        assert "refuses this broker's inter-broker login" not in \
            node.stderr_path.read_text(errors="replace")
