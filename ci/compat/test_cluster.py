"""Real clients against a three-node replicated cluster whose leaders crash or freeze.

Three `spate serve` processes (one shard each) form a cluster with a controller quorum on
their controller ports. A topic with replication factor 3 and min.insync.replicas=2 takes an
idempotent acks=all librdkafka producer while the leader of a partition is killed with
SIGKILL, or frozen with SIGSTOP (a "zombie" leader that wakes up after the cluster moved on).
The client must see no delivery error, and every acknowledged record must be read back from
the survivors exactly once, in order, at its acknowledged offset. A killed node that comes
back catches up: the test then kills another node and reads everything again. Three client
families produce through faults, each retrying in its own way: librdkafka (kill -9 and
SIGSTOP), kafka-python (SIGSTOP) and kafkajs (kill -9, through ci/node/failover.js).

The Rust fault tests (engine/tests/cluster_replication.rs) check the same rules with a
hand-written client; these check that Kafka's own client library rides the failover.
"""

from __future__ import annotations

import json
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import netfaults
from conftest import Broker, _test_failed, pick_base_port
from netfaults import NetFaults
from confluent_helpers import consume

NODES = 3
PARTITIONS = 3
RECORDS = 3000
# Fast failure detection, as the Rust cluster tests use: a stopped node is fenced within 2 s.
NODE_ARGS = ["--controller-quorum-election-timeout-ms", "300",
             "--broker-session-timeout-ms", "1800", "--broker-heartbeat-interval-ms", "300"]
WAIT_S = 60.0
# With network partitions: a follower cut off from its leader (but not from the controller)
# leaves the ISR after replica.lag.time.max.ms; Kafka's 30 s would stall acks=all on its
# partition for as long.
NET_NODE_ARGS = ["--replica-lag-time-max-ms", "3000"]


class Cluster:
    """Three nodes; with `net` (netfaults.NetFaults), each in a cgroup that `net` can cut off."""

    def __init__(self, workdir: Path, net: NetFaults | None = None):
        controller_base = pick_base_port(NODES)
        voters = ",".join(f"{n}@127.0.0.1:{controller_base + n - 1}" for n in range(1, NODES + 1))
        self.nodes = [
            Broker(workdir / f"node-{n}", shard_count=1, extra_args=[
                "--node-id", str(n), "--controller-quorum-voters", voters, *NODE_ARGS,
                *(NET_NODE_ARGS if net is not None else [])],
                extra_ports=[controller_base + n - 1])
            for n in range(1, NODES + 1)
        ]
        self.net = net
        if net is not None:
            for n, broker in enumerate(self.nodes, 1):
                broker.cgroup_procs = net.cgroup_procs(n)
                net.set_ports(n, broker.ports + broker.extra_ports)

    def node(self, node_id: int) -> Broker:
        return self.nodes[node_id - 1]

    def bootstrap(self, exclude: set[int] = frozenset()) -> str:
        return ",".join(broker.bootstrap for n, broker in enumerate(self.nodes, 1)
                        if n not in exclude)

    def logs(self) -> str:
        return "\n".join(f"--- node {n} ---\n{broker.stderr_tail(40)}"
                         for n, broker in enumerate(self.nodes, 1))


@pytest.fixture
def cluster(request, spate_bin, ci_tmp):
    yield from run_cluster(request, ci_tmp)


@pytest.fixture
def net_cluster(request, spate_bin, ci_tmp):
    """A cluster whose nodes the test can cut off from each other (`cluster.net`). Skips where
    the kernel or the tools cannot make partitions, unless SPATE_REQUIRE_NETFAULTS=1 (CI sets
    it: there the partition tests must run)."""
    reason = netfaults.unavailable()
    if reason is not None:
        if os.environ.get("SPATE_REQUIRE_NETFAULTS") == "1":
            pytest.fail(f"network partitions unavailable: {reason}", pytrace=False)
        pytest.skip(f"network partitions unavailable: {reason}")
    net = NetFaults()
    try:
        yield from run_cluster(request, ci_tmp, net)
    finally:
        net.close()


