"""Fixtures for the compatibility and crash suite: a real `spate serve` process per test.

The `broker` fixture starts `target/release/spate serve` on free loopback ports with a fresh
data directory, waits until every shard port accepts TCP connections, and always tears the
process down again (SIGTERM, then SIGKILL after 10 s). When a test fails, the tail of the
broker's stderr is printed so the failure report shows what the broker said.

Environment knobs (all optional):
  SPATE_BIN      path of the broker binary (default: <repo>/target/release/spate)
  SPATE_CI_TMP   where data dirs and logs go (default: <repo>/target/ci-tmp); must be a real
                 disk, not tmpfs, because the broker opens segments with O_DIRECT.
  SPATE_CI_BROKER_ARGS  extra `spate serve` arguments for every broker of the session, e.g.
                 "--tail-cache-bytes 0 --segment-bytes 65536" to serve nearly every fetch from
                 sealed segments (the zero-copy path); ci/test.sh runs the client tests so once.
  SPATE_CI_KEEP=1  keep a passing cluster test's data dirs and logs too (test_cluster.py).
  SPATE_CI_BUDGET_S  wall-time budget for the whole pytest session (default 1200 s). Tests that
                 would start after it is spent fail at once, so a badly broken broker (every
                 test running into its timeouts) cannot stretch CI past its limit.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import netfaults

REPO_ROOT = Path(__file__).resolve().parents[2]
SPATE_BIN = Path(os.environ.get("SPATE_BIN", REPO_ROOT / "target" / "release" / "spate"))
CI_TMP = Path(os.environ.get("SPATE_CI_TMP", REPO_ROOT / "target" / "ci-tmp"))

SHARD_COUNT = 2
DEFAULT_PARTITIONS = 4
READY_TIMEOUT_S = 20.0
PORTS_RELEASE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
STDERR_TAIL_LINES = 60
SESSION_BUDGET_S = float(os.environ.get("SPATE_CI_BUDGET_S", 1200))
_SESSION_STARTED = time.monotonic()
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Ports are picked below the Linux ephemeral range (32768-60999) so that outgoing client
# connections of this very suite cannot steal a port between our probe and the broker's bind.
PORT_RANGE = (12000, 32000)


PR_SET_PDEATHSIG = 1
_LIVE_BROKERS: set["Broker"] = set()


def _die_with_parent() -> None:
    """Runs in the broker's child process before exec: SIGKILL it if this pytest process dies,
    so that no broker outlives an interrupted or timed-out run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@atexit.register
def _kill_leftover_brokers() -> None:
    for broker in list(_LIVE_BROKERS):
        broker._hard_kill()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Ports this process handed out lately. A port is free when picked but taken only when its
# broker starts, so a cluster that picks a dozen ports before any node starts (or a test
# right after one whose killed brokers still hold theirs) could be given one twice.
_PICKED: set[int] = set()


