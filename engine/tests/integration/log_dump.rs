//! `spate log dump` on the files a real broker wrote: what was produced is what the dump
//! shows, every CRC checks, and damage done to the file afterwards is reported where it is.

use crate::harness;

use std::process::Command;

use harness::{batch, create_topic, produce, Broker};

fn dump(args: &[&std::path::Path], flags: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["log", "dump"])
        .args(args)
        .args(flags)
        .output()
        .expect("spate log dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf8")
}

#[test]
fn a_brokers_segment_and_indexes_dump_as_produced_and_damage_shows() {
    let mut broker = Broker::start(1);
    create_topic(&mut broker.client(0), "dumped", 1);
    produce(
        &mut broker.client(0),
        "dumped",
        0,
        batch(&["one", "two"], None),
        -1,
    );
    produce(
        &mut broker.client(0),
        "dumped",
        0,
        batch(&["three"], None),
        -1,
    );
    assert_eq!(broker.stop(), Some(0), "clean shutdown:\n{}", broker.log());

    let partition = broker.data_dir().join("data").join("dumped-0");
    let segment = partition.join("00000000000000000000.log");
    let text = dump(&[&segment], &["--print-records"]);
    let batches: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("baseOffset"))
        .collect();
    assert_eq!(batches.len(), 2, "{text}");
    assert!(
        batches[0].starts_with("baseOffset: 0 lastOffset: 1 count: 2"),
        "{text}"
    );
    assert!(
        batches[1].starts_with("baseOffset: 2 lastOffset: 2 count: 1"),
        "{text}"
    );
    assert!(
        batches.iter().all(|line| line.ends_with("crcValid: true")),
        "{text}"
    );
    for value in ["one", "two", "three"] {
        assert!(text.contains(&format!("payload: {value}")), "{text}");
    }
    assert!(
        text.contains("2 batches, 3 records, 0 with a bad CRC."),
        "{text}"
    );
    // Both index files dump (entries or none) without complaint.
    let indexes = dump(
        &[
            &partition.join("00000000000000000000.index"),
            &partition.join("00000000000000000000.timeindex"),
        ],
        &[],
    );
    assert!(!indexes.contains("WARNING"), "{indexes}");

    // Flip a byte of the second batch's records: its CRC fails, the first stays good.
    let mut bytes = std::fs::read(&segment).unwrap();
    let first_size = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let last = bytes.len() - 1;
    assert!(last > first_size + 61);
    bytes[last] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let text = dump(&[&segment], &["--json"]);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(lines[0]["crc_valid"], true, "{text}");
    assert_eq!(lines[1]["crc_valid"], false, "{text}");
    assert_eq!(lines[1]["position"], first_size, "{text}");
    assert_eq!(lines[2]["summary"]["bad_crcs"], 1, "{text}");
}
