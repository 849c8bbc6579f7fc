"""Classic consumer groups with real clients: confluent-kafka, kafka-python, kafkajs and kcat.

Members run as subprocesses (ci/compat/group_member.py, ci/node/group.js; see group_helpers.py)
that report their assignments, the records they processed and the offsets they committed. They
commit what they processed after every batch, synchronously, so in a steady group every record
is read exactly once, and across a rebalance at most the batch in flight is read twice.

- three members over six partitions get two each; records produced while the group is steady
  are read exactly once, each by the owner of its partition; then a member leaves cleanly (the
  other two get three each) and one is SIGKILLed (the last gets all six within the session
  timeout), and nothing produced meanwhile is lost (one test per client);
- offsets committed by each client survive a broker restart, and the same group resumes at
  exactly the committed offsets: nothing skipped, nothing committed read again; running
  members rejoin after a restart (membership is not kept) and carry on from their commits;
- a static member (group.instance.id) that stops without LeaveGroup and comes back within the
  session timeout gets its partitions back and nobody else rebalances;
- two `kcat -G` balanced consumers share a topic;
- admin: list/describe/delete groups (NON_EMPTY_GROUP while members are active), list and alter
  group offsets, and OffsetDelete.

The broker runs with a 1 s initial rebalance delay (Kafka's default is 3 s) to keep this short;
session timeouts are 6 s (the broker's minimum) and heartbeats 1 s.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, \
    KafkaException, TopicPartition

import kafka_wire as wire
from confluent_helpers import admin_client, create_topic, produce, watermarks
from group_helpers import CLIENTS, Members, kafkajs_available, \
    wait_balanced, wait_until
from records import FILLER, Record

PARTITIONS = 6
SESSION_MS = 6000
INITIAL_DELAY_MS = 1000
JOIN_TIMEOUT_S = 30

pytestmark = [
    pytest.mark.broker_args("--group-initial-rebalance-delay-ms", str(INITIAL_DELAY_MS)),
    pytest.mark.timeout(120),
]


def client_params(clients=CLIENTS):
    return [pytest.param(client, marks=pytest.mark.skipif(
        client == "kafkajs" and not kafkajs_available(),
        reason="node or ci/node/node_modules missing (ci/test.sh runs npm ci)"))
        for client in clients]


# -- producing and checking ----------------------------------------------------------------------
def produce_seqs(bootstrap: str, topic: str, start: int, count: int) -> dict[int, tuple[int, int]]:
    """Produce records start..start+count-1 round-robin over the partitions; returns
    seq -> (partition, offset) from the delivery reports."""
    records = [Record(f"key-{seq % 64:03d}", f"{seq:08d}-groups-{FILLER}")
               for seq in range(start, start + count)]
    delivered, errors = produce(bootstrap, topic, records,
                                partition_of=lambda index, _: (start + index) % PARTITIONS)
    assert not errors, f"produce to {topic} failed: {errors[:5]}"
    assert len(delivered) == count, f"{len(delivered)} of {count} delivered"
    return {int(value[:8]): where for value, where in delivered.items()}


def check_read_exactly_once(read: list[tuple[int, int, int]], expected: dict[int, tuple[int, int]],
                            context: str) -> None:
    """`read` (partition, offset, seq) is every record of `expected` once, where it was acked."""
    counts = Counter(seq for _, _, seq in read)
    duplicated = sorted(seq for seq, n in counts.items() if n > 1)
    missing = sorted(seq for seq in expected if seq not in counts)
    unexpected = sorted(seq for seq in counts if seq not in expected)
    misplaced = sorted((seq, (p, o), expected[seq]) for p, o, seq in read
                       if seq in expected and expected[seq] != (p, o))
    problems = []
    if duplicated:
        problems.append(f"{len(duplicated)} records read twice, e.g. {duplicated[:8]}")
    if missing:
        problems.append(f"{len(missing)} records never read, e.g. {missing[:8]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected records read, e.g. {unexpected[:8]}")
    if misplaced:
        problems.append(f"{len(misplaced)} records read at another (partition, offset) than "
                        f"acked (seq, read, acked), e.g. {misplaced[:5]}")
    assert not problems, f"{context}:\n  - " + "\n  - ".join(problems)


def seqs_read(members) -> set[int]:
    return {seq for member in members for _, _, seq in member.records()}


def group_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """partition -> committed offset, through confluent AdminClient (OffsetFetch)."""
    admin = admin_client(bootstrap)  # keep a reference: a destroyed client never completes
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                request_timeout=15)
    listed = futures[group].result(timeout=20)
    return {tp.partition: tp.offset for tp in listed.topic_partitions if tp.offset >= 0}


def describe_group(bootstrap: str, group: str):
    admin = admin_client(bootstrap)
    return admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)


def member_partitions(description) -> dict[str, list[int]]:
    """member_id -> sorted assigned partitions from a ConsumerGroupDescription."""
    return {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in description.members}


def start_trio(members: Members, client: str, group: str, topic: str, **options):
    return [members.start(f"{client}-{index}", client, group=group, topic=topic,
                          session_timeout_ms=SESSION_MS, **options) for index in range(3)]


# -- 1 + 2: three members, a clean leave, a kill --------------------------------------------------
@pytest.mark.parametrize("client", client_params())
def test_three_members_then_leave_then_kill(broker, unique_topic, tmp_path, client):
    topic = unique_topic(client)
    group = f"{topic}-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    with Members(broker.bootstrap, tmp_path) as members:
        trio = start_trio(members, client, group, topic)
        joined_s = wait_balanced(trio, PARTITIONS, JOIN_TIMEOUT_S,
                                 f"{client}: 3 members of {group} own 2 of {PARTITIONS} partitions each")
        print(f"{client}: group of 3 balanced after {joined_s:.1f} s")
        owner = {p: m for m in trio for p in m.assignment()}

        # Steady group: every record exactly once, by the member that owns its partition.
        steady_since = time.monotonic()
        first = produce_seqs(broker.bootstrap, topic, 0, 1200)
        wait_until(lambda: seqs_read(trio) >= set(first), 30,
                   f"{client}: steady group reads all 1200 records", lambda: members.describe())
        time.sleep(0.5)  # let a duplicate, if any, arrive
        read = [r for m in trio for r in m.records()]
        check_read_exactly_once(read, first, f"{client}: steady group of 3 over {topic}")
        wrong_owner = [(m.name, p, o) for m in trio for p, o, _ in m.records() if owner[p] is not m]
        assert not wrong_owner, f"records read by a member not owning their partition: {wrong_owner[:5]}"
        rebalances = {m.name: m.rebalance_events(steady_since) for m in trio}
        assert not any(rebalances.values()), f"{client}: steady group rebalanced: {rebalances}"
        wait_until(lambda: group_offsets(broker.bootstrap, group)
                   == {p: hw for p, (_, hw) in watermarks(broker.bootstrap, topic,
                                                           list(range(PARTITIONS))).items()},
                   15, f"{client}: committed offsets of {group} reach the end of every partition",
                   lambda: f"committed {group_offsets(broker.bootstrap, group)}")

        # A clean leave: the other two take over three partitions each.
        leaver, victim, last = trio[2], trio[1], trio[0]
        left_at = time.monotonic()
        leaver.close()
        assert leaver.wait_exit(30) == 0, leaver.describe()
        assert leaver.has("closed"), leaver.describe()
        second = produce_seqs(broker.bootstrap, topic, 1200, 600)
        wait_balanced([last, victim], PARTITIONS, 20,
                      f"{client}: after {leaver.name} left, 2 members own 3 partitions each",
                      others=[leaver])
        leave_s = max(e["mono"] for m in (last, victim) for e in m.of("assigned")) - left_at
        print(f"{client}: rebalanced {leave_s:.1f} s after a clean leave")
        assert leave_s < SESSION_MS / 1000, (
            f"{client}: the rebalance after a LeaveGroup took {leave_s:.1f} s, as long as a "
            f"session timeout: was the LeaveGroup ignored?\n{members.describe()}")

        # A kill: no LeaveGroup; the survivor owns all six once the session expires.
        killed_at = time.monotonic()
        victim.kill()
        third = produce_seqs(broker.bootstrap, topic, 1800, 600)
        kill_s = wait_until(lambda: last.assignment() == list(range(PARTITIONS)),
                            SESSION_MS / 1000 + 8,
                            f"{client}: after {victim.name} was killed, {last.name} owns all "
                            f"{PARTITIONS} partitions", lambda: members.describe())
        print(f"{client}: survivor owns everything {kill_s:.1f} s after the kill "
              f"(session timeout {SESSION_MS / 1000:.0f} s)")
        everything = {**first, **second, **third}
        wait_until(lambda: seqs_read(trio) >= set(everything), 30,
                   f"{client}: every record produced around the leave and the kill is read",
                   lambda: f"missing {sorted(set(everything) - seqs_read(trio))[:20]}\n"
                           f"{members.describe()}")
        # At least once: a record is read twice only if its commit was lost with the killed
        # member (its last batch) or overtaken by a rebalance.
        counts = Counter(seq for m in trio for _, _, seq in m.records())
        twice = sorted(seq for seq, n in counts.items() if n > 1)
        print(f"{client}: {len(twice)} records read twice around the leave and the kill")
        assert all(seq in everything for seq in counts), "records read that were never produced"
        wait_until(lambda: group_offsets(broker.bootstrap, group)
                   == {p: hw for p, (_, hw) in watermarks(broker.bootstrap, topic,
                                                           list(range(PARTITIONS))).items()},
                   15, f"{client}: the survivor's commits reach the end of every partition",
                   lambda: f"committed {group_offsets(broker.bootstrap, group)}")
        commit_errors = [(m.name, e["error"]) for m in trio for e in m.of("commit_error")]
        print(f"{client}: commit errors {commit_errors}")
        last.close()
        assert last.wait_exit(30) == 0, last.describe()


# -- 3: committed offsets survive a broker restart -------------------------------------------------
def test_commits_survive_broker_restart(broker, unique_topic, tmp_path):
    """Each client's group reads 1000 records committing them, 150 more without committing, and
    closes. After a broker restart the same group resumes exactly at the committed offsets:
    nothing is skipped, and only the 150 uncommitted records are read a second time."""
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = produce_seqs(broker.bootstrap, topic, 0, 3000)
    where = {(p, o): seq for seq, (p, o) in produced.items()}
    committed_count, uncommitted_count = 1000, 150
    clients = [c for c in CLIENTS if c != "kafkajs" or kafkajs_available()]
    groups = {client: f"{topic}-{client}" for client in clients}
    with Members(broker.bootstrap, tmp_path) as members:
        before = {client: members.start(f"{client}-before", client, group=groups[client],
                                        topic=topic, session_timeout_ms=SESSION_MS,
                                        max_records=committed_count,
                                        uncommitted=uncommitted_count, close_when_done=True)
                  for client in clients}
        for client, member in before.items():
            wait_until(lambda: member.has("closed"), 45,
                       f"{client} reads {committed_count}+{uncommitted_count} records and closes",
                       member.describe)
            assert member.wait_exit(20) == 0, member.describe()
            read = member.records()
            assert len(read) == committed_count + uncommitted_count, member.describe()
            by_partition = defaultdict(list)
            for p, o, seq in read:
                by_partition[p].append(o)
                assert where.get((p, o)) == seq, f"{client}: read seq {seq} at {(p, o)}"
            for p, offsets in by_partition.items():
                assert offsets == list(range(len(offsets))), \
                    f"{client}: partition {p} read out of order or with gaps: {offsets[:20]}"
        reported = {client: member.committed() for client, member in before.items()}
        for client in clients:
            assert sum(reported[client].values()) == committed_count, \
                f"{client} committed {reported[client]}, {committed_count} records in all"
            assert group_offsets(broker.bootstrap, groups[client]) == reported[client], \
                f"{client}: OffsetFetch disagrees with the commits the client saw succeed"

        broker.restart()

        for client in clients:
            after_restart = group_offsets(broker.bootstrap, groups[client])
            assert after_restart == reported[client], (
                f"{client}: committed offsets of {groups[client]} changed across the restart: "
                f"before {reported[client]}, after {after_restart}")
        resumed = {client: members.start(f"{client}-after", client, group=groups[client],
                                         topic=topic, session_timeout_ms=SESSION_MS)
                   for client in clients}
        for client, member in resumed.items():
            expected = {seq: (p, o) for seq, (p, o) in produced.items()
                        if o >= reported[client].get(p, 0)}
            wait_until(lambda: {s for _, _, s in member.records()} >= set(expected), 45,
                       f"{client} resumes {groups[client]} after the restart and reads the rest",
                       member.describe)
            time.sleep(0.3)
            read = member.records()
            check_read_exactly_once(read, expected, f"{client}: resuming {groups[client]} "
                                    f"after a broker restart (committed {reported[client]})")
            first_read = {}
            for p, o, _ in read:
                first_read.setdefault(p, o)
            wanted_first = {p: reported[client].get(p, 0) for p in first_read}
            assert first_read == wanted_first, (
                f"{client}: first offsets read after the restart {first_read}, committed "
                f"{reported[client]}")
            again = sorted({s for _, _, s in before[client].records()} & {s for _, _, s in read})
            assert len(again) == uncommitted_count, (
                f"{client}: {len(again)} records read both before and after the restart; "
                f"exactly the {uncommitted_count} uncommitted ones should be")
            member.close()
        for member in resumed.values():
            assert member.wait_exit(30) == 0, member.describe()


def test_live_groups_rejoin_after_broker_restart(broker, unique_topic, tmp_path):
    """Committed offsets survive a broker restart, group membership does not (unlike Kafka,
    which keeps it in __consumer_offsets): running members of each client find out, rejoin,
    and carry on from their commits. Nothing committed before the restart is read again;
    records read between the restart and the rejoin may be read twice (their commits carry
    the lost generation); once the group is back, every record is read exactly once."""
    topic = unique_topic()
    create_topic(broker.bootstrap, topic, PARTITIONS)
    before = produce_seqs(broker.bootstrap, topic, 0, 900)
    ends = lambda: {p: hw for p, (_, hw) in watermarks(broker.bootstrap, topic,
                                                         list(range(PARTITIONS))).items()}
    clients = [c for c in CLIENTS if c != "kafkajs" or kafkajs_available()]
    groups = {client: f"{topic}-{client}" for client in clients}
    with Members(broker.bootstrap, tmp_path) as members:
        pairs = {client: [members.start(f"{client}-{index}", client, group=groups[client],
                                        topic=topic, session_timeout_ms=SESSION_MS)
                          for index in range(2)]
                 for client in clients}
        for client, pair in pairs.items():
            wait_balanced(pair, PARTITIONS, JOIN_TIMEOUT_S, f"{client}: 2 members own 3 each")
            wait_until(lambda: seqs_read(pair) >= set(before), 30,
                       f"{client}: the pair reads the records produced before the restart",
                       lambda: members.describe(pair))
            wait_until(lambda: group_offsets(broker.bootstrap, groups[client]) == ends(), 15,
                       f"{client}: the pair commits everything before the restart",
                       lambda: f"committed {group_offsets(broker.bootstrap, groups[client])}")

        restarted_at = time.monotonic()
        broker.restart()
        during = produce_seqs(broker.bootstrap, topic, 900, 600)
        for client, pair in pairs.items():
            wait_until(lambda: all(m.of("assigned", since=restarted_at) for m in pair),
                       SESSION_MS / 1000 + 15, f"{client}: both members rejoin after the restart",
                       lambda: members.describe(pair))
            wait_balanced(pair, PARTITIONS, 20, f"{client}: the pair is balanced again")
            print(f"{client}: rejoined {time.monotonic() - restarted_at:.1f} s after the "
                  f"restart began")
            wait_until(lambda: seqs_read(pair) >= set(before) | set(during), 30,
                       f"{client}: the pair reads the records produced during the rejoin",
                       lambda: members.describe(pair))
            again = sorted({s for m in pair for _, _, s in m.records(since=restarted_at)}
                           & set(before))
            assert not again, (f"{client}: {len(again)} records committed before the restart "
                               f"were read again after it, e.g. {again[:8]}")
        settled_at = time.monotonic()
        after = produce_seqs(broker.bootstrap, topic, 1500, 600)
        for client, pair in pairs.items():
            wait_until(lambda: seqs_read(pair) >= set(after), 30,
                       f"{client}: the rejoined pair reads new records", lambda: members.describe(pair))
        time.sleep(0.3)
        for client, pair in pairs.items():
            read = [r for m in pair for r in m.records(since=settled_at)]
            check_read_exactly_once(read, after, f"{client}: group rejoined after a broker restart")
            assert not any(m.rebalance_events(settled_at) for m in pair), members.describe(pair)
            wait_until(lambda: group_offsets(broker.bootstrap, groups[client]) == ends(), 15,
                       f"{client}: the pair commits everything after the restart",
                       lambda: f"committed {group_offsets(broker.bootstrap, groups[client])}")
        for member in members.all:
            member.close()
        for member in members.all:
            assert member.wait_exit(30) == 0, member.describe()


# -- 4: static membership ------------------------------------------------------------------------
STATIC_SESSION_MS = 10000


@pytest.mark.parametrize("client,stop,role", [
    ("confluent", "close", "follower"), ("confluent", "kill", "leader"),
    ("kafka-python", "kill", "follower"), ("kafka-python", "close", "leader")])
def test_static_member_restart_without_rebalance(broker, unique_topic, tmp_path, client, stop,
                                                 role):
    """Static members (group.instance.id) do not send LeaveGroup, so one that stops (closed or
    killed) and comes back with the same instance id within the session timeout gets its
    partitions back and the group does not rebalance (KIP-345).

    The first member joins alone, so it is the group leader (the leader stays the leader while
    it is a member); `role` says whether the leader or a follower is restarted. Kafka does not
    rebalance in either case: for a restarted static leader it answers JoinGroup (< v9) with
    the old leader id, so the new instance acts as a follower and just syncs its assignment
    (GroupCoordinator.updateStaticMemberAndRebalance, "We want to avoid current leader
    performing trivial assignment while the group is in stable stage")."""
    topic = unique_topic()
    group = f"{topic}-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    instance = [f"{group}-static-{index}" for index in range(3)]
    with Members(broker.bootstrap, tmp_path) as members:
        def start(index, suffix=""):
            return members.start(f"{client}-s{index}{suffix}", client, group=group, topic=topic,
                                 instance_id=instance[index], session_timeout_ms=STATIC_SESSION_MS)

        leader = start(0)
        wait_until(lambda: leader.assignment() == list(range(PARTITIONS)), JOIN_TIMEOUT_S,
                   f"{client}: the first static member owns everything", leader.describe)
        trio = [leader, start(1), start(2)]
        wait_balanced(trio, PARTITIONS, JOIN_TIMEOUT_S,
                      f"{client}: 3 static members own 2 partitions each")
        first = produce_seqs(broker.bootstrap, topic, 0, 600)
        wait_until(lambda: seqs_read(trio) >= set(first), 30,
                   f"{client}: static group reads the first records", members.describe)
        described = describe_group(broker.bootstrap, group)
        assert described.state == ConsumerGroupState.STABLE, described.state
        member_of = {m.group_instance_id: m.member_id for m in described.members}
        assert sorted(member_of) == sorted(instance), \
            f"DescribeGroups instance ids {sorted(member_of)}, expected {instance}"
        owned_before = {m.group_instance_id: p for m, p in
                        zip(described.members, member_partitions(described).values())}
        target = 0 if role == "leader" else 1
        leaving = trio[target]
        others = [m for m in trio if m is not leaving]
        kept = [i for i in instance if i != instance[target]]
        old_partitions = leaving.assignment()
        assert owned_before[instance[target]] == old_partitions, (owned_before, old_partitions)
        generations = {m.name: m.of("assigned")[-1].get("generation") for m in trio}
        stats_before = {m.name: (m.last_stats() or {}).get("rebalance_cnt") for m in others}
        if client == "confluent":
            assert all(count for count in stats_before.values()), \
                f"no librdkafka rebalance_cnt statistics from {stats_before}"
        else:
            assert all(isinstance(g, int) and g > 0 for g in generations.values()), generations

        stopped_at = time.monotonic()
        if stop == "close":
            leaving.close()
            assert leaving.wait_exit(20) == 0, leaving.describe()
        else:
            leaving.kill()
        time.sleep(1.5)  # a LeaveGroup, had one been sent, would have started a rebalance
        described = describe_group(broker.bootstrap, group)
        assert described.state == ConsumerGroupState.STABLE and len(described.members) == 3, (
            f"{client}: after a static member {'closed' if stop == 'close' else 'was killed'} the "
            f"group is {described.state} with {len(described.members)} members; a static member "
            f"stays until its session times out\n{members.describe()}")

        back = start(target, "-again")
        wait_until(lambda: back.assignment(), STATIC_SESSION_MS / 1000,
                   f"{client}: the restarted static member gets an assignment",
                   lambda: members.describe([*trio, back]))
        rejoined_s = time.monotonic() - stopped_at
        print(f"{client}/{stop}/{role}: static member back with its partitions {rejoined_s:.1f} s "
              f"after it stopped")
        assert rejoined_s < STATIC_SESSION_MS / 1000, f"rejoin took {rejoined_s:.1f} s"
        assert back.assignment() == old_partitions, (
            f"{client}: restarted static member {instance[target]} got {back.assignment()}, it had "
            f"{old_partitions}\n{members.describe([*trio, back])}")
        time.sleep(2.5)  # more than two heartbeats: a rebalance would reach the others
        moved = {m.name: m.rebalance_events(stopped_at) for m in others}
        assert not any(moved.values()), (
            f"{client}: the other members rebalanced when the static {role} came back: {moved}\n"
            f"{members.describe([*trio, back])}")
        if client == "confluent":
            stats_after = {m.name: (m.last_stats() or {}).get("rebalance_cnt") for m in others}
            assert stats_after == stats_before, \
                f"librdkafka rebalance_cnt of the others changed: {stats_before} -> {stats_after}"
        else:
            generation = back.of("assigned")[-1].get("generation")
            assert generation == generations[leaving.name], (
                f"kafka-python: restarted static member is in generation {generation}, the "
                f"group was in {generations[leaving.name]}: the group rebalanced")
        described = describe_group(broker.bootstrap, group)
        now_member_of = {m.group_instance_id: m.member_id for m in described.members}
        assert described.state == ConsumerGroupState.STABLE, described.state
        assert sorted(now_member_of) == sorted(instance), now_member_of
        assert {i: now_member_of[i] for i in kept} == {i: member_of[i] for i in kept}, \
            (member_of, now_member_of)
        assert back.of("assigned")[-1]["member_id"] == now_member_of[instance[target]], \
            (back.of("assigned")[-1], now_member_of)
        owned_now = {m.group_instance_id: p for m, p in
                     zip(described.members, member_partitions(described).values())}
        assert owned_now == owned_before, (owned_before, owned_now)

        # The restarted member resumes from the commits of its predecessor.
        second = produce_seqs(broker.bootstrap, topic, 600, 600)
        current = [*others, back]
        wait_until(lambda: seqs_read(current) >= set(second), 30,
                   f"{client}: the static group reads records produced after the restart",
                   lambda: members.describe(current))
        time.sleep(0.3)
        read = back.records() + [r for m in others for r in m.records(since=stopped_at)]
        check_read_exactly_once(read, second, f"{client}: static group after the restart (the "
                                f"restarted member resumes at its predecessor's commits)")
        for member in current:
            member.close()


# -- 5: kcat -G ----------------------------------------------------------------------------------
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat_assignment(stderr_path) -> list[int] | None:
    """What a `kcat -G` owns, from its last "% Group .. rebalanced (..): assigned|revoked: .."."""
    owned = None
    for line in stderr_path.read_text(errors="replace").splitlines():
        if "rebalanced" not in line:
            continue
        if "): assigned:" in line:
            owned = sorted(int(part.split("[")[1].rstrip("]")) for part in
                           line.split("): assigned:", 1)[1].split(","))
        elif "): revoked:" in line:
            owned = []
    return owned


def kcat_records(stdout_path) -> list[tuple[int, int, int]]:
    read = []
    # -u writes as it goes: a last line without its newline is still being written.
    for line in stdout_path.read_text(errors="replace").split("\n")[:-1]:
        partition, offset, value = line.split("|", 2)
        read.append((int(partition), int(offset), int(value[:8])))
    return read


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (ci/test.sh installs it)")
def test_kcat_balanced_consumers(broker, unique_topic, tmp_path):
    topic = unique_topic()
    group = f"{topic}-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    processes = []
    try:
        for index in range(2):
            out, err = tmp_path / f"kcat-{index}.out", tmp_path / f"kcat-{index}.err"
            command = [KCAT, "-b", broker.bootstrap, "-G", group, "-o", "beginning", "-u",
                       "-X", f"session.timeout.ms={SESSION_MS}", "-X", "heartbeat.interval.ms=1000",
                       "-X", "auto.commit.interval.ms=500", "-f", "%p|%o|%s\n", topic]
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                processes.append((subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                                   stdout=stdout, stderr=stderr), out, err))

        def describe():
            return "\n".join(f"kcat {i}: exit {p.poll()}, owns {kcat_assignment(e)}, "
                             f"{len(kcat_records(o))} records, stderr {e.read_text()[-800:]!r}"
                             for i, (p, o, e) in enumerate(processes))

        def balanced_now():
            owned = [kcat_assignment(err) for _, _, err in processes]
            return all(o is not None and len(o) == 3 for o in owned) and \
                sorted(p for o in owned for p in o) == list(range(PARTITIONS))

        wait_until(balanced_now, JOIN_TIMEOUT_S, "two kcat -G own 3 partitions each", describe)
        time.sleep(1.0)
        assert balanced_now(), describe()
        owners = {p: index for index, (_, _, err) in enumerate(processes)
                  for p in kcat_assignment(err)}
        produced = produce_seqs(broker.bootstrap, topic, 0, 2000)
        wait_until(lambda: sum(len(kcat_records(o)) for _, o, _ in processes) >= len(produced), 30,
                   "two kcat -G consumers read every record", describe)
        time.sleep(0.5)
        read = [r for _, out, _ in processes for r in kcat_records(out)]
        check_read_exactly_once(read, produced, f"two kcat -G consumers of {topic}")
        for index, (_, out, _) in enumerate(processes):
            strays = [(p, o) for p, o, _ in kcat_records(out) if owners[p] != index]
            assert not strays, f"kcat {index} read partitions it does not own: {strays[:5]}"
        for process, _, _ in processes:
            process.send_signal(signal.SIGTERM)  # kcat closes the consumer: commit, LeaveGroup
        for process, _, _ in processes:
            assert process.wait(timeout=20) == 0, describe()
        ends = {p: hw for p, (_, hw) in watermarks(broker.bootstrap, topic,
                                                   list(range(PARTITIONS))).items()}
        assert group_offsets(broker.bootstrap, group) == ends, \
            "kcat's auto-commit on close did not commit the end of every partition"
        assert describe_group(broker.bootstrap, group).state == ConsumerGroupState.EMPTY
    finally:
        for process, _, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


