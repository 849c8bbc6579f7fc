//! `spate-bench catchup`: a consumer that fell behind reads a large backlog from offset 0 as
//! fast as the broker serves it, from disk rather than from memory.
//!
//! Steps: write the backlog (`--backlog`, produced as fast as possible with acks=all into
//! a fresh topic); measure the disk's O_DIRECT read bandwidth beside it (`--limits-dir`);
//! `sync` and drop the kernel's page cache (`/proc/sys/vm/drop_caches`, root only: the
//! result says when that was not possible); read everything from the beginning until caught
//! up; delete the topic. The JSON is the read's result (`scenario: "catchup"`) plus a
//! `catchup` object with the backlog and the read as a share of the O_DIRECT read.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::args::{parse_words, ConsumeCommand, ProduceCommand};
use crate::limits::{self, LimitsArgs};
use crate::report::RunResult;
use crate::run::parse_bytes;

/// The largest backlog the command writes: it must fit on a shared test disk.
pub const BACKLOG_BYTES_MAX: u64 = 64 << 30;

/// Flags of `spate-bench catchup`.
#[derive(clap::Args, Clone, Debug)]
pub struct CatchupArgs {
    /// Bootstrap broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic name prefix; a fresh topic `PREFIX-UNIXTIME` is written, then deleted.
    #[arg(long, default_value = "spate-bench-catchup")]
    pub topic: String,
    /// Partitions of the backlog topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Record payload to write and read back (e.g. 4GiB; at most 64 GiB).
    #[arg(long, default_value = "4GiB")]
    pub backlog: String,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_records: usize,
    /// Producer connections writing the backlog.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Consumer connections reading it.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Bytes a Fetch may return per partition.
    #[arg(long, default_value_t = 1 << 20)]
    pub fetch_partition_max_bytes: i32,
    /// Longest the broker may hold a Fetch (fetch.max.wait.ms); a backlog should never
    /// make it wait, but some brokers do.
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,
    /// Give up reading after this many seconds (what was read by then is reported, and
    /// the unread records count as errors).
    #[arg(long, default_value_t = 600.0)]
    pub read_timeout: f64,
    /// A directory on the broker's disk: measure O_DIRECT read (and write) bandwidth there
    /// in the same run, so the read can be given as a share of it.
    #[arg(long)]
    pub limits_dir: Option<PathBuf>,
    /// Do not drop the page cache (to measure a warm read).
    #[arg(long)]
    pub keep_page_cache: bool,
    /// Leave the topic in place afterwards.
    #[arg(long)]
    pub keep_topic: bool,
    /// Broker process id, to report its CPU-seconds per GiB (of the read).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Pin the generator's threads to these CPUs.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the picture here, as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// What the catch-up scenario adds to the read's result (`catchup` in the JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatchupFacts {
    /// The topic written and read.
    pub topic: String,
    /// Record payload acknowledged into the backlog.
    pub backlog_bytes: u64,
    /// Records acknowledged into the backlog.
    pub backlog_records: u64,
    /// How fast the backlog was written, MB/s (acks=all, as fast as possible).
    pub write_mb_s: f64,
    /// Records read back.
    pub records_read: u64,
    /// Seconds the read took.
    pub read_s: f64,
    /// Whether the kernel's page cache was dropped before the read.
    pub page_cache_dropped: bool,
    /// Why not, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache_note: Option<String>,
    /// The read's MB/s over the O_DIRECT read bandwidth measured in the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_of_direct_read: Option<f64>,
    /// Whether the topic was deleted afterwards.
    pub topic_deleted: bool,
}

/// Runs the scenario and prints, writes and returns its result.
pub fn run(args: &CatchupArgs) -> anyhow::Result<RunResult> {
    let backlog_bytes = parse_bytes(&args.backlog)?;
    if backlog_bytes > BACKLOG_BYTES_MAX {
        bail!("--backlog is at most 64 GiB (the disk is shared)");
    }
    let unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let topic = format!("{}-{unix_s}", args.topic);
    let outcome = write_and_read(args, &topic, backlog_bytes);
    let topic_deleted = !args.keep_topic && {
        match crate::admin::delete_topic(&args.brokers, &topic) {
            Ok(()) => true,
            Err(error) => {
                eprintln!("spate-bench: could not delete {topic}: {error:#}");
                false
            }
        }
    };
    let mut result = outcome?;
    if let Some(facts) = &mut result.catchup {
        facts.topic_deleted = topic_deleted;
    }
    println!("{}", result.summary());
    if let Some(path) = &args.json {
        result.write_json(path)?;
    }
    if let Some(path) = &args.svg {
        crate::svg::write(&result, path)?;
    }
    Ok(result)
}