def pick_base_port(count: int) -> int:
    """A base port such that base..base+count-1 are all free on 127.0.0.1 and none was
    handed out lately by this process."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    if len(_PICKED) > (PORT_RANGE[1] - PORT_RANGE[0]) // 4:
        _PICKED.clear()
    for _ in range(200):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        ports = range(base, base + count)
        if not _PICKED.intersection(ports) and all(_port_is_free(port) for port in ports):
            _PICKED.update(ports)
            return base
    raise RuntimeError(f"no run of {count} free ports found in {PORT_RANGE}")


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """One `spate serve` process and its data directory.

    The data directory outlives restarts, so `restart()` and `kill9()` followed by `start()`
    exercise recovery. `stderr_tail()` reads the log of every run of this broker, in order.
    """

    def __init__(self, workdir: Path, shard_count: int = SHARD_COUNT,
                 default_partitions: int = DEFAULT_PARTITIONS, extra_args: list[str] | None = None,
                 extra_ports: list[int] | None = None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "broker.stderr"
        self.shard_count = shard_count
        self.default_partitions = default_partitions
        self.extra_args = list(extra_args or [])
        # Ports other than the Kafka ones that a restart waits for (a cluster node's controller
        # port): a stopped node's sockets can outlive its process for a moment.
        self.extra_ports = list(extra_ports or [])
        # A cgroup's `cgroup.procs` the process enters before it execs (netfaults.py cuts the
        # network of a cgroup's sockets), or None.
        self.cgroup_procs: Path | None = None
        self.base_port = pick_base_port(shard_count)
        self.process: subprocess.Popen | None = None
        self.runs = 0
        # Set when this harness killed or stopped the process on purpose, so that teardown can
        # tell a deliberate exit from a crash.
        self._expected_exit = False

    # -- addresses ---------------------------------------------------------------------------
    @property
    def ports(self) -> list[int]:
        return [self.base_port + shard for shard in range(self.shard_count)]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.base_port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [
            str(SPATE_BIN), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--smp", str(self.shard_count),
            "--default-partitions", str(self.default_partitions),
            *self.extra_args,
            *shlex.split(os.environ.get("SPATE_CI_BROKER_ARGS", "")),
        ]

    @staticmethod
    def environment() -> dict[str, str]:
        """The suite's environment without SPATE_* settings (a stray SPATE_CONFIG or SPATE_SMP
        would change the broker under test), plus plain-text logs and panic backtraces."""
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("SPATE_") or name == "SPATE_LOG"}
        env.update(NO_COLOR="1", RUST_BACKTRACE="1")
        return env

    def start(self) -> None:
        self.start_process()
        self.wait_ready()

    def start_process(self) -> None:
        """Start the process without waiting for its ports (nodes of a cluster start together)."""
        assert self.process is None or self.process.poll() is not None, "broker already running"
        # A broker killed with SIGKILL may leave its listening sockets to the kernel for a
        # moment (io_uring tears down its requests asynchronously): wait until the ports can
        # be bound again, as a restarted Kafka would have to.
        deadline = time.monotonic() + PORTS_RELEASE_TIMEOUT_S
        while not all(_port_is_free(port) for port in self.ports + self.extra_ports):
            if time.monotonic() > deadline:
                break  # the broker will say which port is taken
            time.sleep(0.05)
        self.runs += 1
        with open(self.stderr_path, "ab") as log:
            log.write(f"\n===== spate run {self.runs}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.workdir, env=self.environment(), start_new_session=True,
                preexec_fn=self._before_exec,
            )
        _LIVE_BROKERS.add(self)
        self._expected_exit = False

    def _before_exec(self) -> None:
        """Runs in the child between fork and exec."""
        _die_with_parent()
        if self.cgroup_procs is not None:
            netfaults.enter(self.cgroup_procs)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(self.ports)
        while pending:
            if self.process.poll() is not None:
                self._expected_exit = True  # reported here; teardown need not report it again
                pytest.fail(
                    f"spate exited with code {self.process.returncode} before all shard ports "
                    f"{self.ports} accepted connections\n{self.stderr_tail()}", pytrace=False)
            pending = [port for port in pending if not _accepts_tcp(port)]
            if not pending:
                return
            if time.monotonic() > deadline:
                self._hard_kill()
                pytest.fail(
                    f"spate did not accept TCP connections on ports {pending} within "
                    f"{timeout_s:.0f} s\n{self.stderr_tail()}", pytrace=False)
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it hangs. Returns the exit code (None if never started).

        Raises AssertionError if the broker needed SIGKILL: a clean shutdown is part of the
        contract.
        """
        if self.process is None:
            return None
        if self.process.poll() is not None:
            return self.process.returncode
        self._expected_exit = True
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
            _LIVE_BROKERS.discard(self)
            return code
        except subprocess.TimeoutExpired:
            self._hard_kill()
            raise AssertionError(
                f"spate did not exit within {timeout_s:.0f} s of SIGTERM (killed)\n"
                f"{self.stderr_tail()}")

    def kill9(self) -> None:
        """SIGKILL the broker: the crash that recovery has to survive."""
        assert self.alive(), f"kill9 on a broker that is not running\n{self.stderr_tail()}"
        self._expected_exit = True
        self._hard_kill()

    def restart(self, clean: bool = True) -> None:
        """Stop (SIGTERM, or SIGKILL with clean=False) and start again on the same data dir."""
        if self.alive():
            if clean:
                self.stop()
            else:
                self.kill9()
        self.start()

    def _hard_kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        _LIVE_BROKERS.discard(self)

    # -- diagnostics -------------------------------------------------------------------------
    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker stderr)"
        tail = ANSI_ESCAPE.sub("", text).splitlines()[-lines:]
        return f"--- last {len(tail)} lines of spate stderr ({self.stderr_path}) ---\n" + "\n".join(tail)

    def assert_alive(self, context: str = "") -> None:
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise AssertionError(
                f"spate is not running{(' ' + context) if context else ''} (exit code {code})\n"
                f"{self.stderr_tail()}")