# -- 6: admin ------------------------------------------------------------------------------------
FIND_COORDINATOR, OFFSET_DELETE = 10, 47


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _read_string(body: bytes, at: int) -> tuple[str, int]:
    (size,) = struct.unpack_from(">h", body, at)
    return body[at + 2:at + 2 + size].decode(), at + 2 + size


def offset_delete(broker, group: str, topic: str, partitions: list[int]):
    """OffsetDelete v0 (no client in this suite has it): FindCoordinator v0, then OffsetDelete
    to the coordinator. Returns (top-level error, {partition: error})."""
    with wire.connect(broker.base_port) as sock:
        sock.sendall(wire.frame(wire.request_header_v1(FIND_COORDINATOR, 0, 1) + _string(group)))
        body = wire.read_frame(sock)
    error, node = struct.unpack_from(">hi", body, 4)
    host, at = _read_string(body, 10)
    (port,) = struct.unpack_from(">i", body, at)
    assert error == 0 and host == "127.0.0.1", f"FindCoordinator v0 for {group}: error {error}, {host}"
    request = (_string(group) + struct.pack(">i", 1) + _string(topic)
               + struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions))
    with wire.connect(port) as sock:
        sock.sendall(wire.frame(wire.request_header_v1(OFFSET_DELETE, 0, 2) + request))
        body = wire.read_frame(sock)
    (correlation, error, _throttle, topic_count) = struct.unpack_from(">ihii", body, 0)
    assert correlation == 2
    results, at = {}, 14
    for _ in range(topic_count):
        name, at = _read_string(body, at)
        (count,) = struct.unpack_from(">i", body, at)
        at += 4
        for _ in range(count):
            partition, partition_error = struct.unpack_from(">ih", body, at)
            at += 6
            results[partition] = partition_error
    return error, results


