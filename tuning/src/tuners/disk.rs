//! The data directory's filesystem and block device: scheduler, merging, type, free space.

use std::path::Path;

use super::{cannot_check, format_bytes, not_applicable, Context};
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{choices, selected_choice, Host, Reading};

/// Where the data directory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDevice {
    /// The data directory, or its nearest existing ancestor, as a canonical host path.
    pub dir: String,
    /// The mount point holding it.
    pub mount_point: String,
    /// Filesystem type from mountinfo, e.g. `ext4`.
    pub filesystem: String,
    /// The mount's source, e.g. `/dev/vda` or `overlay`.
    pub source: String,
    /// The whole-disk block device under it, when there is one.
    pub block: Option<BlockDevice>,
}

/// A whole disk in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda`, `nvme0n1`.
    pub name: String,
    /// Its directory under `/sys/devices`, as a host path.
    pub sys_dir: String,
}

/// Why the data device could not be found: absent files, or unreadable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocated {
    /// Something needed does not exist here (no mountinfo, no block device).
    Absent(String),
    /// Something needed exists but could not be read.
    Unreadable(String),
}

impl Unlocated {
    fn finding(&self, name: &'static str, why: &str) -> Finding {
        match self {
            Unlocated::Absent(what) => not_applicable(name, what.clone(), why),
            Unlocated::Unreadable(what) => {
                Finding::new(name, Status::CannotCheck, what.clone(), "-", why)
            }
        }
    }
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Finds the mount and the disk holding `data_dir` from `/proc/self/mountinfo` and `/sys/dev/block`.
pub fn locate(host: &Host, data_dir: &Path) -> Result<DataDevice, Unlocated> {
    let dir = host.nearest_existing(data_dir).ok_or_else(|| {
        Unlocated::Absent(format!(
            "no existing directory on the way to {}",
            data_dir.display()
        ))
    })?;
    let text = match host.read(MOUNTINFO) {
        Reading::Value(text) => text,
        Reading::Absent => return Err(Unlocated::Absent(format!("{MOUNTINFO} absent"))),
        Reading::Unreadable(error) => {
            return Err(Unlocated::Unreadable(format!(
                "cannot read {MOUNTINFO}: {error}"
            )))
        }
    };
    let mount = text
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|mount| contains_path(&mount.mount_point, &dir))
        // A later mount on the same point hides the earlier one: keep the last longest.
        .fold(None::<Mount>, |best, mount| match best {
            Some(best) if best.mount_point.len() > mount.mount_point.len() => Some(best),
            _ => Some(mount),
        })
        .ok_or_else(|| Unlocated::Unreadable(format!("no mount holds {dir} in {MOUNTINFO}")))?;
    let block = block_device(host, &mount);
    Ok(DataDevice {
        dir,
        mount_point: mount.mount_point,
        filesystem: mount.filesystem,
        source: mount.source,
        block,
    })
}

struct Mount {
    device_number: String,
    mount_point: String,
    filesystem: String,
    source: String,
}

