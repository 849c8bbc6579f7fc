//! The shard cores: frequency governor, idle states, and the clocksource.

use super::{cannot_check, not_applicable, Context};
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{choices, Reading};

const GOVERNOR_WHY: &str = "a shard core polls its rings and must answer in microseconds; \
     power-saving governors clock it down between bursts and add wake-up latency to every produce";

fn cpu_dir(cpu: u32) -> String {
    format!("/sys/devices/system/cpu/cpu{cpu}")
}

/// `scaling_governor` of every shard core should be `performance` where it is offered.
pub fn check_governor(context: &Context) -> Finding {
    let name = "cpu_governor";
    let mut governors = Vec::new();
    let mut writes = Vec::new();
    for cpu in context.shard_cpus.iter() {
        let path = format!("{}/cpufreq/scaling_governor", cpu_dir(cpu));
        let governor = match context.host.read(&path) {
            Reading::Value(governor) => governor,
            Reading::Absent => continue,
            Reading::Unreadable(error) => return cannot_check(name, &path, &error, GOVERNOR_WHY),
        };
        let available_path = format!("{}/cpufreq/scaling_available_governors", cpu_dir(cpu));
        let offers_performance = context
            .host
            .read(&available_path)
            .value()
            .is_some_and(|text| choices(text).iter().any(|choice| choice == "performance"));
        if governor != "performance" && offers_performance {
            writes.push(PlannedWrite::tunable(path, "performance", governor.clone()));
        }
        governors.push(format!("cpu{cpu}={governor}"));
    }
    if governors.is_empty() {
        let current =
            "no cpufreq for the shard cores (frequency is managed by the hypervisor or firmware)";
        return not_applicable(name, current, GOVERNOR_WHY);
    }
    let current = governors.join(" ");
    if writes.is_empty() {
        return Finding::new(
            name,
            Status::Ok,
            current,
            "performance (where offered)",
            GOVERNOR_WHY,
        );
    }
    Finding::new(
        name,
        Status::WouldChange,
        current,
        "performance",
        GOVERNOR_WHY,
    )
    .with_writes(writes)
}

const IDLE_WHY: &str =
    "waking a core from a deep idle state costs up to hundreds of microseconds, \
     which lands on produce latency after every quiet moment; reported only, because limiting \
     idle states is a power trade-off for the operator (BIOS, or processor.max_cstate= at boot)";

/// Exit latency above which an idle state is called deep.
const DEEP_IDLE_LATENCY_US: u64 = 20;

/// Reports the idle states enabled on the first shard core; never changes them.
pub fn check_idle(context: &Context) -> Finding {
    let name = "cpu_idle";
    let Some(cpu) = context.shard_cpus.iter().next() else {
        return not_applicable(name, "no shard cores", IDLE_WHY);
    };
    let idle_dir = format!("{}/cpuidle", cpu_dir(cpu));
    let Some(entries) = context.host.list(&idle_dir) else {
        return not_applicable(
            name,
            format!("{idle_dir} absent (no cpuidle driver)"),
            IDLE_WHY,
        );
    };
    let mut states = Vec::new();
    let mut deep = Vec::new();
    for state in entries.iter().filter(|entry| entry.starts_with("state")) {
        let read = |file: &str| context.host.read(&format!("{idle_dir}/{state}/{file}"));
        let (Reading::Value(label), Reading::Value(latency)) = (read("name"), read("latency"))
        else {
            return cannot_check(
                name,
                &format!("{idle_dir}/{state}"),
                "name or latency unreadable",
                IDLE_WHY,
            );
        };
        if read("disable").value() == Some("1") {
            continue;
        }
        let latency_us: u64 = latency.parse().unwrap_or(0);
        if latency_us > DEEP_IDLE_LATENCY_US {
            deep.push(label.clone());
        }
        states.push(format!("{label} ({latency_us} us)"));
    }
    if states.is_empty() {
        return not_applicable(name, format!("{idle_dir} has no states"), IDLE_WHY);
    }
    let driver = context
        .host
        .read("/sys/devices/system/cpu/cpuidle/current_driver")
        .value()
        .map(|driver| format!("{driver}: "))
        .unwrap_or_default();
    let current = format!("cpu{cpu} {driver}{}", states.join(", "));
    let recommended = if deep.is_empty() {
        "report only: no deep idle state enabled".to_string()
    } else {
        format!(
            "report only: for lowest latency consider disabling {}",
            deep.join(", ")
        )
    };
    Finding::new(name, Status::Ok, current, recommended, IDLE_WHY)
}

const CLOCKSOURCE_WHY: &str = "the broker reads the clock for every request (timestamps, latency \
     histograms, timeouts); tsc and the paravirtual clocks are read in user space by the vDSO, \
     others cost a system call or a slow device read each time";

const CLOCKSOURCE_DIR: &str = "/sys/devices/system/clocksource/clocksource0";

