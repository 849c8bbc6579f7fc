//! What the broker sets up in its own process at start, checked on a real `spate serve`.

use crate::harness;

use harness::{batch, create_topic, produce, Broker};

/// One field of `/proc/<pid>/status`, or `None` when this kernel does not report it.
fn process_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().to_string())
    })
}

/// Regression: with 1,000 producer connections a shard stalled for about a second while
/// the kernel zeroed a fresh 2 MiB transparent huge page for each first touch of the heap
/// (mimalloc asks for huge pages on all of its memory). The broker turns them off.
#[test]
fn thousand_connection_stall_transparent_huge_pages_are_off() {
    let broker = Broker::start(1);
    let pid = broker.pid().expect("running");
    let Some(enabled) = process_status(pid, "THP_enabled") else {
        eprintln!("this kernel does not report THP_enabled; nothing to check");
        return;
    };
    assert_eq!(enabled, "0", "transparent huge pages are on for the broker");
    // A few huge pages may predate `main` (the allocator's start-up); traffic adds none.
    let huge_before_kib = anon_huge_pages_kib(pid);
    let mut client = broker.client(0);
    create_topic(&mut client, "huge-pages", 1);
    let value = "x".repeat(1024);
    let values: Vec<&str> = (0..64).map(|_| value.as_str()).collect();
    for _ in 0..64 {
        produce(&mut client, "huge-pages", 0, batch(&values, None), -1);
    }
    assert_eq!(anon_huge_pages_kib(pid), huge_before_kib);
}

fn anon_huge_pages_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
