//! `spate log dump FILE...`: an offline dump of a partition's files, as Kafka's
//! `kafka-dump-log.sh` prints them, for the operator who suspects something is wrong on disk.
//!
//! - a segment (`.log`): one line per batch with its header fields, its position and size, and
//!   a CRC verdict (`crcValid`); with `--print-records`, one line per record under it. The
//!   walk goes on past a batch whose CRC fails (its length is still read) and stops at bytes
//!   that are no batch: zero padding (an active segment's preallocated tail, normal) or
//!   invalid bytes (a torn write after a crash, or damage), reported with their position.
//! - an offset index (`.index`): one line per entry, absolute offset and position, with a
//!   warning where offsets or positions do not increase.
//! - a time index (`.timeindex`): one line per entry, timestamp and absolute offset.
//!
//! The files are read with plain buffered reads, never written: it is safe on a running
//! broker's files (a segment being appended to may show a torn last batch).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::json;
use spate_storage::batch::{BatchHeader, CRC_COVERAGE_START, HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// `spate log ...`
#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Print the batches of a segment (.log), or the entries of an index (.index) or time
    /// index (.timeindex), with a CRC verdict per batch. Reads only; safe on a running broker.
    ///
    /// Example: spate log dump data/orders-0/00000000000000000000.log --print-records
    Dump {
        /// Files to dump, named as the broker names them (<20-digit base offset>.log, .index,
        /// .timeindex).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also print every record of each batch (Kafka's --print-data-log).
        #[arg(long)]
        print_records: bool,
        /// One JSON object per batch or entry, one per line.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `spate log`.
pub fn run(args: LogArgs) -> anyhow::Result<()> {
    let LogCommand::Dump {
        files,
        print_records,
        json,
    } = args.command;
    let options = DumpOptions {
        print_records,
        json,
    };
    let mut out = std::io::stdout().lock();
    for file in files {
        dump_file(&file, &options, &mut out)?;
    }
    Ok(())
}

struct DumpOptions {
    print_records: bool,
    json: bool,
}

/// Where dump lines go.
type Out<'a> = &'a mut dyn std::io::Write;

fn dump_file(path: &Path, options: &DumpOptions, out: Out<'_>) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    let base_offset: i64 = stem.parse().with_context(|| {
        format!(
            "{}: not a segment file name (<base offset>.log, .index or .timeindex)",
            path.display()
        )
    })?;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    if !options.json {
        writeln!(out, "Dumping {}", path.display())?;
    }
    match extension {
        "log" => dump_segment(&mut reader, size, base_offset, options, out),
        "index" => dump_index(&mut reader, base_offset, options, out),
        "timeindex" => dump_time_index(&mut reader, base_offset, options, out),
        other => bail!("{}: unknown file type .{other}", path.display()),
    }
}

/// What stopped the walk of a segment.
#[derive(Debug, PartialEq, Eq)]
enum SegmentEnd {
    /// The file ended after a whole batch.
    Clean,
    /// Zeros from here to the end: preallocated space of an active segment.
    ZeroPadding { position: u64, bytes: u64 },
    /// Bytes that are no batch: a torn write or damage.
    Invalid { position: u64, bytes: u64 },
}

