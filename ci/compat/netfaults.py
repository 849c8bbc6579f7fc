"""Network partitions between `spate serve` processes on loopback, made by the kernel.

Every node of a cluster runs in a cgroup (v2) of its own, entered before it execs, so that
every socket it creates carries that cgroup. A cut between nodes A and B is two nftables
rules on the output hook: drop what A's sockets send to B's listening ports (Kafka and
controller), and what B's sockets send to A's. Nothing inside the broker knows: its Raft
RPCs, heartbeats, follower fetches and forwarded calls all meet a silent network (dropped
packets, no refusal), exactly as across a failed switch. Clients (this test process, outside
the cgroups) still reach every node, so an isolated leader keeps getting produce requests.

Why not the broker's own fault table (`cluster::raft::network::Faults`): it cuts only the
controller quorum, from inside the process; a partition must also cut the data path
(follower Fetch), and a test should not need a hook in the binary it tests.

Needs root, the `nft` tool (Debian's nftables; ci/test.sh installs it) and a cgroup2 mount
under /sys/fs/cgroup (either the whole hierarchy or the `unified` one of a hybrid layout).
`unavailable()` says why not, if not. Rules live in a table of their own, named after this
process, removed by `close()` (also at exit; and a later run removes the tables and cgroups
of a run that was killed before either).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_COUNTER = itertools.count(1)
_OPEN: set["NetFaults"] = set()


def _cgroup2_mount() -> Path | None:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            mount = Path(fields[1])
            if mount == CGROUP_ROOT or CGROUP_ROOT in mount.parents:
                return mount
    return None


def unavailable() -> str | None:
    """Why partitions cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("nft") is None:
        return "no `nft` (apt-get install nftables)"
    mount = _cgroup2_mount()
    if mount is None:
        return "no cgroup2 mount under /sys/fs/cgroup"
    if not os.access(mount, os.W_OK):
        return f"cgroup2 mount {mount} is not writable"
    probe = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"nft cannot list tables: {probe.stderr.strip()}"
    return None


def enter(cgroup_procs: Path) -> None:
    """Moves the calling process into the cgroup of `cgroup_procs`: a broker's child calls it
    between fork and exec, so that every socket the broker creates belongs to the cgroup."""
    cgroup_procs.write_text(str(os.getpid()))


def _remove_leftovers(mount: Path) -> None:
    """Deletes the tables and cgroups of runs whose process is gone (killed before close())."""
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                             check=False).stdout
    for line in listing.splitlines():
        name = line.split()[-1] if line.startswith("table inet spate_partitions_") else ""
        pid = name.removeprefix("spate_partitions_").split("_")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True,
                           check=False)
            for directory in mount.glob(f"spate-{pid}_*"):
                try:
                    directory.rmdir()
                except OSError:
                    pass


def _nft(script: str) -> None:
    """Runs one nft script as one transaction (all of it applies, or none)."""
    result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True,
                            check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"nft failed: {result.stderr.strip()}\n--- script ---\n{script}")


class NetFaults:
    """The cuts between the nodes of one cluster; see the module docs.

    `cgroup_procs(node)` is the file a node's process writes its pid into before it execs
    (conftest.Broker does, given it); `ports(node)` must name every port the node listens on
    before the first cut.
    """

    def __init__(self):
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"network partitions unavailable: {reason}")
        tag = f"{os.getpid()}_{next(_COUNTER)}"
        self.table = f"spate_partitions_{tag}"
        self._mount = _cgroup2_mount()
        _remove_leftovers(self._mount)
        self._prefix = f"spate-{tag}"
        self._ports: dict[int, list[int]] = {}
        self._cuts: set[frozenset[int]] = set()
        _nft(f"add table inet {self.table}\n"
             f"add chain inet {self.table} output "
             "{ type filter hook output priority 0; policy accept; }\n")
        _OPEN.add(self)

    # -- nodes -----------------------------------------------------------------------------
    def _cgroup_dir(self, node: int) -> Path:
        return self._mount / f"{self._prefix}-node{node}"

    def cgroup_procs(self, node: int) -> Path:
        directory = self._cgroup_dir(node)
        directory.mkdir(exist_ok=True)
        return directory / "cgroup.procs"

    def set_ports(self, node: int, ports: list[int]) -> None:
        self._ports[node] = list(ports)

    # -- cuts ------------------------------------------------------------------------------
    def cut(self, a: int, b: int) -> None:
        """Cuts the network between nodes a and b, both ways (their other links stay)."""
        assert a != b
        self._cuts.add(frozenset((a, b)))
        self._apply()

    def isolate(self, node: int) -> None:
        """Cuts `node` off from every other node (clients still reach it)."""
        for other in self._ports:
            if other != node:
                self._cuts.add(frozenset((node, other)))
        self._apply()

    def heal(self) -> None:
        """Removes every cut."""
        self._cuts.clear()
        self._apply()

    def cuts(self) -> list[tuple[int, int]]:
        return sorted(tuple(sorted(cut)) for cut in self._cuts)

    def _rule(self, sender: int, receiver: int) -> str:
        # The level is the sender's cgroup depth below the cgroup2 root: 1, a child of it.
        path = self._cgroup_dir(sender).relative_to(CGROUP_ROOT)
        ports = ", ".join(str(port) for port in self._ports[receiver])
        return (f'add rule inet {self.table} output socket cgroupv2 level 1 "{path}" '
                f"tcp dport {{ {ports} }} drop\n")

    def _apply(self) -> None:
        script = f"flush chain inet {self.table} output\n"
        for cut in self._cuts:
            a, b = sorted(cut)
            script += self._rule(a, b) + self._rule(b, a)
        _nft(script)

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Removes the rules and the cgroups (call it once the nodes' processes are gone)."""
        if self not in _OPEN:
            return
        _OPEN.discard(self)
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True,
                       check=False)
        for node in self._ports:
            try:
                self._cgroup_dir(node).rmdir()
            except OSError:
                pass  # a process still in it, or never made: the directory is harmless


@atexit.register
def _close_leftovers() -> None:
    for faults in list(_OPEN):
        faults.close()