def pytest_runtest_setup(item):
    spent_s = time.monotonic() - _SESSION_STARTED
    if spent_s > SESSION_BUDGET_S:
        pytest.fail(f"not run: the suite's time budget of {SESSION_BUDGET_S:.0f} s is spent "
                    f"({spent_s:.0f} s so far; see the failures above)", pytrace=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _test_failed(node) -> bool:
    return any(getattr(getattr(node, f"report_{phase}", None), "failed", False)
               for phase in ("setup", "call"))


@pytest.fixture(scope="session")
def spate_bin() -> Path:
    if not SPATE_BIN.is_file() or not os.access(SPATE_BIN, os.X_OK):
        pytest.fail(f"broker binary {SPATE_BIN} not found: run `cargo build --release` first",
                    pytrace=False)
    return SPATE_BIN


@pytest.fixture(scope="session")
def ci_tmp() -> Path:
    CI_TMP.mkdir(parents=True, exist_ok=True)
    return CI_TMP


def make_broker(request, spate_bin, ci_tmp, broker_class=None, before_start=None, **options):
    """A started broker for one test, stopped and checked for a clean exit afterwards.

    `broker_class` replaces `Broker` (a subclass with other listeners, say); `before_start(broker)`
    runs on the data directory before the first start."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{request.node.name[:40]}-", dir=ci_tmp))
    broker = (broker_class or Broker)(workdir, **options)
    if before_start is not None:
        before_start(broker)
    broker.start()
    try:
        yield broker
    finally:
        crashed = broker.process is not None and broker.process.poll() is not None \
            and not broker._expected_exit
        was_running = broker.alive()
        exit_code = None
        stop_error = None
        try:
            exit_code = broker.stop()
            if was_running and exit_code != 0:
                stop_error = AssertionError(
                    f"spate exited with code {exit_code} after SIGTERM; expected a clean exit (0)")
        except AssertionError as error:
            stop_error = error
        failed = _test_failed(request.node)
        if failed or crashed or stop_error:
            print(f"\n{broker.stderr_tail()}")
        if not failed and not stop_error:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"(broker data and log kept in {workdir})")
        if stop_error:
            raise stop_error
        if crashed:
            raise AssertionError(
                f"spate exited on its own during the test (exit code {exit_code})\n"
                f"{broker.stderr_tail()}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "broker_args(*args): extra `spate serve` arguments for the `broker` fixture, "
        "e.g. @pytest.mark.broker_args('--group-initial-rebalance-delay-ms', '500')")


@pytest.fixture
def broker(request, spate_bin, ci_tmp):
    """A fresh two-shard broker for one test (bootstrap, ports, data_dir, restart/kill9/stop).

    A `broker_args` marker on the test (or its module or class) adds `spate serve` arguments.
    """
    extra_args = [str(arg) for marker in reversed(list(request.node.iter_markers("broker_args")))
                  for arg in marker.args]
    yield from make_broker(request, spate_bin, ci_tmp, extra_args=extra_args)


@pytest.fixture
def unique_topic(request):
    """A topic name unique within this test run, derived from the test name."""
    counter = iter(range(1_000_000))
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60].strip("-")

    def next_name(suffix: str = "") -> str:
        return f"{base}{('-' + suffix) if suffix else ''}-{next(counter)}"

    return next_name
