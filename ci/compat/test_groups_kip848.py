"""KIP-848 consumer groups (`group.protocol=consumer`) with a real client: confluent-kafka
(librdkafka 2.12+, where the protocol is generally available), the members run as subprocesses
as in test_groups.py (ci/compat/group_member.py with group_protocol "consumer").

The broker assigns (ConsumerGroupHeartbeat v1) and members reconcile incrementally: nobody
gives up a partition it keeps.

- three members over six partitions get two each; records produced while the group is steady
  are read exactly once, each by the owner of its partition, and committed (OffsetCommit at
  the member epoch); a clean leave hands the leaver's partitions to the other two well within
  the session timeout, a SIGKILL within the session timeout, and nothing is lost;
- the admin client sees a "consumer" group: ListGroups' type, ConsumerGroupDescribe's state,
  members and assignments;
- once the last member has left, the same group id serves a classic member (the empty consumer
  group becomes classic), which resumes at the offsets the KIP-848 members committed.

The broker tells members to heartbeat every 500 ms (Kafka's default is 5 s) and fences them
after 6 s of silence (Kafka's default is 45 s), to keep this short.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from confluent_kafka import ConsumerGroupType

from confluent_helpers import admin_client, create_topic, watermarks
from conftest import SPATE_BIN
from group_helpers import Members, wait_balanced, wait_until
from test_groups import PARTITIONS, check_read_exactly_once, group_offsets, produce_seqs, \
    seqs_read

SESSION_MS = 6000
HEARTBEAT_MS = 500

pytestmark = [
    pytest.mark.broker_args("--group-consumer-session-timeout-ms", str(SESSION_MS),
                            "--group-consumer-heartbeat-interval-ms", str(HEARTBEAT_MS),
                            "--group-initial-rebalance-delay-ms", "500"),
    pytest.mark.timeout(150),
]


def spate_json(bootstrap: str, *args: str):
    """`spate ... --json` against the broker, parsed."""
    done = subprocess.run([str(SPATE_BIN), *args, "--json", "--brokers", bootstrap],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def commits_reach_end(bootstrap: str, group: str, topic: str) -> bool:
    ends = {p: hw for p, (_, hw) in watermarks(bootstrap, topic, list(range(PARTITIONS))).items()}
    return group_offsets(bootstrap, group) == ends


def test_members_share_leave_and_die_and_a_classic_member_resumes_after_them(
        broker, unique_topic, tmp_path):
    topic = unique_topic("kip848")
    group = f"{topic}-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    with Members(broker.bootstrap, tmp_path) as members:
        trio = [members.start(f"kip848-{index}", "confluent", group=group, topic=topic,
                              group_protocol="consumer", commit=True) for index in range(3)]
        joined_s = wait_balanced(trio, PARTITIONS, 30,
                                 f"3 KIP-848 members of {group} own 2 of {PARTITIONS} each")
        print(f"KIP-848 group of 3 balanced after {joined_s:.1f} s")
        owner = {p: m for m in trio for p in m.assignment()}

        steady_since = time.monotonic()
        first = produce_seqs(broker.bootstrap, topic, 0, 1200)
        wait_until(lambda: seqs_read(trio) >= set(first), 30, "steady group reads all 1200",
                   lambda: members.describe())
        time.sleep(0.5)  # let a duplicate, if any, arrive
        check_read_exactly_once([r for m in trio for r in m.records()], first,
                                f"steady KIP-848 group of 3 over {topic}")
        wrong_owner = [(m.name, p) for m in trio for p, _, _ in m.records() if owner[p] is not m]
        assert not wrong_owner, f"records read by a member not owning them: {wrong_owner[:5]}"
        rebalances = {m.name: m.rebalance_events(steady_since) for m in trio}
        assert not any(rebalances.values()), f"steady group rebalanced: {rebalances}"
        wait_until(lambda: commits_reach_end(broker.bootstrap, group, topic), 15,
                   "committed offsets reach the end of every partition",
                   lambda: f"committed {group_offsets(broker.bootstrap, group)}")

        # The admin client sees a consumer group, described with ConsumerGroupDescribe.
        admin = admin_client(broker.bootstrap)
        listed = admin.list_consumer_groups(request_timeout=15).result(timeout=20)
        types = {g.group_id: g.type for g in listed.valid}
        assert types.get(group) == ConsumerGroupType.CONSUMER, types
        described = admin.describe_consumer_groups([group], request_timeout=15)[group] \
            .result(timeout=20)
        assigned = sorted(tp.partition for m in described.members
                          for tp in m.assignment.topic_partitions)
        assert (str(described.state), len(described.members), assigned) == \
            ("ConsumerGroupState.STABLE", 3, list(range(PARTITIONS))), described
        # And so does the operator's CLI.
        shown = spate_json(broker.bootstrap, "group", "describe", group)
        assert (shown["type"], shown["state"], len(shown["members"])) == \
            ("consumer", "Stable", 3), shown
        assert sorted(p for m in shown["members"] for p in m["assignment"][topic]) == \
            list(range(PARTITIONS)), shown
        assert all(row["lag"] == 0 for row in shown["offsets"]), shown
        listed = {g["group"]: g["type"] for g in spate_json(broker.bootstrap, "group", "list")}
        assert listed.get(group) == "consumer", listed

        # A clean leave: the other two each take one more, and keep what they had.
        leaver, victim, last = trio[2], trio[1], trio[0]
        kept = {m.name: set(m.assignment()) for m in (last, victim)}
        left_at = time.monotonic()
        leaver.close()
        assert leaver.wait_exit(30) == 0, leaver.describe()
        second = produce_seqs(broker.bootstrap, topic, 1200, 600)
        wait_balanced([last, victim], PARTITIONS, 20,
                      f"after {leaver.name} left, 2 members own 3 partitions each",
                      others=[leaver])
        leave_s = max(e["mono"] for m in (last, victim) for e in m.of("assigned")) - left_at
        print(f"KIP-848: rebalanced {leave_s:.1f} s after a clean leave")
        assert leave_s < SESSION_MS / 1000, members.describe()
        for m in (last, victim):
            assert kept[m.name] <= set(m.assignment()), f"{m.name} lost a partition it kept"

        # A kill: the survivor owns all six once the session expires.
        victim.kill()
        third = produce_seqs(broker.bootstrap, topic, 1800, 600)
        kill_s = wait_until(lambda: last.assignment() == list(range(PARTITIONS)),
                            SESSION_MS / 1000 + 8,
                            f"after {victim.name} was killed, {last.name} owns everything",
                            lambda: members.describe())
        print(f"KIP-848: survivor owns everything {kill_s:.1f} s after the kill")
        everything = {**first, **second, **third}
        wait_until(lambda: seqs_read(trio) >= set(everything), 30,
                   "every record produced around the leave and the kill is read",
                   lambda: f"missing {sorted(set(everything) - seqs_read(trio))[:20]}")
        assert all(seq in everything for m in trio for _, _, seq in m.records())
        wait_until(lambda: commits_reach_end(broker.bootstrap, group, topic), 15,
                   "the survivor's commits reach the end of every partition",
                   lambda: f"committed {group_offsets(broker.bootstrap, group)}")
        last.close()
        assert last.wait_exit(30) == 0, last.describe()

        # The group is empty: a classic member takes the id over and goes on from the commits.
        fourth = produce_seqs(broker.bootstrap, topic, 2400, 300)
        classic = members.start("classic", "confluent", group=group, topic=topic, commit=True)
        wait_until(lambda: seqs_read([classic]) >= set(fourth), 40,
                   "a classic member reads what was produced after the KIP-848 members left",
                   lambda: members.describe())
        time.sleep(0.5)
        check_read_exactly_once(classic.records(), fourth,
                                "the classic member resumes at the KIP-848 commits")
        classic.close()
        assert classic.wait_exit(30) == 0, classic.describe()
