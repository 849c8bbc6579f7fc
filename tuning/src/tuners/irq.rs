//! Interrupts of the NICs and of the data disk, against the shard cores.

use super::{cannot_check, disk, not_applicable, Context};
use crate::cpus::CpuSet;
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{Host, Reading};

const WHY: &str = "an interrupt handled on a shard core steals it from the shard's poll loop \
     and shows up as latency spikes; with a spare core, NIC and disk queues belong there";

/// One device and the interrupts its queues raise.
struct DeviceIrqs {
    label: String,
    irqs: Vec<u32>,
}

/// Moves NIC and data-disk interrupts off the shard cores when a spare CPU exists.
pub fn check_irq_affinity(context: &Context) -> Finding {
    let name = "irq_affinity";
    let host = &context.host;
    let devices = devices_with_irqs(context);
    if devices.is_empty() {
        let current = "no NIC or disk interrupts found under /sys (msi_irqs)";
        return not_applicable(name, current, WHY);
    }
    let spare = context.online_cpus.minus(&context.shard_cpus);
    let mut described = Vec::new();
    let mut writes = Vec::new();
    for device in &devices {
        let mut affinities = Vec::new();
        for irq in &device.irqs {
            let path = format!("/proc/irq/{irq}/smp_affinity_list");
            let text = match host.read(&path) {
                Reading::Value(text) => text,
                Reading::Absent => continue,
                Reading::Unreadable(error) => return cannot_check(name, &path, &error, WHY),
            };
            let Ok(affinity) = CpuSet::parse(&text) else {
                return cannot_check(name, &path, &format!("not a CPU list: {text:?}"), WHY);
            };
            if !spare.is_empty() && affinity.intersects(&context.shard_cpus) {
                writes.push(PlannedWrite::tunable(path, spare.to_string(), text.trim()));
            }
            affinities.push((irq, affinity.to_string()));
        }
        described.push(describe(&device.label, &affinities));
    }
    let current = described.join("; ");
    let irqbalance = if process_running(host, "irqbalance") {
        "; stop irqbalance first, or it moves them back"
    } else {
        ""
    };
    if spare.is_empty() {
        let recommended = format!(
            "leave as is: every online CPU ({}) is a shard core; pass --cpus with fewer cores to keep one for interrupts",
            context.online_cpus
        );
        return Finding::new(name, Status::Ok, current, recommended, WHY);
    }
    let recommended = format!(
        "on the spare CPUs {spare}, off the shard cores {}{irqbalance}",
        context.shard_cpus
    );
    if writes.is_empty() {
        return Finding::new(name, Status::Ok, current, recommended, WHY);
    }
    Finding::new(name, Status::WouldChange, current, recommended, WHY).with_writes(writes)
}

/// `eth0: IRQs 37,38 on CPUs 0-1` or, when they differ, `eth0: IRQ 37 on 0, IRQ 38 on 1`.
fn describe(label: &str, affinities: &[(&u32, String)]) -> String {
    if affinities.is_empty() {
        return format!("{label}: no /proc/irq entries");
    }
    let first = &affinities[0].1;
    if affinities.iter().all(|(_, cpus)| cpus == first) {
        let irqs: Vec<String> = affinities.iter().map(|(irq, _)| irq.to_string()).collect();
        let noun = if irqs.len() == 1 { "IRQ" } else { "IRQs" };
        return format!("{label}: {noun} {} on CPUs {first}", irqs.join(","));
    }
    let each: Vec<String> = affinities
        .iter()
        .map(|(irq, cpus)| format!("IRQ {irq} on {cpus}"))
        .collect();
    format!("{label}: {}", each.join(", "))
}