def run_cluster(request, ci_tmp, net: NetFaults | None = None, make=None, before_start=None):
    """Starts a cluster (`Cluster(workdir, net)`, or `make(workdir)`), after
    `before_start(cluster)` if given, and tears it down after the test."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{request.node.name[:40]}-", dir=ci_tmp))
    cluster = make(workdir) if make is not None else Cluster(workdir, net)
    try:
        if before_start is not None:
            before_start(cluster)
        # The nodes start together: each waits for its quorum before it serves.
        for broker in cluster.nodes:
            broker.start_process()
        for broker in cluster.nodes:
            broker.wait_ready(timeout_s=WAIT_S)
        yield cluster
    finally:
        for broker in cluster.nodes:
            if broker.process is not None and broker.process.poll() is None:
                os.killpg(broker.process.pid, signal.SIGCONT)
            broker._hard_kill()
        if _test_failed(request.node):
            print(f"\n{cluster.logs()}\n(cluster data and logs kept in {workdir})")
        elif os.environ.get("SPATE_CI_KEEP") == "1":
            print(f"\n(cluster data and logs kept in {workdir}: SPATE_CI_KEEP=1)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def partition_state(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """partition -> (leader broker id, ISR) as the cluster's Metadata says; {} if unknown."""
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - a node that is down answers nothing
        return {}
    entry = metadata.topics.get(topic)
    if entry is None or entry.error is not None:
        return {}
    return {pid: (p.leader, sorted(p.isrs)) for pid, p in entry.partitions.items()}


def wait_for(what: str, condition, cluster: Cluster, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s} s\n{cluster.logs()}")
        time.sleep(0.1)


def full_isr(cluster: Cluster, topic: str, exclude: set[int] = frozenset()):
    state = partition_state(cluster.bootstrap(exclude), topic)
    if len(state) == PARTITIONS and all(leader >= 0 and len(isr) == NODES
                                        for leader, isr in state.values()):
        return state
    return None


def create_replicated_topic(cluster: Cluster, topic: str) -> None:
    # The first CreateTopics may meet a quorum that is still registering the other nodes.
    def created():
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=NODES,
                      config={"min.insync.replicas": "2"})], request_timeout=15)
        try:
            futures[topic].result(timeout=20)
            return True
        except Exception as error:  # noqa: BLE001
            return "already exists" in str(error).lower()
    wait_for("CreateTopics with replication factor 3", created, cluster)
    wait_for("every partition led with its full ISR", lambda: full_isr(cluster, topic), cluster)