/// `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw` → a [`Mount`].
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split_whitespace().collect();
    let mut tail = after.split_whitespace();
    Some(Mount {
        device_number: fields.get(2)?.to_string(),
        mount_point: unescape_octal(fields.get(4)?),
        filesystem: tail.next()?.to_string(),
        source: tail.next().unwrap_or("").to_string(),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040` etc.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let code = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], code) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn contains_path(mount_point: &str, path: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path
            .strip_prefix(mount_point)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The whole disk behind a mount: `/sys/dev/block/MAJ:MIN`, else the `/dev/NAME` source.
fn block_device(host: &Host, mount: &Mount) -> Option<BlockDevice> {
    let by_number = host.canonical(&format!("/sys/dev/block/{}", mount.device_number));
    let by_source = || {
        let name = mount.source.strip_prefix("/dev/")?;
        host.canonical(&format!("/sys/class/block/{}", name.rsplit('/').next()?))
    };
    let mut sys_dir = by_number.or_else(by_source)?;
    if host.exists(&format!("{sys_dir}/partition")) {
        sys_dir = Path::new(&sys_dir).parent()?.to_str()?.to_string();
    }
    let name = Path::new(&sys_dir).file_name()?.to_str()?.to_string();
    // Operators know `/sys/block/NAME/queue/...`; it is a link to the same directory.
    let short = format!("/sys/block/{name}");
    if host.canonical(&short).as_deref() == Some(sys_dir.as_str()) {
        sys_dir = short;
    }
    Some(BlockDevice { name, sys_dir })
}

fn locate_disk(
    context: &Context,
    name: &'static str,
    why: &str,
) -> Result<(DataDevice, BlockDevice), Finding> {
    let device = locate(&context.host, &context.data_dir)
        .map_err(|unlocated| unlocated.finding(name, why))?;
    match device.block.clone() {
        Some(block) => Ok((device, block)),
        None => Err(not_applicable(
            name,
            format!(
                "{} is on {} ({}), not a block device",
                device.dir, device.source, device.filesystem
            ),
            why,
        )),
    }
}

/// Whether to treat the disk as spinning. A virtual disk (virtio-blk, Xen) reports
/// `rotational=1` by default whatever backs it, and the hypervisor schedules the real
/// device itself, so it counts as not spinning.
fn is_rotational(host: &Host, block: &BlockDevice) -> bool {
    !is_virtual(host, block)
        && host
            .read(&format!("{}/queue/rotational", block.sys_dir))
            .value()
            == Some("1")
}

fn is_virtual(host: &Host, block: &BlockDevice) -> bool {
    let driver = host.canonical(&format!("{}/device/driver", block.sys_dir));
    let by_driver = driver
        .as_deref()
        .and_then(|path| path.rsplit('/').next())
        .is_some_and(|name| ["virtio_blk", "vbd"].contains(&name));
    by_driver || block.name.starts_with("vd") || block.name.starts_with("xvd")
}

fn describe_disk(host: &Host, block: &BlockDevice) -> String {
    if is_virtual(host, block) {
        format!("{} (virtual disk)", block.name)
    } else if is_rotational(host, block) {
        format!("{} (rotational)", block.name)
    } else {
        block.name.clone()
    }
}

const SCHEDULER_WHY: &str =
    "Spate already orders its I/O per shard and submits large sequential writes; \
     on an SSD, NVMe or virtual disk a kernel scheduler only adds CPU and latency \
     (`none`), while a spinning disk still benefits from mq-deadline";

/// The data disk's `queue/scheduler`: `none` unless the disk spins.
pub fn check_scheduler(context: &Context) -> Finding {
    let name = "disk_scheduler";
    let (_, block) = match locate_disk(context, name, SCHEDULER_WHY) {
        Ok(found) => found,
        Err(finding) => return finding,
    };
    let path = format!("{}/queue/scheduler", block.sys_dir);
    let text = match context.host.read(&path) {
        Reading::Value(text) => text,
        Reading::Absent => {
            return not_applicable(
                name,
                format!("{} has no queue/scheduler", block.name),
                SCHEDULER_WHY,
            )
        }
        Reading::Unreadable(error) => return cannot_check(name, &path, &error, SCHEDULER_WHY),
    };
    let selected = selected_choice(&text);
    let wanted = if is_rotational(&context.host, &block) {
        "mq-deadline"
    } else {
        "none"
    };
    let current = format!("{}: {text}", describe_disk(&context.host, &block));
    if selected == wanted {
        return Finding::new(name, Status::Ok, current, wanted, SCHEDULER_WHY);
    }
    if !choices(&text).iter().any(|choice| choice == wanted) {
        let recommended = format!("{wanted}, which {} does not offer: leave as is", block.name);
        return Finding::new(name, Status::Ok, current, recommended, SCHEDULER_WHY);
    }
    Finding::new(name, Status::WouldChange, current, wanted, SCHEDULER_WHY)
        .with_writes(vec![PlannedWrite::tunable(path, wanted, selected)])
}

const NOMERGES_WHY: &str =
    "Spate's writes are already large and contiguous per shard, so the block \
     layer's merge attempts cost CPU on the shard's core without finding anything to merge \
     (2 = no merging); spinning disks keep merging";

/// The data disk's `queue/nomerges`: 2 on non-rotational disks.
pub fn check_nomerges(context: &Context) -> Finding {
    let name = "disk_nomerges";
    let (_, block) = match locate_disk(context, name, NOMERGES_WHY) {
        Ok(found) => found,
        Err(finding) => return finding,
    };
    let path = format!("{}/queue/nomerges", block.sys_dir);
    let current = match super::read_number(&context.host, name, &path, NOMERGES_WHY) {
        Ok(value) => value,
        Err(finding) => return finding,
    };
    let shown = format!("{}: {current}", describe_disk(&context.host, &block));
    if is_rotational(&context.host, &block) {
        return Finding::new(
            name,
            Status::Ok,
            shown,
            "any (rotational disk: merging helps)",
            NOMERGES_WHY,
        );
    }
    if current == 2 {
        return Finding::new(name, Status::Ok, shown, "2", NOMERGES_WHY);
    }
    Finding::new(name, Status::WouldChange, shown, "2", NOMERGES_WHY)
        .with_writes(vec![PlannedWrite::tunable(path, "2", current.to_string())])
}

const FILESYSTEM_WHY: &str =
    "segments are written with O_DIRECT and fdatasync; XFS and ext4 do both \
     well, tmpfs has no O_DIRECT and no durability, copy-on-write and network filesystems add \
     latency and weaken O_DIRECT";

/// The data directory's filesystem type: XFS or ext4.
pub fn check_filesystem(context: &Context) -> Finding {
    let name = "filesystem";
    let device = match locate(&context.host, &context.data_dir) {
        Ok(device) => device,
        Err(unlocated) => return unlocated.finding(name, FILESYSTEM_WHY),
    };
    let current = format!(
        "{} on {} ({}, mounted at {})",
        device.dir, device.filesystem, device.source, device.mount_point
    );
    let status = match device.filesystem.as_str() {
        "xfs" | "ext4" => Status::Ok,
        _ => Status::WouldChange,
    };
    let recommended = match status {
        Status::Ok => "xfs or ext4".to_string(),
        _ => "put --data-dir on an xfs or ext4 filesystem (by hand)".to_string(),
    };
    Finding::new(name, status, current, recommended, FILESYSTEM_WHY)
}

const FREE_SPACE_WHY: &str = "the log grows until retention deletes whole segments; a full disk stops \
     every partition on it, so keep room for the retention window plus a few segments per partition";

/// Free space the data directory should have at least.
const FREE_SPACE_MIN_BYTES: u64 = 10 << 30;

/// Free space in the data directory's filesystem.
pub fn check_free_space(context: &Context) -> Finding {
    let name = "disk_free";
    let device = match locate(&context.host, &context.data_dir) {
        Ok(device) => device,
        Err(unlocated) => return unlocated.finding(name, FREE_SPACE_WHY),
    };
    let real = context.host.path(&device.dir);
    let Some(space) = context.host.system().disk_space(&real) else {
        return cannot_check(name, &device.dir, "statvfs failed", FREE_SPACE_WHY);
    };
    let current = format!(
        "{} free of {} in {}",
        format_bytes(space.available_bytes),
        format_bytes(space.total_bytes),
        device.dir
    );
    let recommended = format!(">= {} free", format_bytes(FREE_SPACE_MIN_BYTES));
    if space.available_bytes >= FREE_SPACE_MIN_BYTES {
        return Finding::new(name, Status::Ok, current, recommended, FREE_SPACE_WHY);
    }
    Finding::new(
        name,
        Status::WouldChange,
        current,
        format!("{recommended} (by hand)"),
        FREE_SPACE_WHY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::host::DiskSpace;

    const VDA: &str = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";

    fn context(tree: &FakeTree) -> Context {
        Context::new(tree.host(), None, "/data/spate".into()).unwrap()
    }

    #[test]
    fn locates_the_disk_through_mountinfo_and_sys_dev_block() {
        let tree = FakeTree::reference_vm();
        let device = locate(&tree.host(), Path::new("/data/spate")).unwrap();
        assert_eq!(device.dir, "/data");
        assert_eq!(device.filesystem, "ext4");
        assert_eq!(device.block.unwrap().name, "vda");
    }

    #[test]
    fn a_partition_resolves_to_its_disk_and_the_longest_mount_wins() {
        let tree = FakeTree::reference_vm();
        let nvme = "/sys/devices/pci0000:00/0000:00:06.0/nvme/nvme0/nvme0n1";
        tree.file(&format!("{nvme}/nvme0n1p1/partition"), "1\n");
        tree.link(
            "/sys/dev/block/259:1",
            "../../devices/pci0000:00/0000:00:06.0/nvme/nvme0/nvme0n1/nvme0n1p1",
        );
        tree.file(
            "/proc/self/mountinfo",
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 259:1 / /data rw - xfs /dev/nvme0n1p1 rw\n",
        );
        let device = locate(&tree.host(), Path::new("/data/spate")).unwrap();
        assert_eq!(device.filesystem, "xfs");
        assert_eq!(device.block.unwrap().name, "nvme0n1");
        assert_eq!(unescape_octal("/mnt/my\\040disk"), "/mnt/my disk");
        assert!(!contains_path("/data", "/database"));
    }

    #[test]
    fn scheduler_mq_deadline_on_virtio_would_become_none() {
        let tree = FakeTree::reference_vm();
        let finding = check_scheduler(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        // Reported under /sys/block, the path operators know.
        let path = "/sys/block/vda/queue/scheduler";
        assert_eq!(
            finding.writes,
            vec![PlannedWrite::tunable(path, "none", "mq-deadline")]
        );
        tree.file(
            &format!("{VDA}/queue/scheduler"),
            "[none] mq-deadline kyber bfq\n",
        );
        assert_eq!(check_scheduler(&context(&tree)).status, Status::Ok);
        // vda is virtual: its rotational flag is ignored.
        assert_eq!(check_scheduler(&context(&tree)).status, Status::Ok);
        let disk = FakeTree::reference_vm();
        let sda = "/sys/devices/pci0000:00/0000:00:07.0/host0/target0:0:0/0:0:0:0/block/sda";
        disk.file(
            &format!("{sda}/queue/scheduler"),
            "[none] mq-deadline kyber bfq\n",
        );
        disk.file(&format!("{sda}/queue/rotational"), "1\n");
        disk.link(
            "/sys/dev/block/8:0",
            "../../devices/pci0000:00/0000:00:07.0/host0/target0:0:0/0:0:0:0/block/sda",
        );
        disk.file(MOUNTINFO, "27 1 8:0 / / rw - xfs /dev/sda rw\n");
        let finding = check_scheduler(&context(&disk));
        assert_eq!(finding.writes[0].value, "mq-deadline");
        assert!(
            finding.current.contains("sda (rotational)"),
            "{}",
            finding.current
        );
    }

    #[test]
    fn scheduler_absent_and_unreadable() {
        let tree = FakeTree::reference_vm();
        std::fs::remove_file(tree.root().join(&VDA[1..]).join("queue/scheduler")).unwrap();
        assert_eq!(
            check_scheduler(&context(&tree)).status,
            Status::NotApplicable
        );
        tree.dir(&format!("{VDA}/queue/scheduler"));
        assert_eq!(check_scheduler(&context(&tree)).status, Status::CannotCheck);
        let overlay = FakeTree::new();
        overlay.dir("/data");
        overlay.file(MOUNTINFO, "1 0 0:50 / / rw - overlay overlay rw\n");
        let finding = check_scheduler(&context(&overlay));
        assert_eq!(finding.status, Status::NotApplicable);
        assert!(finding.current.contains("overlay"));
    }

    #[test]
    fn nomerges_cases() {
        let tree = FakeTree::reference_vm();
        let finding = check_nomerges(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes[0].previous.as_deref(), Some("0"));
        tree.file(&format!("{VDA}/queue/nomerges"), "2\n");
        assert_eq!(check_nomerges(&context(&tree)).status, Status::Ok);
        tree.file(&format!("{VDA}/queue/nomerges"), "x\n");
        assert_eq!(check_nomerges(&context(&tree)).status, Status::CannotCheck);
        let empty = FakeTree::new();
        assert_eq!(
            check_nomerges(&context(&empty)).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn filesystem_cases() {
        let tree = FakeTree::reference_vm();
        assert_eq!(check_filesystem(&context(&tree)).status, Status::Ok);
        tree.file(MOUNTINFO, "1 0 0:30 / / rw - tmpfs tmpfs rw\n");
        assert_eq!(
            check_filesystem(&context(&tree)).status,
            Status::WouldChange
        );
        let empty = FakeTree::new();
        assert_eq!(
            check_filesystem(&context(&empty)).status,
            Status::NotApplicable
        );
        empty.dir(MOUNTINFO);
        assert_eq!(
            check_filesystem(&context(&empty)).status,
            Status::CannotCheck
        );
    }

    #[test]
    fn free_space_cases() {
        let tree = FakeTree::reference_vm();
        assert_eq!(check_free_space(&context(&tree)).status, Status::Ok);
        tree.facts.borrow_mut().disk_space = Some(DiskSpace {
            available_bytes: 1 << 30,
            total_bytes: 2 << 30,
        });
        assert_eq!(
            check_free_space(&context(&tree)).status,
            Status::WouldChange
        );
        tree.facts.borrow_mut().disk_space = None;
        assert_eq!(
            check_free_space(&context(&tree)).status,
            Status::CannotCheck
        );
    }
}