/// Clocksources the vDSO reads without a system call.
const FAST_CLOCKSOURCES: [&str; 4] = [
    "tsc",
    "kvm-clock",
    "hyperv_clocksource_tsc_page",
    "arch_sys_counter",
];

/// `current_clocksource` should be one the vDSO can read; `tsc` if the kernel offers it.
pub fn check_clocksource(context: &Context) -> Finding {
    let name = "clocksource";
    let path = format!("{CLOCKSOURCE_DIR}/current_clocksource");
    let current = match context.host.read(&path) {
        Reading::Value(current) => current,
        Reading::Absent => return not_applicable(name, format!("{path} absent"), CLOCKSOURCE_WHY),
        Reading::Unreadable(error) => return cannot_check(name, &path, &error, CLOCKSOURCE_WHY),
    };
    let available = context
        .host
        .read(&format!("{CLOCKSOURCE_DIR}/available_clocksource"))
        .value()
        .map(choices)
        .unwrap_or_default();
    let shown = format!("{current} (available: {})", available.join(" "));
    if FAST_CLOCKSOURCES.contains(&current.as_str()) {
        return Finding::new(
            name,
            Status::Ok,
            shown,
            "tsc or a paravirtual clock",
            CLOCKSOURCE_WHY,
        );
    }
    if available.iter().any(|source| source == "tsc") {
        return Finding::new(name, Status::WouldChange, shown, "tsc", CLOCKSOURCE_WHY)
            .with_writes(vec![PlannedWrite::tunable(path, "tsc", current)]);
    }
    let recommended = "tsc, which this kernel does not offer (unstable TSC?): leave as is";
    Finding::new(name, Status::Ok, shown, recommended, CLOCKSOURCE_WHY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    fn context(tree: &FakeTree) -> Context {
        Context::new(tree.host(), None, "/data".into()).unwrap()
    }

    #[test]
    fn governor_absent_on_a_vm_is_not_applicable() {
        let tree = FakeTree::reference_vm();
        assert_eq!(
            check_governor(&context(&tree)).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn governor_powersave_would_become_performance_and_tuned_is_ok() {
        let tree = FakeTree::reference_vm();
        for cpu in 0..2 {
            let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq");
            tree.file(&format!("{dir}/scaling_governor"), "powersave\n");
            tree.file(
                &format!("{dir}/scaling_available_governors"),
                "performance powersave\n",
            );
        }
        let finding = check_governor(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes.len(), 2);
        assert_eq!(finding.writes[1].previous.as_deref(), Some("powersave"));
        for cpu in 0..2 {
            tree.file(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                "performance\n",
            );
        }
        assert_eq!(check_governor(&context(&tree)).status, Status::Ok);
    }

    #[test]
    fn governor_unreadable_cannot_check() {
        let tree = FakeTree::reference_vm();
        tree.dir("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor");
        assert_eq!(check_governor(&context(&tree)).status, Status::CannotCheck);
    }

    #[test]
    fn idle_states_are_reported_with_deep_ones_named() {
        let tree = FakeTree::reference_vm();
        let finding = check_idle(&context(&tree));
        assert_eq!(finding.status, Status::Ok);
        assert!(
            finding.current.contains("POLL (0 us)"),
            "{}",
            finding.current
        );
        tree.file("/sys/devices/system/cpu/cpu0/cpuidle/state2/name", "C6\n");
        tree.file(
            "/sys/devices/system/cpu/cpu0/cpuidle/state2/latency",
            "133\n",
        );
        let finding = check_idle(&context(&tree));
        assert!(finding.recommended.contains("C6"));
        assert!(finding.writes.is_empty());
        tree.dir("/sys/devices/system/cpu/cpu0/cpuidle/state3/name");
        tree.file("/sys/devices/system/cpu/cpu0/cpuidle/state3/latency", "1\n");
        assert_eq!(check_idle(&context(&tree)).status, Status::CannotCheck);
        let empty = FakeTree::new();
        assert_eq!(check_idle(&context(&empty)).status, Status::NotApplicable);
    }

    #[test]
    fn clocksource_cases() {
        let tree = FakeTree::reference_vm();
        assert_eq!(check_clocksource(&context(&tree)).status, Status::Ok);
        tree.file(&format!("{CLOCKSOURCE_DIR}/current_clocksource"), "hpet\n");
        tree.file(
            &format!("{CLOCKSOURCE_DIR}/available_clocksource"),
            "tsc hpet acpi_pm\n",
        );
        let finding = check_clocksource(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes[0].previous.as_deref(), Some("hpet"));
        let empty = FakeTree::new();
        assert_eq!(
            check_clocksource(&context(&empty)).status,
            Status::NotApplicable
        );
        empty.dir(&format!("{CLOCKSOURCE_DIR}/current_clocksource"));
        assert_eq!(
            check_clocksource(&context(&empty)).status,
            Status::CannotCheck
        );
    }
}
