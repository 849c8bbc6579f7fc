//! The dump of segments and indexes written here byte by byte: verdicts, padding, damage.

use super::*;
use crate::cli::records::{encode_batch, OutgoingRecord};
use kafka_protocol::records::Compression;

fn batch_at(base_offset: i64, values: &[&str]) -> Vec<u8> {
    let records: Vec<OutgoingRecord> = values
        .iter()
        .map(|value| OutgoingRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from(value.to_string()),
            timestamp_ms: 1_700_000_000_000,
            headers: vec![("trace".into(), Bytes::from_static(b"t1"))],
        })
        .collect();
    let mut batch = encode_batch(&records, Compression::None, None)
        .unwrap()
        .to_vec();
    // baseOffset is not covered by the CRC: the broker rewrites it, and so does this.
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch
}

fn dump(name: &str, content: &[u8], print_records: bool, json: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    let mut out = Vec::new();
    dump_file(
        &path,
        &DumpOptions {
            print_records,
            json,
        },
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn batches_records_verdicts_and_padding_are_reported() {
    let mut segment = batch_at(100, &["a", "b", "c"]);
    let mut damaged = batch_at(103, &["d"]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40; // inside the record: the CRC no longer matches
    segment.extend_from_slice(&damaged);
    segment.extend_from_slice(&batch_at(104, &["e", "f"]));
    let padding_at = segment.len();
    segment.resize(padding_at + 4096, 0);

    let text = dump("00000000000000000100.log", &segment, true, false);
    let batches: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("baseOffset"))
        .collect();
    assert_eq!(batches.len(), 3, "{text}");
    assert!(
        batches[0].starts_with("baseOffset: 100 lastOffset: 102 count: 3"),
        "{text}"
    );
    assert!(batches[0].ends_with("crcValid: true"), "{text}");
    assert!(batches[1].ends_with("crcValid: false"), "{text}");
    assert!(batches[2].contains("position: ") && batches[2].ends_with("crcValid: true"));
    assert!(
        text.contains("| offset: 101 timestamp: 1700000000000 keySize: 1 valueSize: 1"),
        "{text}"
    );
    assert!(text.contains("payload: f"), "{text}");
    assert!(text.contains("records not decoded"), "{text}");
    assert!(
        text.contains(&format!(
            "3 batches, 6 records, 1 with a bad CRC. 4096 bytes of zero padding from position {padding_at}"
        )),
        "{text}"
    );

    let json = dump("00000000000000000100.log", &segment, false, true);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["crc_valid"], false);
    assert_eq!(lines[3]["summary"]["end"]["kind"], "zero_padding");
}

#[test]
fn a_torn_or_garbled_tail_is_invalid_bytes_at_its_position() {
    let first = batch_at(0, &["kept"]);
    let second = batch_at(1, &["torn"]);
    // (A cut inside the leading zeros of the base offset is zero padding, rightly.)
    for cut in [12, HEADER_BYTES, second.len() - 1] {
        let mut segment = first.clone();
        segment.extend_from_slice(&second[..cut]);
        let text = dump("00000000000000000000.log", &segment, false, false);
        assert!(
            text.contains(&format!(
                "1 batches, 1 records, 0 with a bad CRC. Found {cut} invalid bytes at the end, from position {}",
                first.len()
            )),
            "cut {cut}: {text}"
        );
    }
    let mut garbled = first.clone();
    garbled.extend_from_slice(&[0xde; 100]);
    let text = dump("00000000000000000000.log", &garbled, false, false);
    assert!(text.contains("Found 100 invalid bytes"), "{text}");
}

#[test]
fn index_entries_are_absolute_and_disorder_is_flagged() {
    let mut index = Vec::new();
    for (relative, position) in [(0u32, 0u32), (10, 4096), (5, 8192)] {
        index.extend_from_slice(&relative.to_be_bytes());
        index.extend_from_slice(&position.to_be_bytes());
    }
    index.extend_from_slice(&[1, 2, 3]);
    let text = dump("00000000000000000500.index", &index, false, false);
    assert!(text.contains("offset: 510 position: 4096"), "{text}");
    assert!(
        text.contains("WARNING: this entry does not follow"),
        "{text}"
    );
    assert!(
        text.contains("3 bytes after the last whole entry"),
        "{text}"
    );

    let mut time_index = Vec::new();
    time_index.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
    time_index.extend_from_slice(&7i32.to_be_bytes());
    let text = dump("00000000000000000500.timeindex", &time_index, false, false);
    assert!(
        text.contains("timestamp: 1700000000123 offset: 507"),
        "{text}"
    );
}

#[test]
fn other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leader-epoch-checkpoint");
    std::fs::write(&path, "0\n0\n").unwrap();
    let options = DumpOptions {
        print_records: false,
        json: false,
    };
    assert!(dump_file(&path, &options, &mut Vec::new()).is_err());
}