fn dump_segment(
    reader: &mut impl Read,
    size: u64,
    base_offset: i64,
    options: &DumpOptions,
    out: Out<'_>,
) -> anyhow::Result<()> {
    if !options.json {
        writeln!(out, "Log starting offset: {base_offset}")?;
    }
    let mut position = 0u64;
    let (mut batches, mut records, mut bad_crcs) = (0u64, 0i64, 0u64);
    let end = loop {
        let left = size - position;
        if left == 0 {
            break SegmentEnd::Clean;
        }
        let mut header_bytes = [0u8; HEADER_BYTES];
        let header_read = (left as usize).min(HEADER_BYTES);
        reader.read_exact(&mut header_bytes[..header_read])?;
        let header = BatchHeader::view(&header_bytes).filter(|_| header_read == HEADER_BYTES);
        let total = header.map_or(0, |header| {
            i64::from(header.batch_length.get()) + LOG_OVERHEAD_BYTES as i64
        });
        let plausible = header.is_some_and(|header| header.magic == 2)
            && total >= HEADER_BYTES as i64
            && total as u64 <= left;
        let Some(header) = header.filter(|_| plausible) else {
            let bytes = left;
            let zeros =
                header_bytes[..header_read].iter().all(|&byte| byte == 0) && rest_is_zeros(reader)?;
            break if zeros {
                SegmentEnd::ZeroPadding { position, bytes }
            } else {
                SegmentEnd::Invalid { position, bytes }
            };
        };
        let mut batch = vec![0u8; total as usize];
        batch[..HEADER_BYTES].copy_from_slice(&header_bytes);
        reader.read_exact(&mut batch[HEADER_BYTES..])?;
        let crc_valid = crc32c::crc32c(&batch[CRC_COVERAGE_START..]) == header.crc.get();
        print_batch(header, position, total, crc_valid, options, out)?;
        if options.print_records {
            print_records(Bytes::from(batch), crc_valid, options, out)?;
        }
        batches += 1;
        records += i64::from(header.records_count.get());
        bad_crcs += u64::from(!crc_valid);
        position += total as u64;
    };
    let summary = match end {
        SegmentEnd::Clean => String::new(),
        SegmentEnd::ZeroPadding { position, bytes } => {
            format!(" {bytes} bytes of zero padding from position {position} (preallocated).")
        }
        SegmentEnd::Invalid { position, bytes } => format!(
            " Found {bytes} invalid bytes at the end, from position {position} (a torn write or damage)."
        ),
    };
    if options.json {
        let end = match end {
            SegmentEnd::Clean => json!(null),
            SegmentEnd::ZeroPadding { position, bytes } => {
                json!({"kind": "zero_padding", "position": position, "bytes": bytes})
            }
            SegmentEnd::Invalid { position, bytes } => {
                json!({"kind": "invalid", "position": position, "bytes": bytes})
            }
        };
        let line = json!({"summary": {"batches": batches, "records": records, "bad_crcs": bad_crcs, "end": end}});
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{batches} batches, {records} records, {bad_crcs} with a bad CRC.{summary}"
        )?;
    }
    Ok(())
}