class Load:
    """An idempotent acks=all librdkafka producer writing numbered records round-robin over
    the partitions, and what it was told."""

    def __init__(self, cluster: Cluster, topic: str, client_defaults: bool = False):
        self.topic = topic
        # A frozen leader must not hold a request for librdkafka's default 30 s; with
        # client_defaults it may (the timeouts and refresh intervals are librdkafka's).
        quick = {} if client_defaults else {
            "request.timeout.ms": 5_000,
            "socket.timeout.ms": 5_000,
            "topic.metadata.refresh.interval.ms": 1_000,
        }
        self.producer = Producer({
            "bootstrap.servers": cluster.bootstrap(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 90_000,
            **quick,
        })
        self.acked: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.sent = 0

    def _on_delivery(self, error, message):
        if error is not None:
            self.errors.append(f"{message.value()!r}: {error}")
        else:
            self.acked[message.value().decode()] = (message.partition(), message.offset())

    def send(self, count: int) -> None:
        for _ in range(count):
            value = f"record-{self.sent:06d}".encode()
            while True:
                try:
                    self.producer.produce(self.topic, value=value, partition=self.sent % PARTITIONS,
                                          on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.sent += 1
            if self.sent % 50 == 0:
                # A steady trickle, so that the fault lands in the middle of the traffic.
                self.producer.poll(0.01)

    def wait_acked(self, count: int, cluster: Cluster) -> None:
        def enough():
            self.producer.poll(0.05)
            return len(self.acked) + len(self.errors) >= count
        wait_for(f"{count} acknowledgements", enough, cluster, timeout_s=120)

    def finish(self, cluster: Cluster) -> None:
        remaining = self.producer.flush(120)
        assert remaining == 0, f"{remaining} records undelivered\n{cluster.logs()}"
        assert not self.errors, f"delivery errors: {self.errors[:5]}\n{cluster.logs()}"
        assert len(self.acked) == self.sent


class KafkaPythonLoad:
    """The same load through kafka-python's idempotent producer (a pure-Python client whose
    retries, metadata refreshes and sequence numbers are its own), with Load's interface."""

    def __init__(self, cluster: Cluster, topic: str):
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(
            bootstrap_servers=cluster.bootstrap().split(","), client_id="spate-ci-kafka-python",
            enable_idempotence=True, acks="all", linger_ms=5, retries=1_000_000,
            delivery_timeout_ms=90_000, request_timeout_ms=5_000, metadata_max_age_ms=1_000,
            retry_backoff_ms=100)
        self.acked: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.sent = 0

    def send(self, count: int) -> None:
        for _ in range(count):
            value = f"record-{self.sent:06d}"
            future = self.producer.send(self.topic, value=value.encode(),
                                        partition=self.sent % PARTITIONS)
            future.add_callback(self._on_acked, value)
            future.add_errback(self._on_error, value)
            self.sent += 1

    def _on_acked(self, value, metadata):
        self.acked[value] = (metadata.partition, metadata.offset)

    def _on_error(self, value, error):
        self.errors.append(f"{value}: {error!r}")

    def wait_acked(self, count: int, cluster: Cluster) -> None:
        wait_for(f"{count} acknowledgements", lambda: len(self.acked) + len(self.errors) >= count,
                 cluster, timeout_s=120)

    def finish(self, cluster: Cluster) -> None:
        self.producer.flush(timeout=120)
        self.producer.close(timeout=10)
        assert not self.errors, f"delivery errors: {self.errors[:5]}\n{cluster.logs()}"
        assert len(self.acked) == self.sent, (
            f"{self.sent - len(self.acked)} records unacknowledged\n{cluster.logs()}")


def verify(cluster: Cluster, load: Load, exclude: set[int]) -> None:
    verify_acked(cluster, load.topic, load.acked, exclude)


def verify_acked(cluster: Cluster, topic: str, acked: dict[str, tuple[int, int]],
                 exclude: set[int], timeout_s: float = WAIT_S,
                 consumer_config: dict | None = None, bootstrap: str | None = None) -> None:
    """Every acknowledged record (value -> (partition, offset)) is read back from the live
    nodes (or `bootstrap`) exactly once, in order, at its acknowledged offset (the producers
    are idempotent: retries leave no duplicates), and nothing else is in the topic."""
    read = consume(bootstrap or cluster.bootstrap(exclude), topic, list(range(PARTITIONS)),
                   expected_count=len(acked), timeout_s=timeout_s, config=consumer_config)
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for record in read:
        by_partition.setdefault(record.partition, []).append((record.offset, record.value))
    for partition in range(PARTITIONS):
        expected = sorted((offset, value) for value, (p, offset) in acked.items()
                          if p == partition)
        got = by_partition.get(partition, [])
        if got != expected:
            first = next((index for index, (a, b) in enumerate(zip(got, expected)) if a != b),
                         min(len(got), len(expected)))
            raise AssertionError(
                f"partition {partition}: {len(got)} records read, {len(expected)} acknowledged;"
                f" first difference at index {first}\n{cluster.logs()}")


def leader_node(cluster: Cluster, topic: str, partition: int,
                exclude: set[int] = frozenset()) -> int:
    state = wait_for(f"a leader for partition {partition}",
                     lambda: partition_state(cluster.bootstrap(exclude), topic), cluster)
    return state[partition][0] // 1024


def load_in_flight(cluster: Cluster, topic: str, client=Load) -> Load:
    """A replicated topic and a producer with a third of its records sent, half of those
    acknowledged: the fault lands in the middle of the traffic."""
    create_replicated_topic(cluster, topic)
    load = client(cluster, topic)
    load.send(RECORDS // 3)
    load.wait_acked(RECORDS // 6, cluster)
    return load


def test_an_admin_client_of_a_cluster_just_formed_finds_its_controller_through_any_node(
        net_cluster, unique_topic):
    """librdkafka's AdminClient sends CreateTopics to the controller Metadata names, and waits
    until it knows that broker's address. A node that had not yet seen the controller's
    broker registered (or unfenced) named it anyway, without listing it: the client waited
    out its whole request timeout ("Failed while waiting for controller"). Every node, asked
    at once after the start, must name a broker it lists. (net_cluster: its cgroups slow the
    start a little, which made every run meet the window.)"""
    cluster = net_cluster
    for number, broker in enumerate(cluster.nodes, 1):
        topic = unique_topic(f"via-{number}")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        started = time.monotonic()
        # Replication factor 1: this early, the other nodes may not have registered yet (a
        # factor of 3 is refused with INVALID_REPLICATION_FACTOR then, as Kafka refuses it).
        futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                      request_timeout=10)
        futures[topic].result(timeout=15)  # one attempt: a timeout fails the test
        print(f"\nCreateTopics through node {number}: {time.monotonic() - started:.2f} s")


def test_an_idempotent_librdkafka_producer_rides_a_leaders_kill_9_and_the_node_catches_up(
        cluster, unique_topic):
    load = load_in_flight(cluster, unique_topic())
    topic = load.topic

    victim = leader_node(cluster, topic, 0)
    cluster.node(victim).kill9()
    load.send(RECORDS - load.sent)
    load.finish(cluster)
    verify(cluster, load, exclude={victim})

    # The killed node comes back, recovers its log and rejoins every ISR; then another node
    # dies and nothing is missing from the two that are left.
    cluster.node(victim).start()
    wait_for("the restarted node back in every ISR", lambda: full_isr(cluster, topic), cluster)
    # Partition 0 stays led elsewhere until a preferred election (AdminClient.elect_leaders,
    # Kafka's ElectLeaders) gives it back to its preferred replica, the node that led it.
    assert partition_state(cluster.bootstrap(), topic)[0][0] != victim * 1024
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    # (confluent-kafka 2.16's elect_leaders fails on its own keyword arguments: the
    # admin client's request timeout applies.)
    elected = admin.elect_leaders(ElectionType.PREFERRED,
                                  [TopicPartition(topic, 0)]).result(timeout=20)
    assert elected == {TopicPartition(topic, 0): None}, elected
    wait_for("partition 0 led by its preferred replica again",
             lambda: partition_state(cluster.bootstrap(), topic).get(0, (-1,))[0] == victim * 1024,
             cluster)
    again = admin.elect_leaders(ElectionType.PREFERRED,
                                [TopicPartition(topic, 0)]).result(timeout=20)
    assert again[TopicPartition(topic, 0)].code() == KafkaError.ELECTION_NOT_NEEDED, again
    second = next(n for n in range(1, NODES + 1) if n != victim)
    cluster.node(second).kill9()
    verify(cluster, load, exclude={second})


@pytest.mark.parametrize("client", [Load, KafkaPythonLoad], ids=["librdkafka", "kafka-python"])
def test_a_frozen_leader_that_wakes_up_acknowledges_nothing_and_loses_nothing(
        cluster, unique_topic, client):
    load = load_in_flight(cluster, unique_topic(), client)
    topic = load.topic

    zombie = leader_node(cluster, topic, 0)
    process = cluster.node(zombie).process
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        # Frozen past its session timeout: the controller fences it and partition 0 gets a
        # new leader from the ISR while the producer keeps writing.
        wait_for("a new leader for partition 0",
                 lambda: leader_node(cluster, topic, 0, exclude={zombie}) != zombie, cluster)
        load.send(RECORDS // 3)
        load.wait_acked(load.sent, cluster)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    # Awake again, the old leader finds itself fenced and follows; whatever it held of the
    # producer's requests was not acknowledged by it.
    load.send(RECORDS - load.sent)
    load.finish(cluster)
    wait_for("the woken node back in every ISR", lambda: full_isr(cluster, topic), cluster)
    verify(cluster, load, exclude=set())
    # And its copy is whole: read again with only it and one other node up.
    other = next(n for n in range(1, NODES + 1) if n != zombie)
    survivor = next(n for n in range(1, NODES + 1) if n not in (zombie, other))
    cluster.node(survivor).kill9()
    verify(cluster, load, exclude={survivor})


NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
                    reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)")
def test_an_idempotent_kafkajs_producer_rides_a_leaders_kill_9(cluster, unique_topic, tmp_path):
    """kafkajs (Node.js) retries its own way: it rolls its sequence numbers back when a request
    fails and sends the same batch again after refreshing metadata. Each record it was told
    about must be in the new leader's log once, at the offset it was told."""
    topic = unique_topic()
    create_replicated_topic(cluster, topic)
    output = tmp_path / "acked.jsonl"
    output.touch()
    script = subprocess.Popen(
        [NODE, str(NODE_DIR / "failover.js"), json.dumps({
            "brokers": cluster.bootstrap().split(","), "topic": topic,
            "partitions": PARTITIONS, "count": RECORDS, "batch": 10,
            "outputPath": str(output)})],
        cwd=NODE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        def acked_lines():
            return output.read_text().count("\n")
        wait_for("kafkajs acknowledgements before the kill",
                 lambda: acked_lines() >= RECORDS // 6 or script.poll() is not None, cluster)
        victim = leader_node(cluster, topic, 0)
        cluster.node(victim).kill9()
        try:
            stdout, stderr = script.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            script.kill()
            stdout, stderr = script.communicate()
            raise AssertionError(f"kafkajs did not finish within 180 s\n{stderr[-3000:]}\n"
                                 f"{cluster.logs()}")
        assert script.returncode == 0, (f"kafkajs failed (exit {script.returncode})\n"
                                        f"{stderr[-4000:]}\n{cluster.logs()}")
        assert json.loads(stdout.strip().splitlines()[-1]) == {"produced": RECORDS}
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
    acked = {}
    for line in output.read_text().splitlines():
        value, partition, offset = json.loads(line)
        assert value not in acked, f"{value} acknowledged twice"
        acked[value] = (partition, offset)
    assert len(acked) == RECORDS
    verify_acked(cluster, topic, acked, exclude={victim})


def read_group(bootstrap: str, topic: str, group: str, wanted: int, cluster: Cluster):
    """kafka-python consumer in `group`: reads at least `wanted` records (subscribe, rebalance,
    fetch), commits what it read, and returns [(partition, offset, value)] in read order."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id="spate-ci-kafka-python", max_poll_records=50,
                             request_timeout_ms=10_000, session_timeout_ms=6_000,
                             heartbeat_interval_ms=1_000)
    read: list[tuple[int, int, str]] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(read) < wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} read {len(read)} of {wanted} records "
                                     f"within {WAIT_S} s\n{cluster.logs()}")
            for records in consumer.poll(timeout_ms=200).values():
                read.extend((r.partition, r.offset, r.value.decode()) for r in records)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                consumer.commit()
                break
            except Exception:  # noqa: BLE001 - retriable while the coordinator moves
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close(autocommit=False)
    return read


def test_kafka_python_group_offsets_survive_the_kill_9_of_their_coordinator(cluster, unique_topic):
    topic = unique_topic()
    create_replicated_topic(cluster, topic)
    load = Load(cluster, topic)
    load.send(600)
    load.finish(cluster)
    group = f"{topic}-group"

    first = read_group(cluster.bootstrap(), topic, group, 200, cluster)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})  # alive until the result
    described = admin.describe_consumer_groups([group])[group].result(timeout=20)
    coordinator = described.coordinator.id // 1024
    cluster.node(coordinator).kill9()

    # A new member of the group, through the survivors, starts where the first one committed:
    # the committed offsets were replicated with __consumer_offsets and the new coordinator
    # loaded them.
    rest = read_group(cluster.bootstrap(exclude={coordinator}), topic, group,
                      600 - len(first), cluster)
    committed_end = {}
    for partition, offset, _ in first:
        committed_end[partition] = max(committed_end.get(partition, -1), offset + 1)
    starts = {}
    for partition, offset, _ in rest:
        starts.setdefault(partition, offset)
    for partition, start in starts.items():
        assert start == committed_end.get(partition, 0), (
            f"partition {partition}: the new member started at {start}, the group had "
            f"committed {committed_end.get(partition, 0)}\n{cluster.logs()}")
    values = [value for _, _, value in first] + [value for _, _, value in rest]
    assert sorted(values) == sorted(load.acked), "each record read once by the group"


def test_the_whole_cluster_killed_at_once_keeps_every_acknowledged_record(cluster, unique_topic):
    """Every node SIGKILLed at once in the middle of the traffic: an acknowledged record was
    written by every ISR member (fdatasync'ed, in fact), so after the restart all of it is there,
    whichever node leads. (SIGKILL loses what the processes held in memory, not the page cache:
    the fdatasync half of the promise is checked by the storage crash tests, not here.)"""
    topic = unique_topic()
    create_replicated_topic(cluster, topic)
    load = Load(cluster, topic)
    load.send(RECORDS)
    load.wait_acked(RECORDS // 2, cluster)
    for broker in cluster.nodes:
        broker.kill9()
    # What the client was told before the cut; what it learns later (it keeps retrying the
    # requests that were in flight, and may land them after the restart) is not counted.
    acked = dict(load.acked)
    for broker in cluster.nodes:
        broker.start_process()
    for broker in cluster.nodes:
        broker.wait_ready(timeout_s=WAIT_S)
    wait_for("every partition led with its full ISR after the restart",
             lambda: full_isr(cluster, topic), cluster)
    read = consume(cluster.bootstrap(), topic, list(range(PARTITIONS)), timeout_s=WAIT_S)
    where = {record.value: (record.partition, record.offset) for record in read}
    missing = [value for value, position in acked.items() if where.get(value) != position]
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged records missing or "
                         f"moved after the restart, e.g. {missing[:3]}\n{cluster.logs()}")
    values = [record.value for record in read]
    assert len(values) == len(set(values)), "no record twice"


def test_a_librdkafka_consumer_reads_from_the_in_sync_follower_in_its_rack(cluster, unique_topic):
    """KIP-392: a consumer that names its rack (client.rack) is sent by the leader to an
    in-sync replica in that rack (each node is rack `node-<id>` by default) and reads every
    acknowledged record there, once and in order; librdkafka's statistics say which broker
    each partition was fetched from."""
    topic = unique_topic()
    create_replicated_topic(cluster, topic)
    load = Load(cluster, topic)
    load.send(RECORDS)
    load.finish(cluster)
    leader, isr = partition_state(cluster.bootstrap(), topic)[0]
    follower = next(broker for broker in isr if broker != leader)
    fetched_from: dict[int, int] = {}

    def on_stats(text: str) -> None:
        partitions = json.loads(text).get("topics", {}).get(topic, {}).get("partitions", {})
        for index, partition in partitions.items():
            if int(index) >= 0 and partition.get("broker", -1) >= 0:
                fetched_from[int(index)] = partition["broker"]

    verify_acked(cluster, topic, load.acked, exclude=set(), consumer_config={
        "client.rack": f"node-{follower // 1024}",
        "statistics.interval.ms": 100,
        "stats_cb": on_stats,
    })
    print(f"\nfetched from {fetched_from}; partition 0 led by {leader}, follower {follower}")
    assert fetched_from.get(0) == follower, \
        f"partition 0 (leader {leader}) was fetched from {fetched_from.get(0)}, not {follower}"


def kafkajs_admin(cluster: Cluster, *steps):
    """ci/node/admin.js (kafkajs's admin client) against the whole cluster: each step's result."""
    command = [NODE, str(NODE_DIR / "admin.js"),
               json.dumps({"brokers": cluster.bootstrap().split(","), "steps": list(steps)})]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=NODE_DIR,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"admin.js exited {result.returncode}\n"
                                    f"{result.stderr[-4000:]}\n{cluster.logs()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def replicas_of(cluster: Cluster, topic: str, partition: int) -> list[int] | None:
    try:
        metadata = AdminClient({"bootstrap.servers": cluster.bootstrap()}).list_topics(
            topic, timeout=5)
    except Exception:  # noqa: BLE001
        return None
    entry = metadata.topics.get(topic)
    return None if entry is None else list(entry.partitions[partition].replicas)


@pytest.mark.skipif(NODE is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir(),
                    reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)")
def test_kafkajs_reassigns_a_partition_off_its_leader_and_back_under_librdkafka_load(
        cluster, unique_topic):
    """KIP-455 through a real admin client (kafkajs's alterPartitionReassignments and
    listPartitionReassignments) while an idempotent acks=all librdkafka producer writes:
    partition 0 leaves its leader's node (the leadership moves, the node's copy goes), then
    comes back to it (the node copies the log from scratch and joins the ISR before the
    reassignment completes). No delivery error; every acknowledged record read once, in
    order, at its offset."""
    topic = unique_topic()
    load = load_in_flight(cluster, topic)
    leader = partition_state(cluster.bootstrap(), topic)[0][0]
    others = [broker for broker in (1024, 2048, 3072) if broker != leader]

    def reassign(replicas):
        kafkajs_admin(cluster, {"op": "reassign", "topics": [
            {"topic": topic, "partitionAssignment": [{"partition": 0, "replicas": replicas}]}]})

    def settled():
        listed = kafkajs_admin(cluster, {"op": "listReassignments",
                                         "topics": [{"topic": topic, "partitions": [0]}]})[0]
        return all(not p["addingReplicas"] and not p["removingReplicas"]
                   for t in listed["topics"] for p in t["partitions"])

    reassign(others)
    wait_for("partition 0 off its leader's node",
             lambda: replicas_of(cluster, topic, 0) == others and settled(), cluster)
    load.send(RECORDS // 3)
    target = [leader, *others]
    reassign(target)
    wait_for("partition 0 back on all three nodes, in sync",
             lambda: replicas_of(cluster, topic, 0) == target and settled()
             and full_isr(cluster, topic), cluster)
    load.send(RECORDS - load.sent)
    load.finish(cluster)
    verify(cluster, load, exclude=set())


def test_librdkafka_creates_a_topic_on_the_replicas_it_names(cluster, unique_topic):
    """CreateTopics with explicit replica assignments (AdminClient's
    NewTopic(replica_assignment=...), kafka-topics.sh --replica-assignment): each partition
    lives on the brokers named, led by the first, and takes acks=all writes there; so does a
    partition added with CreatePartitions naming its replicas."""
    topic = unique_topic()
    wanted = [[2048, 3072], [3072, 1024], [1024, 2048]]

    def created():
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        futures = admin.create_topics([NewTopic(topic, num_partitions=len(wanted), replica_assignment=wanted)],
                                      request_timeout=15)
        try:
            futures[topic].result(timeout=20)
            return True
        except Exception as error:  # noqa: BLE001 - the quorum may still be registering nodes
            return "already exists" in str(error).lower()
    wait_for("CreateTopics with replica assignments", created, cluster)

    def placed():
        state = partition_state(cluster.bootstrap(), topic)
        return len(state) == PARTITIONS and all(
            replicas_of(cluster, topic, p) == wanted[p] and state[p] == (wanted[p][0], sorted(wanted[p]))
            for p in range(PARTITIONS))
    wait_for("each partition on its named replicas, led by the first", placed, cluster)
    load = Load(cluster, topic)
    load.send(300)
    load.finish(cluster)
    verify(cluster, load, exclude=set())
    # CreatePartitions naming the new partition's replicas (NewPartitions(replica_assignment)).
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_partitions([NewPartitions(topic, PARTITIONS + 1,
                                           replica_assignment=[[3072, 2048]])])[topic].result(20)
    wait_for("the added partition on its named replicas",
             lambda: replicas_of(cluster, topic, PARTITIONS) == [3072, 2048], cluster)
