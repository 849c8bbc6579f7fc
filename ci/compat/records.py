"""Test records and the checks every client test applies to what it reads back.

Every record carries its own sequence number in its value and (where the client can) in a
header, so a consumed record can be traced back to the record that was produced. Keys repeat
(`KEY_COUNT` distinct keys), which lets the checks verify that one key always lands in one
partition and stays in produce order there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

KEY_COUNT = 64
# A little repetitive filler so that the compression codecs have something to do.
FILLER = "spate-compat-payload-" * 3
MAX_EXAMPLES = 8
SEQ_DIGITS = 8


@dataclass(frozen=True)
class Record:
    key: str | None
    value: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: str | None
    value: str
    headers: tuple[tuple[str, str], ...] = ()


def make_records(count: int, tag: str, with_headers: bool = True, keyed: bool = True) -> list[Record]:
    """`count` records; value `<seq:08d>-<tag>-<filler>`; headers seq and tag when asked.

    Values and keys use only characters that survive every client's text formats
    (no ':', '|', ',', '=' or newlines).
    """
    records = []
    for seq in range(count):
        key = f"key-{seq % KEY_COUNT:03d}" if keyed else None
        value = f"{seq:0{SEQ_DIGITS}d}-{tag}-{FILLER}"
        headers = (("seq", str(seq)), ("tag", tag)) if with_headers else ()
        records.append(Record(key, value, headers))
    return records


def sequence_of(value: str) -> int:
    """The sequence number embedded in a value made by `make_records` (its first 8 digits)."""
    return int(value[:SEQ_DIGITS])


def _examples(items) -> str:
    items = list(items)
    shown = ", ".join(repr(item) for item in items[:MAX_EXAMPLES])
    more = f" ... ({len(items)} in all)" if len(items) > MAX_EXAMPLES else ""
    return shown + more


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def raise_if_any(self, context: str) -> None:
        if self.problems:
            raise AssertionError(f"{context}:\n  - " + "\n  - ".join(self.problems))


def verify(consumed: list[Consumed], produced: list[Record], context: str,
           delivered: dict[str, tuple[int, int]] | None = None,
           expected_headers=None, contiguous_from_zero: bool = True,
           partition_count: int | None = None) -> None:
    """Check that `consumed` is exactly `produced`, in per-key order, at the acknowledged offsets.

    - every produced value is read back exactly once and nothing else is read;
    - key and headers match (`expected_headers(record)` overrides the record's own headers,
      for clients such as kcat that attach the same headers to every record);
    - within each partition, offsets are contiguous from 0 (a fresh topic) and strictly increasing;
    - all records of one key are in one partition, in produce order;
    - `delivered` (value -> (partition, offset) from delivery reports) matches where the record
      was actually found.
    """
    verdict = Verdict()
    by_value = {record.value: record for record in produced}
    counts = Counter(record.value for record in consumed)
    duplicates = [value for value, count in counts.items() if count > 1]
    missing = [value for value in by_value if value not in counts]
    unexpected = [value for value in counts if value not in by_value]
    if len(consumed) != len(produced):
        verdict.add(f"read {len(consumed)} records, produced {len(produced)}")
    if duplicates:
        verdict.add(f"{len(duplicates)} values read more than once: {_examples(duplicates)}")
    if missing:
        verdict.add(f"{len(missing)} produced values never read: {_examples(missing)}")
    if unexpected:
        verdict.add(f"{len(unexpected)} values read that were never produced: {_examples(unexpected)}")

    wrong_content = []
    for item in consumed:
        record = by_value.get(item.value)
        if record is None:
            continue
        headers = tuple(expected_headers(record)) if expected_headers else record.headers
        if item.key != record.key or tuple(item.headers) != tuple(headers):
            wrong_content.append(
                (item.partition, item.offset, f"key={item.key!r} headers={item.headers!r}",
                 f"expected key={record.key!r} headers={headers!r}"))
    if wrong_content:
        verdict.add(f"{len(wrong_content)} records with wrong key or headers: {_examples(wrong_content)}")

    by_partition: dict[int, list[Consumed]] = defaultdict(list)
    for item in consumed:
        by_partition[item.partition].append(item)
    if partition_count is not None:
        outside = sorted(p for p in by_partition if not 0 <= p < partition_count)
        if outside:
            verdict.add(f"records read from partitions {outside}, topic has {partition_count}")
    for partition, items in sorted(by_partition.items()):
        offsets = [item.offset for item in items]
        if any(b <= a for a, b in zip(offsets, offsets[1:])):
            verdict.add(f"partition {partition}: offsets not strictly increasing in read order")
        ordered = sorted(offsets)
        if contiguous_from_zero and ordered != list(range(len(ordered))):
            gaps = [(a, b) for a, b in zip([-1] + ordered, ordered) if b != a + 1]
            verdict.add(f"partition {partition}: offsets not contiguous from 0 "
                        f"(first {min(ordered)}, last {max(ordered)}, {len(ordered)} records, "
                        f"jumps {_examples(gaps)})")

    key_partitions: dict[str, set[int]] = defaultdict(set)
    last_seq: dict[str, tuple[int, int, int]] = {}
    out_of_order = []
    for item in sorted(consumed, key=lambda c: (c.partition, c.offset)):
        if item.key is None or item.value not in by_value:
            continue
        key_partitions[item.key].add(item.partition)
        seq = sequence_of(item.value)
        previous = last_seq.get(item.key)
        if previous is not None and previous[0] == item.partition and seq <= previous[2]:
            out_of_order.append((item.key, item.partition, previous[1], previous[2], item.offset, seq))
        last_seq[item.key] = (item.partition, item.offset, seq)
    split_keys = {key: sorted(parts) for key, parts in key_partitions.items() if len(parts) > 1}
    if split_keys:
        verdict.add(f"{len(split_keys)} keys found in more than one partition: {_examples(split_keys.items())}")
    if out_of_order:
        verdict.add("records of one key out of produce order (key, partition, offset, seq, "
                    f"later offset, later seq): {_examples(out_of_order)}")

    if delivered is not None:
        misplaced = []
        for item in consumed:
            expected = delivered.get(item.value)
            if expected is not None and expected != (item.partition, item.offset):
                misplaced.append((item.value[:24], "acked at", expected, "found at",
                                  (item.partition, item.offset)))
        if misplaced:
            verdict.add(f"{len(misplaced)} records not at their acknowledged (partition, offset): "
                        f"{_examples(misplaced)}")
    verdict.raise_if_any(context)


def first_values(messages, count: int) -> list[str]:
    """The decoded values of the first `count` messages of a kafka-python consumer, without
    waiting out its `consumer_timeout_ms` once they are in (iteration ends early only when
    that timeout passes with nothing new)."""
    values: list[str] = []
    for message in messages:
        values.append(message.value.decode())
        if len(values) == count:
            break
    return values