def kafka_python_admin(bootstrap: str):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000,
                            client_id="spate-ci-kafka-python-admin")


def test_admin_list_describe_delete_groups_and_offsets(broker, unique_topic, tmp_path):
    from kafka.errors import NoError, NonEmptyGroupError

    topic = unique_topic()
    group = f"{topic}-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = produce_seqs(broker.bootstrap, topic, 0, 600)
    ends = {p: hw for p, (_, hw) in watermarks(broker.bootstrap, topic,
                                               list(range(PARTITIONS))).items()}
    admin = admin_client(broker.bootstrap)
    kadmin = kafka_python_admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path) as members:
        pair = [members.start(f"admin-{index}", "confluent", group=group, topic=topic,
                              session_timeout_ms=SESSION_MS) for index in range(2)]
        wait_balanced(pair, PARTITIONS, JOIN_TIMEOUT_S, "2 members own 3 partitions each")
        wait_until(lambda: seqs_read(pair) >= set(produced), 30, "the pair reads everything",
                   members.describe)
        wait_until(lambda: group_offsets(broker.bootstrap, group) == ends, 15,
                   "the pair commits the end of every partition",
                   lambda: f"committed {group_offsets(broker.bootstrap, group)}, ends {ends}")

        # ListGroups and DescribeGroups while the group is active.
        listed = admin.list_consumer_groups(request_timeout=15).result(timeout=20)
        assert not listed.errors, listed.errors
        mine = [g for g in listed.valid if g.group_id == group]
        assert len(mine) == 1, f"{group} not listed once: {[g.group_id for g in listed.valid]}"
        assert mine[0].state == ConsumerGroupState.STABLE, mine[0].state
        assert not mine[0].is_simple_consumer_group
        described = describe_group(broker.bootstrap, group)
        assert described.state == ConsumerGroupState.STABLE, described.state
        assert described.partition_assignor == "range", described.partition_assignor
        assert not described.is_simple_consumer_group
        assert sorted(m.client_id for m in described.members) == ["spate-ci-admin-0",
                                                                  "spate-ci-admin-1"]
        assert all(m.host for m in described.members), [m.host for m in described.members]
        by_member = member_partitions(described)
        assert sorted(by_member) == sorted(m.of("assigned")[-1]["member_id"] for m in pair), \
            (by_member, [m.of("assigned")[-1]["member_id"] for m in pair])
        assert sorted(p for ps in by_member.values() for p in ps) == list(range(PARTITIONS))
        assert all(by_member[m.of("assigned")[-1]["member_id"]] == m.assignment() for m in pair)
        assert described.coordinator is not None and described.coordinator.port in broker.ports

        klisted = kadmin.list_consumer_groups()
        assert (group, "consumer") in [tuple(g[:2]) for g in klisted], klisted
        [kdescribed] = kadmin.describe_consumer_groups([group])
        assert kdescribed.state == "Stable" and kdescribed.protocol_type == "consumer", kdescribed
        assert kdescribed.protocol == "range" and len(kdescribed.members) == 2, kdescribed
        kassigned = sorted(p for m in kdescribed.members
                           for t, ps in m.member_assignment.assignment for p in ps if t == topic)
        assert kassigned == list(range(PARTITIONS)), kdescribed.members
        koffsets = kadmin.list_consumer_group_offsets(group)
        assert {tp.partition: om.offset for tp, om in koffsets.items() if tp.topic == topic} == ends

        # DeleteGroups and OffsetDelete refuse while members are active.
        with pytest.raises(KafkaException) as refused:
            admin.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, refused.value
        kdeleted = dict(kadmin.delete_consumer_groups([group]))
        assert kdeleted[group] is NonEmptyGroupError, kdeleted
        error, per_partition = offset_delete(broker, group, topic, [5])
        assert (error, per_partition) == (0, {5: 86}), (
            f"OffsetDelete on a partition of a topic the active group subscribes to: expected "
            f"GROUP_SUBSCRIBED_TO_TOPIC (86) for it, got top-level {error}, {per_partition}")

        # AlterConsumerGroupOffsets is an OffsetCommit without member or generation: Kafka
        # takes it only from an empty group (UNKNOWN_MEMBER_ID otherwise).
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
        try:
            result = admin.alter_consumer_group_offsets([request], request_timeout=15)[group] \
                .result(timeout=20)
            errors = [tp.error.code() if tp.error else None for tp in result.topic_partitions]
        except KafkaException as error:
            errors = [error.args[0].code()]
        assert errors == [KafkaError.UNKNOWN_MEMBER_ID], (
            f"altering the offsets of an active group: expected UNKNOWN_MEMBER_ID, got {errors}")
        assert group_offsets(broker.bootstrap, group) == ends

        for member in pair:
            member.close()
        for member in pair:
            assert member.wait_exit(30) == 0, member.describe()

    # Empty group: offsets stay; alter them, and delete one partition's offset.
    described = describe_group(broker.bootstrap, group)
    assert described.state == ConsumerGroupState.EMPTY and not described.members, \
        (described.state, described.members)
    assert group_offsets(broker.bootstrap, group) == ends
    altered = {p: p * 10 for p in range(PARTITIONS)}
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o)
                                                   for p, o in altered.items()])
    result = admin.alter_consumer_group_offsets([request], request_timeout=15)[group].result(timeout=20)
    assert all(tp.error is None for tp in result.topic_partitions), result.topic_partitions
    assert group_offsets(broker.bootstrap, group) == altered
    assert {tp.partition: om.offset for tp, om in kadmin.list_consumer_group_offsets(group).items()
            if tp.topic == topic} == altered
    error, per_partition = offset_delete(broker, group, topic, [5])
    assert (error, per_partition) == (0, {5: 0}), (error, per_partition)
    del altered[5]
    assert group_offsets(broker.bootstrap, group) == altered

    # DeleteGroups on the empty group, through each admin client.
    admin.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    listed = admin.list_consumer_groups(request_timeout=15).result(timeout=20)
    assert group not in [g.group_id for g in listed.valid]
    assert group_offsets(broker.bootstrap, group) == {}
    other = f"{topic}-other"
    request = ConsumerGroupTopicPartitions(other, [TopicPartition(topic, 0, 3)])
    admin.alter_consumer_group_offsets([request], request_timeout=15)[other].result(timeout=20)
    assert group_offsets(broker.bootstrap, other) == {0: 3}
    kdeleted = dict(kadmin.delete_consumer_groups([other]))
    assert kdeleted[other] is NoError, kdeleted
    assert group_offsets(broker.bootstrap, other) == {}
    kadmin.close()