fn write_and_read(
    args: &CatchupArgs,
    topic: &str,
    backlog_bytes: u64,
) -> anyhow::Result<RunResult> {
    let mut common = format!("--brokers {} --topic {topic} --warmup 0", args.brokers);
    if !args.cpus.is_empty() {
        let cpus: Vec<String> = args.cpus.iter().map(usize::to_string).collect();
        common.push_str(&format!(" --cpus {}", cpus.join(",")));
    }
    if args.quiet {
        common.push_str(" --quiet");
    }
    eprintln!("== catch-up: writing {backlog_bytes} bytes into {topic}");
    // The window is long enough for a slow broker (10 MB/s); the budget ends it.
    let write_s = (backlog_bytes as f64 / 10e6).max(60.0);
    let produce: ProduceCommand = parse_words(&words(&format!(
        "{common} --partitions {} --producers {} --record-size {} --batch-records {} --acks all \
         --max-in-flight 5 --total-bytes {backlog_bytes} --duration {write_s}",
        args.partitions, args.producers, args.record_size, args.batch_records
    )))?;
    let written = crate::run::run_produce(&produce)?;
    eprintln!("{}", written.summary());
    if written.errors > 0 {
        bail!("writing the backlog failed with {} errors", written.errors);
    }
    let backlog_records = (written.records_per_s * written.measured_s).round() as u64;
    let limits = args
        .limits_dir
        .as_ref()
        .map(|dir| {
            eprintln!("== catch-up: the disk's limits in {}", dir.display());
            limits::run(&LimitsArgs {
                dir: dir.clone(),
                size_mib: 1024,
                queue_depth: 4,
                tcp_seconds: 2.0,
                repeat: 1,
                json: None,
            })
        })
        .transpose()?;
    let dropped = if args.keep_page_cache {
        Err("kept on request (--keep-page-cache)".to_string())
    } else {
        drop_page_cache()
    };
    match &dropped {
        Ok(()) => eprintln!("== catch-up: page cache dropped"),
        Err(note) => eprintln!("== catch-up: page cache NOT dropped: {note}"),
    }
    eprintln!("== catch-up: reading {topic} from offset 0");
    let mut consume_words = format!(
        "{common} --consumers {} --fetch-partition-max-bytes {} --fetch-max-wait-ms {} \
         --from beginning --until-caught-up --duration {}",
        args.consumers, args.fetch_partition_max_bytes, args.fetch_max_wait_ms, args.read_timeout
    );
    if let Some(pid) = args.broker_pid {
        consume_words.push_str(&format!(" --broker-pid {pid}"));
    }
    let consume: ConsumeCommand = parse_words(&words(&consume_words))?;
    let mut result = crate::run::run_consume(&consume)?;
    // Counts come back as rates times the window: round, never truncate, to get them back.
    let records_read = (result.records_per_s * result.measured_s).round() as u64;
    let unread = backlog_records.saturating_sub(records_read);
    if unread > 0 {
        eprintln!("spate-bench: {unread} records of the backlog were not read in time");
    }
    result.errors += unread;
    result.scenario = "catchup".into();
    result.parameters = serde_json::json!({
        "backlog": args.backlog,
        "partitions": args.partitions,
        "record_size": args.record_size,
        "batch_records": args.batch_records,
        "producers": args.producers,
        "consumers": args.consumers,
        "fetch_partition_max_bytes": args.fetch_partition_max_bytes,
        "fetch_max_wait_ms": args.fetch_max_wait_ms,
        "drop_page_cache": !args.keep_page_cache,
        "read": consume,
    });
    result.catchup = Some(CatchupFacts {
        topic: topic.to_string(),
        backlog_bytes: (written.throughput_mb_s * 1e6 * written.measured_s).round() as u64,
        backlog_records,
        write_mb_s: written.throughput_mb_s,
        records_read,
        read_s: result.measured_s,
        page_cache_dropped: dropped.is_ok(),
        page_cache_note: dropped.err(),
        share_of_direct_read: limits
            .as_ref()
            .map(|limits| result.throughput_mb_s / limits.direct_read_mb_s),
        topic_deleted: false,
    });
    result.limits = limits.map(serde_json::to_value).transpose()?;
    Ok(result)
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

/// Writes dirty pages back and drops the page cache, dentries and inodes, so the read
/// comes from the disk. Needs root (CAP_SYS_ADMIN) and a writable /proc/sys.
pub fn drop_page_cache() -> Result<(), String> {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|error| format!("cannot write /proc/sys/vm/drop_caches: {error}"))?;
    // Let the kernel finish reclaiming before the clock starts.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_have_their_json_names() {
        let facts = CatchupFacts {
            topic: "t".into(),
            backlog_bytes: 1 << 30,
            backlog_records: 1 << 20,
            write_mb_s: 500.0,
            records_read: 1 << 20,
            read_s: 2.0,
            page_cache_dropped: false,
            page_cache_note: Some("not root".into()),
            share_of_direct_read: Some(0.25),
            topic_deleted: true,
        };
        let json = serde_json::to_value(&facts).unwrap();
        for field in [
            "backlog_bytes",
            "write_mb_s",
            "read_s",
            "page_cache_dropped",
            "page_cache_note",
            "share_of_direct_read",
            "topic_deleted",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        let mut result = crate::report::tests::sample_result();
        result.catchup = Some(facts);
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["catchup"]["backlog_bytes"], 1u64 << 30);
        let back: RunResult = serde_json::from_value(json).unwrap();
        assert!(back.catchup.unwrap().topic_deleted);
        assert!(result.summary().contains("page cache NOT dropped"));
    }

    #[test]
    fn a_backlog_over_the_bound_is_refused_before_anything_is_written() {
        let args = CatchupArgs {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            partitions: 1,
            backlog: "65GiB".into(),
            record_size: 1024,
            batch_records: 64,
            producers: 1,
            consumers: 1,
            fetch_partition_max_bytes: 1 << 20,
            fetch_max_wait_ms: 100,
            read_timeout: 1.0,
            limits_dir: None,
            keep_page_cache: true,
            keep_topic: true,
            broker_pid: None,
            cpus: Vec::new(),
            json: None,
            svg: None,
            quiet: true,
        };
        let error = run(&args).unwrap_err();
        assert!(format!("{error}").contains("at most 64 GiB"), "{error}");
    }
}