/// Whether everything left to read is zeros, read a piece at a time (the rest of a damaged
/// 1 GiB segment is never held in memory).
fn rest_is_zeros(reader: &mut impl Read) -> anyhow::Result<bool> {
    let mut piece = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut piece)?;
        if read == 0 {
            return Ok(true);
        }
        if piece[..read].iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
    }
}

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn print_batch(
    header: &BatchHeader,
    position: u64,
    size: i64,
    crc_valid: bool,
    options: &DumpOptions,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let base_offset = header.base_offset.get();
    let last_offset = base_offset + i64::from(header.last_offset_delta.get());
    let attributes = header.attributes.get();
    let base_sequence = header.base_sequence.get();
    let last_sequence = if base_sequence < 0 {
        -1
    } else {
        base_sequence.wrapping_add(header.last_offset_delta.get()) & i32::MAX
    };
    let codec = CODECS
        .get((attributes & 0x07) as usize)
        .copied()
        .unwrap_or("unknown");
    let time_type = if attributes & 0x08 != 0 {
        "LogAppendTime"
    } else {
        "CreateTime"
    };
    let transactional = attributes & 0x10 != 0;
    let control = attributes & 0x20 != 0;
    if options.json {
        let line = json!({
            "base_offset": base_offset, "last_offset": last_offset,
            "count": header.records_count.get(), "base_sequence": base_sequence,
            "last_sequence": last_sequence, "producer_id": header.producer_id.get(),
            "producer_epoch": header.producer_epoch.get(),
            "partition_leader_epoch": header.partition_leader_epoch.get(),
            "is_transactional": transactional, "is_control": control, "position": position,
            "timestamp_type": time_type, "max_timestamp": header.max_timestamp.get(),
            "size": size, "magic": header.magic, "compression": codec, "crc_valid": crc_valid,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    writeln!(
        out,
        "baseOffset: {base_offset} lastOffset: {last_offset} count: {} baseSequence: {base_sequence} \
         lastSequence: {last_sequence} producerId: {} producerEpoch: {} partitionLeaderEpoch: {} \
         isTransactional: {transactional} isControl: {control} position: {position} \
         {time_type}: {} size: {size} magic: {} compresscodec: {codec} crcValid: {crc_valid}",
        header.records_count.get(),
        header.producer_id.get(),
        header.producer_epoch.get(),
        header.partition_leader_epoch.get(),
        header.max_timestamp.get(),
        header.magic,
    )?;
    Ok(())
}

/// The records of one batch, one line each (`| offset: ...` as kafka-dump-log prints them).
fn print_records(
    mut batch: Bytes,
    crc_valid: bool,
    options: &DumpOptions,
    out: Out<'_>,
) -> anyhow::Result<()> {
    if !crc_valid {
        writeln!(
            out,
            "| (records not decoded: the batch's CRC does not match)"
        )?;
        return Ok(());
    }
    let set = match RecordBatchDecoder::decode(&mut batch) {
        Ok(set) => set,
        Err(error) => {
            writeln!(out, "| (records cannot be decoded: {error:#})")?;
            return Ok(());
        }
    };
    for record in set.records {
        let text = |bytes: &Option<Bytes>| {
            bytes
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        };
        let header_keys: Vec<String> = record.headers.keys().map(|key| key.to_string()).collect();
        if options.json {
            let line = json!({
                "offset": record.offset, "timestamp": record.timestamp,
                "key": text(&record.key), "payload": text(&record.value),
                "sequence": record.sequence, "header_keys": header_keys,
                "is_control": record.control,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let size = |bytes: &Option<Bytes>| bytes.as_ref().map_or(-1, |bytes| bytes.len() as i64);
        writeln!(
            out,
            "| offset: {} timestamp: {} keySize: {} valueSize: {} sequence: {} headerKeys: [{}] key: {} payload: {}",
            record.offset,
            record.timestamp,
            size(&record.key),
            size(&record.value),
            record.sequence,
            header_keys.join(","),
            text(&record.key).unwrap_or_else(|| "null".into()),
            text(&record.value).unwrap_or_else(|| "null".into()),
        )?;
    }
    Ok(())
}

/// Reads fixed-size entries until the end of the file (a partial last entry is reported).
fn entries<const BYTES: usize>(
    reader: &mut impl Read,
    out: Out<'_>,
    mut each: impl FnMut([u8; BYTES], Out<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut content = Vec::new();
    reader.read_to_end(&mut content)?;
    let mut chunks = content.chunks_exact(BYTES);
    for chunk in &mut chunks {
        let entry: [u8; BYTES] = chunk.try_into().expect("chunks_exact gives BYTES");
        each(entry, out)?;
    }
    if !chunks.remainder().is_empty() {
        writeln!(
            out,
            "{} bytes after the last whole entry (a torn write?)",
            chunks.remainder().len()
        )?;
    }
    Ok(())
}

fn dump_index(
    reader: &mut impl Read,
    base_offset: i64,
    options: &DumpOptions,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let mut previous: Option<(i64, u32)> = None;
    entries::<8>(reader, out, |entry, out| {
        let relative = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let position = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let offset = base_offset + i64::from(relative);
        if options.json {
            writeln!(out, "{}", json!({"offset": offset, "position": position}))?;
        } else {
            writeln!(out, "offset: {offset} position: {position}")?;
        }
        if let Some((previous_offset, previous_position)) = previous {
            if offset <= previous_offset || position <= previous_position {
                writeln!(
                    out,
                    "WARNING: this entry does not follow the previous one (offset {previous_offset}, position {previous_position})"
                )?;
            }
        }
        previous = Some((offset, position));
        Ok(())
    })
}

fn dump_time_index(
    reader: &mut impl Read,
    base_offset: i64,
    options: &DumpOptions,
    out: Out<'_>,
) -> anyhow::Result<()> {
    entries::<12>(reader, out, |entry, out| {
        let timestamp = i64::from_be_bytes(entry[..8].try_into().expect("8 bytes"));
        let relative = i32::from_be_bytes(entry[8..].try_into().expect("4 bytes"));
        let offset = base_offset + i64::from(relative);
        if options.json {
            writeln!(out, "{}", json!({"timestamp": timestamp, "offset": offset}))?;
        } else {
            writeln!(out, "timestamp: {timestamp} offset: {offset}")?;
        }
        Ok(())
    })
}

#[cfg(test)]
#[path = "log_dump_tests.rs"]
mod tests;