/// The data disk and every NIC backed by a device, with their interrupts.
fn devices_with_irqs(context: &Context) -> Vec<DeviceIrqs> {
    let host = &context.host;
    let mut devices = Vec::new();
    if let Ok(device) = disk::locate(host, &context.data_dir) {
        if let Some(block) = device.block {
            let irqs = host
                .canonical(&format!("{}/device", block.sys_dir))
                .map(|dir| irqs_of(host, &dir))
                .unwrap_or_default();
            if !irqs.is_empty() {
                devices.push(DeviceIrqs {
                    label: format!("disk {}", block.name),
                    irqs,
                });
            }
        }
    }
    for interface in host.list("/sys/class/net").unwrap_or_default() {
        let Some(dir) = host.canonical(&format!("/sys/class/net/{interface}/device")) else {
            continue;
        };
        let irqs = irqs_of(host, &dir);
        if !irqs.is_empty() {
            devices.push(DeviceIrqs {
                label: format!("NIC {interface}"),
                irqs,
            });
        }
    }
    devices
}

/// MSI interrupts of a device: its own `msi_irqs`, or its parent's (virtio sits under a
/// PCI function, an NVMe controller under its PCI device), else its legacy `irq` line.
fn irqs_of(host: &Host, device_dir: &str) -> Vec<u32> {
    let mut dir = device_dir.to_string();
    for _ in 0..3 {
        if !dir.starts_with("/sys/devices/") {
            break;
        }
        if let Some(names) = host.list(&format!("{dir}/msi_irqs")) {
            let mut irqs: Vec<u32> = names.iter().filter_map(|name| name.parse().ok()).collect();
            irqs.sort_unstable();
            return irqs;
        }
        if let Some(line) = host
            .read(&format!("{dir}/irq"))
            .value()
            .and_then(|text| text.parse().ok())
        {
            if line != 0 {
                return vec![line];
            }
        }
        match dir.rsplit_once('/') {
            Some((parent, _)) => dir = parent.to_string(),
            None => break,
        }
    }
    Vec::new()
}

/// True when some process's `comm` is `wanted`.
pub(crate) fn process_running(host: &Host, wanted: &str) -> bool {
    let Some(entries) = host.list("/proc") else {
        return false;
    };
    entries
        .iter()
        .filter(|entry| entry.bytes().all(|byte| byte.is_ascii_digit()))
        .any(|pid| host.read(&format!("/proc/{pid}/comm")).value() == Some(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    fn context(tree: &FakeTree, cpus: Option<&str>) -> Context {
        let cpus = cpus.map(|text| CpuSet::parse(text).unwrap());
        Context::new(tree.host(), cpus, "/data".into()).unwrap()
    }

    #[test]
    fn all_cpus_used_reports_without_recommending() {
        let tree = FakeTree::reference_vm();
        let finding = check_irq_affinity(&context(&tree, None));
        assert_eq!(finding.status, Status::Ok);
        assert_eq!(
            finding.current,
            "disk vda: IRQs 35,36 on CPUs 0-1; NIC eth0: IRQ 38 on CPUs 0-1"
        );
        assert!(finding.writes.is_empty());
    }

    #[test]
    fn with_a_spare_cpu_interrupts_move_there() {
        let tree = FakeTree::reference_vm();
        tree.file("/proc/100/comm", "irqbalance\n");
        let finding = check_irq_affinity(&context(&tree, Some("1")));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes.len(), 3);
        assert_eq!(
            finding.writes[0],
            PlannedWrite::tunable("/proc/irq/35/smp_affinity_list", "0", "0-1")
        );
        assert!(finding.recommended.contains("irqbalance"));
        for irq in [35, 36, 38] {
            tree.file(&format!("/proc/irq/{irq}/smp_affinity_list"), "0\n");
        }
        assert_eq!(
            check_irq_affinity(&context(&tree, Some("1"))).status,
            Status::Ok
        );
    }

    #[test]
    fn absent_and_unreadable() {
        let empty = FakeTree::new();
        assert_eq!(
            check_irq_affinity(&context(&empty, None)).status,
            Status::NotApplicable
        );
        let tree = FakeTree::reference_vm();
        std::fs::remove_file(tree.root().join("proc/irq/36/smp_affinity_list")).unwrap();
        tree.dir("/proc/irq/36/smp_affinity_list");
        assert_eq!(
            check_irq_affinity(&context(&tree, None)).status,
            Status::CannotCheck
        );
    }
}
