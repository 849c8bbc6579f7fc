"""Consumer-group members as subprocesses, and the waits and checks test_groups.py builds on.

A `Member` runs ci/compat/group_member.py (confluent-kafka or kafka-python) or
ci/node/group.js (kafkajs) and collects the JSON-lines events it prints (see group_member.py):
assignments, revocations, the records it processed and the offsets it committed. Tests wait
for conditions over several members (`wait_until`) and say, when one is not met, what every
member saw.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
NODE_DIR = COMPAT_DIR.parent / "node"
NODE = shutil.which("node")
CLIENTS = ["confluent", "kafka-python", "kafkajs"]
PR_SET_PDEATHSIG = 1


def kafkajs_available() -> bool:
    return NODE is not None and (NODE_DIR / "node_modules" / "kafkajs").is_dir()


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Member:
    """One group member process and everything it reported."""

    def __init__(self, name: str, client: str, options: dict, log_dir: Path):
        self.name = name
        self.client = client
        self.options = dict(options)
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.stderr_path = log_dir / f"member-{name}.stderr"
        if client == "kafkajs":
            options = {**options, "brokers": [options["bootstrap"]]}
            command = [NODE, str(NODE_DIR / "group.js"), json.dumps(options)]
            cwd = NODE_DIR
        else:
            command = [sys.executable, str(COMPAT_DIR / "group_member.py"),
                       json.dumps({**options, "client": client})]
            cwd = COMPAT_DIR
        self._stderr = open(self.stderr_path, "ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            cwd=cwd, preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line.decode(errors="replace")}
            event["mono"] = time.monotonic()
            with self._lock:
                self.events.append(event)

    # -- what it saw ---------------------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def of(self, kind: str, since: float = 0.0) -> list[dict]:
        return [e for e in self.snapshot() if e["event"] == kind and e["mono"] >= since]

    def assignment(self) -> list[int] | None:
        """Partitions owned now: the last assignment, or [] after a revocation (eager
        rebalancing gives everything up); None before the first assignment."""
        owned = None
        for event in self.snapshot():
            if event["event"] == "assigned":
                owned = list(event["partitions"])
            elif event["event"] in ("revoked", "closed"):
                owned = []
        return owned

    def rebalance_events(self, since: float) -> list[dict]:
        return [e for e in self.snapshot()
                if e["event"] in ("assigned", "revoked") and e["mono"] >= since]

    def records(self, since: float = 0.0) -> list[tuple[int, int, int]]:
        """(partition, offset, seq) of every record processed."""
        return [tuple(item) for e in self.of("records", since) for item in e["items"]]

    def committed(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for event in self.of("committed"):
            offsets.update({int(p): o for p, o in event["offsets"].items()})
        return offsets

    def last_stats(self) -> dict | None:
        stats = self.of("stats")
        return stats[-1] if stats else None

    def has(self, kind: str) -> bool:
        return bool(self.of(kind))

    def alive(self) -> bool:
        return self.process.poll() is None

    def describe(self) -> str:
        events = self.snapshot()
        counts = Counter(e["event"] for e in events)
        interesting = [
            {k: v for k, v in e.items() if k not in ("t", "items")}
            for e in events if e["event"] not in ("records", "committed", "stats")][-12:]
        return (f"member {self.name} ({self.client}, pid {self.process.pid}, "
                f"{'running' if self.alive() else f'exited {self.process.returncode}'}): "
                f"owns {self.assignment()}, {len(self.records())} records, events {dict(counts)}, "
                f"last events {interesting}, stderr tail: {self.stderr_tail()!r}")

    def stderr_tail(self, chars: int = 1500) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    # -- control -------------------------------------------------------------------------------
    def close(self) -> None:
        """Ask for a clean close (LeaveGroup for dynamic members)."""
        try:
            self.process.stdin.write(b"close\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"member {self.name} did not exit within {timeout_s} s of "
                                 f"being closed\n{self.describe()}")

    def kill(self) -> None:
        """SIGKILL: the member cannot send LeaveGroup or commit anything more."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill()
        self._reader.join(timeout=5)
        self._stderr.close()


class Members:
    """The members a test started; all are killed when the test ends."""

    def __init__(self, bootstrap: str, log_dir: Path):
        self.bootstrap = bootstrap
        self.log_dir = log_dir
        self.all: list[Member] = []

    def start(self, name: str, client: str, **options) -> Member:
        options.setdefault("bootstrap", self.bootstrap)
        options.setdefault("client_id", f"spate-ci-{name}")
        member = Member(name, client, options, self.log_dir)
        self.all.append(member)
        return member

    def describe(self, members=None) -> str:
        return "\n".join(m.describe() for m in (members or self.all))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for member in self.all:
            member.cleanup()


def wait_until(predicate, timeout_s: float, what: str, describe=lambda: "") -> float:
    """Poll `predicate` until true; returns the seconds it took. Fails naming `what`."""
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s\n{describe()}")
        time.sleep(0.1)


def balanced(members: list[Member], partitions: int) -> bool:
    """Every member owns partitions/len(members) partitions, disjoint, covering them all."""
    owned = [m.assignment() for m in members]
    if any(o is None for o in owned):
        return False
    share = partitions // len(members)
    flat = [p for o in owned for p in o]
    return all(len(o) == share for o in owned) and sorted(flat) == list(range(partitions))


def wait_balanced(members: list[Member], partitions: int, timeout_s: float, what: str,
                  quiet_s: float = 1.0, others=()) -> float:
    """Wait until `members` are balanced and no member had a rebalance event for `quiet_s`.
    Returns the seconds until balance was first seen."""
    took = wait_until(lambda: balanced(members, partitions), timeout_s, what,
                      lambda: "\n".join(m.describe() for m in [*members, *others]))
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.monotonic()
        last = max((e["mono"] for m in members for e in m.rebalance_events(0.0)), default=0.0)
        if now - last >= quiet_s and balanced(members, partitions):
            return took
        if now > deadline:
            raise AssertionError(f"{what}: assignments did not settle for {quiet_s} s\n"
                                 + "\n".join(m.describe() for m in [*members, *others]))
        time.sleep(0.1)
