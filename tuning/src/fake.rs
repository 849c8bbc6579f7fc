//! A fake `/proc` and `/sys` tree for unit tests.

use std::cell::RefCell;
use std::fs;
use std::path::Path;
use std::rc::Rc;

use crate::host::{ClockSync, DiskSpace, Host, System, UringProbe};

/// Fixed answers for the system-call facts; tests change them through the shared cell.
#[derive(Debug, Clone)]
pub struct FakeFacts {
    pub probe: Result<UringProbe, String>,
    pub disk_space: Option<DiskSpace>,
    pub clock: Option<ClockSync>,
    pub euid: u32,
}

impl Default for FakeFacts {
    fn default() -> FakeFacts {
        FakeFacts {
            probe: Ok(UringProbe {
                features: vec!["nodrop".into(), "submit_stable".into(), "fast_poll".into()],
                opcodes: (0..60).collect(),
            }),
            disk_space: Some(DiskSpace {
                available_bytes: 100 << 30,
                total_bytes: 200 << 30,
            }),
            clock: Some(ClockSync {
                synchronized: true,
                max_error_us: 1000,
            }),
            euid: 0,
        }
    }
}

struct FakeSystem(Rc<RefCell<FakeFacts>>);

impl System for FakeSystem {
    fn io_uring_probe(&self) -> Result<UringProbe, String> {
        self.0.borrow().probe.clone()
    }
    fn disk_space(&self, _path: &Path) -> Option<DiskSpace> {
        self.0.borrow().disk_space
    }
    fn clock_sync(&self) -> Option<ClockSync> {
        self.0.borrow().clock
    }
    fn effective_uid(&self) -> u32 {
        self.0.borrow().euid
    }
}

/// A temporary directory standing in for `/`.
pub struct FakeTree {
    dir: tempfile::TempDir,
    pub facts: Rc<RefCell<FakeFacts>>,
}

impl FakeTree {
    pub fn new() -> FakeTree {
        FakeTree {
            dir: tempfile::tempdir().unwrap(),
            facts: Rc::new(RefCell::new(FakeFacts::default())),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn real(&self, host_path: &str) -> std::path::PathBuf {
        self.dir.path().join(host_path.trim_start_matches('/'))
    }

    /// Creates a file (and its parents) with exact contents.
    pub fn file(&self, host_path: &str, contents: &str) {
        let real = self.real(host_path);
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(real, contents).unwrap();
    }

    pub fn dir(&self, host_path: &str) {
        fs::create_dir_all(self.real(host_path)).unwrap();
    }

    /// A relative symlink at `host_path` pointing to `target` (as real sysfs links are).
    pub fn link(&self, host_path: &str, target: &str) {
        let real = self.real(host_path);
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, real).unwrap();
    }

    pub fn read(&self, host_path: &str) -> String {
        fs::read_to_string(self.real(host_path)).unwrap()
    }

    pub fn host(&self) -> Host {
        Host::with_system(self.dir.path(), Box::new(FakeSystem(self.facts.clone())))
    }

    /// A two-CPU virtio VM like the reference host, untuned.
    pub fn reference_vm() -> FakeTree {
        let tree = FakeTree::new();
        tree.file("/sys/devices/system/cpu/online", "0-1\n");
        tree.file("/proc/sys/kernel/io_uring_disabled", "0\n");
        tree.file(
            "/proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max locked memory         8388608              8388608              bytes     \n",
        );
        tree.file(
            "/proc/self/status",
            "Name:\tspate-tune\nCapEff:\t000001fffeffffff\n",
        );
        tree.file("/proc/sys/fs/aio-max-nr", "65536\n");
        tree.file("/proc/sys/vm/swappiness", "60\n");
        tree.file("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        tree.file("/proc/sys/net/core/somaxconn", "4096\n");
        tree.file("/proc/sys/net/ipv4/tcp_max_syn_backlog", "2048\n");
        tree.file(
            "/proc/meminfo",
            "MemTotal:       24683168 kB\nMemAvailable:   20000000 kB\n",
        );
        let thp = "/sys/kernel/mm/transparent_hugepage";
        tree.file(&format!("{thp}/enabled"), "always [madvise] never\n");
        tree.file(
            &format!("{thp}/defrag"),
            "always defer defer+madvise [madvise] never\n",
        );
        let clock = "/sys/devices/system/clocksource/clocksource0";
        tree.file(&format!("{clock}/current_clocksource"), "tsc\n");
        tree.file(
            &format!("{clock}/available_clocksource"),
            "tsc kvm-clock \n",
        );
        tree.file(
            "/proc/self/mountinfo",
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
             30 27 0:5 / /proc rw - proc proc rw\n",
        );
        tree.add_virtio_disk_and_nic();
        for cpu in 0..2 {
            let idle = format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle");
            tree.file(&format!("{idle}/state0/name"), "POLL\n");
            tree.file(&format!("{idle}/state0/latency"), "0\n");
            tree.file(&format!("{idle}/state0/disable"), "0\n");
            tree.file(&format!("{idle}/state1/name"), "haltpoll idle\n");
            tree.file(&format!("{idle}/state1/latency"), "1\n");
            tree.file(&format!("{idle}/state1/disable"), "0\n");
        }
        tree.file("/proc/1/comm", "init\n");
        tree.dir("/data");
        tree
    }

    /// vda (virtio-blk, mq-deadline) holding `/`, and eth0 (virtio-net), with their interrupts.
    fn add_virtio_disk_and_nic(&self) {
        let tree = self;
        let vda = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
        tree.file(
            &format!("{vda}/queue/scheduler"),
            "none [mq-deadline] kyber bfq\n",
        );
        tree.file(&format!("{vda}/queue/nomerges"), "0\n");
        // virtio-blk says rotational whatever backs it, as on the reference host.
        tree.file(&format!("{vda}/queue/rotational"), "1\n");
        tree.link(
            "/sys/dev/block/254:0",
            "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
        );
        tree.link(
            "/sys/block/vda",
            "../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
        );
        tree.link(&format!("{vda}/device"), "../../../virtio1");
        tree.file("/sys/devices/pci0000:00/0000:00:02.0/msi_irqs/35", "msix\n");
        tree.file("/sys/devices/pci0000:00/0000:00:02.0/msi_irqs/36", "msix\n");
        tree.dir("/sys/devices/pci0000:00/0000:00:03.0/virtio2");
        tree.file("/sys/devices/pci0000:00/0000:00:03.0/msi_irqs/38", "msix\n");
        tree.link(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:00:03.0/virtio2",
        );
        tree.dir("/sys/class/net/lo");
        for irq in [35, 36, 38] {
            tree.file(&format!("/proc/irq/{irq}/smp_affinity_list"), "0-1\n");
        }
    }
}
