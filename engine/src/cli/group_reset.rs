//! `spate group reset-offsets`: where a group's committed offsets for a topic move, with
//! Kafka's targets (`kafka-consumer-groups.sh --reset-offsets`), printed as a plan and
//! committed with `--execute`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use serde_json::json;

use super::broker::Cluster;
use super::datetime::{parse_iso8601_duration_ms, parse_iso8601_ms};
use super::group::{describe_consumer_group, describe_group};
use super::group_offsets::{commit_all, fetch_committed, Committer};
use super::offsets::{list_offsets, log_bounds};
use super::output::{offset_cell, offset_json, print_json, print_text, Table};

/// `spate group reset-offsets GROUP --topic T <one target> [--execute]`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).multiple(false)))]
pub struct ResetArgs {
    /// The group id.
    name: String,
    /// The topic whose offsets move.
    #[arg(long)]
    topic: String,
    /// Only these partitions (repeat for several; default: all).
    #[arg(long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    /// To the log start offset.
    #[arg(long, group = "target")]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long, group = "target")]
    to_latest: bool,
    /// To where the group is now (fails for a partition without a committed offset).
    #[arg(long, group = "target")]
    to_current: bool,
    /// To this offset (clamped to the log's start and end).
    #[arg(long, group = "target", value_name = "N")]
    to_offset: Option<i64>,
    /// By this many offsets from the committed one, negative to go back (clamped).
    #[arg(
        long,
        group = "target",
        value_name = "N",
        allow_negative_numbers = true
    )]
    shift_by: Option<i64>,
    /// To the first record at or after this time, e.g. 2024-05-01T12:00:00Z (no zone
    /// means UTC); to the log end when there is none.
    #[arg(long, group = "target", value_name = "ISO8601", value_parser = parse_iso8601_ms)]
    to_datetime: Option<i64>,
    /// To the first record at or after this long ago, as an ISO 8601 duration (PT30M,
    /// P1DT12H, PT0.5S); to the log end when there is none.
    #[arg(long, group = "target", value_name = "DURATION", value_parser = parse_iso8601_duration_ms)]
    by_duration: Option<i64>,
    /// To the offsets in a CSV file of `topic,partition,offset` lines (what --export
    /// prints); lines of other topics are ignored, offsets are clamped to the log.
    #[arg(long, group = "target", value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Commit the new offsets; without it only the plan is printed.
    #[arg(long)]
    execute: bool,
    /// Print the plan as `topic,partition,offset` CSV lines, for --from-file.
    #[arg(long, conflicts_with = "execute")]
    export: bool,
}

/// Runs `spate group reset-offsets`.
pub fn run(cluster: &mut Cluster, json: bool, args: &ResetArgs) -> anyhow::Result<()> {
    let target = if args.to_earliest {
        Target::Earliest
    } else if args.to_latest {
        Target::Latest
    } else if args.to_current {
        Target::Current
    } else if let Some(offset) = args.to_offset {
        Target::Offset(offset)
    } else if let Some(shift) = args.shift_by {
        Target::Shift(shift)
    } else if let Some(time_ms) = args.to_datetime {
        Target::Time(time_ms)
    } else if let Some(duration_ms) = args.by_duration {
        Target::Time(spate_net::records::now_ms().saturating_sub(duration_ms))
    } else if let Some(file) = &args.from_file {
        Target::Listed(read_offsets_file(file, &args.topic)?)
    } else {
        bail!("give one target: --to-earliest, --to-latest, --to-current, --to-offset, --shift-by, --to-datetime, --by-duration or --from-file")
    };
    let plan = ResetPlan {
        group: &args.name,
        topic: &args.topic,
        partitions: &args.partitions,
        target,
    };
    let output = match (args.export, json) {
        (true, _) => Output::Csv,
        (false, true) => Output::Json,
        (false, false) => Output::Table,
    };
    reset_offsets(cluster, output, &plan, args.execute)
}

/// How the plan is printed.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Table,
    Json,
    /// `topic,partition,offset` lines, as Kafka's `--export` prints them.
    Csv,
}

/// The offsets for `topic` in a `topic,partition,offset` CSV file (blank lines and lines
/// starting with `#` skipped).
fn read_offsets_file(path: &Path, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut offsets = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "{}:{}: expected topic,partition,offset, got {line:?}",
                path.display(),
                number + 1
            )
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, partition, offset] = fields.as_slice() else {
            bail!(bad());
        };
        let partition: i32 = partition.parse().with_context(bad)?;
        let offset: i64 = offset.parse().with_context(bad)?;
        if *name == topic {
            offsets.insert(partition, offset);
        }
    }
    if offsets.is_empty() {
        bail!("{} has no offsets for topic {topic}", path.display());
    }
    Ok(offsets)
}

/// Where `reset-offsets` moves each partition.
#[derive(Clone, Debug)]
enum Target {
    Earliest,
    Latest,
    /// Where the group is now (commits it again, and fails where it has none).
    Current,
    Offset(i64),
    Shift(i64),
    /// Milliseconds since the epoch.
    Time(i64),
    /// Per partition, from a `--from-file` CSV.
    Listed(BTreeMap<i32, i64>),
}

struct ResetPlan<'a> {
    group: &'a str,
    topic: &'a str,
    partitions: &'a [i32],
    target: Target,
}

fn reset_offsets(
    cluster: &mut Cluster,
    output: Output,
    plan: &ResetPlan,
    execute: bool,
) -> anyhow::Result<()> {
    let layout = cluster.topic(plan.topic)?;
    let partitions = match (&plan.target, plan.partitions.is_empty()) {
        // A file names its partitions; --partition narrows them further.
        (Target::Listed(listed), _) => listed
            .keys()
            .copied()
            .filter(|partition| plan.partitions.is_empty() || plan.partitions.contains(partition))
            .collect(),
        (_, true) => layout.partition_indexes(),
        (_, false) => plan.partitions.to_vec(),
    };
    for partition in &partitions {
        layout.leader(*partition)?;
    }
    if execute {
        // A KIP-848 consumer group first: DescribeGroups calls it Dead, members or not.
        let (members, state) = match describe_consumer_group(cluster, plan.group)? {
            Some((group, _, members)) => (members.len(), group.group_state.to_string()),
            None => {
                let group = describe_group(cluster, plan.group)?;
                (group.members.len(), group.group_state.to_string())
            }
        };
        if members > 0 {
            bail!(
                "group {} has {members} active member(s) (state {state}); offsets can only be reset while it is empty: stop its consumers first",
                plan.group,
            );
        }
    }
    let wanted = BTreeMap::from([(plan.topic.to_string(), partitions.clone())]);
    let committed = fetch_committed(cluster.coordinator(plan.group)?, plan.group, Some(&wanted))?;
    let current: BTreeMap<i32, i64> = partitions
        .iter()
        .map(|&p| {
            (
                p,
                committed
                    .get(&(plan.topic.to_string(), p))
                    .copied()
                    .unwrap_or(-1),
            )
        })
        .collect();
    let bounds = log_bounds(cluster, &layout, &partitions)?;
    let by_time = match plan.target {
        Target::Time(time_ms) => Some(list_offsets(cluster, &layout, &partitions, time_ms)?),
        _ => None,
    };
    let mut new_offsets = BTreeMap::new();
    for &partition in &partitions {
        let (start, end) = bounds[&partition];
        let clamp = |offset: i64| offset.clamp(start, end.max(start));
        let committed = || match current[&partition] {
            offset if offset >= 0 => Ok(offset),
            _ => Err(anyhow::anyhow!(
                "group {} has no committed offset for {}-{partition}",
                plan.group,
                plan.topic
            )),
        };
        let new = match &plan.target {
            Target::Earliest => start,
            Target::Latest => end,
            Target::Current => committed()?,
            Target::Offset(offset) => clamp(*offset),
            Target::Shift(shift) => clamp(committed()?.saturating_add(*shift)),
            Target::Listed(listed) => match listed.get(&partition) {
                Some(&offset) => clamp(offset),
                None => continue,
            },
            Target::Time(_) => match by_time.as_ref().map(|found| found[&partition]) {
                Some(offset) if offset >= 0 => offset,
                _ => end,
            },
        };
        new_offsets.insert(partition, new);
    }
    if execute {
        let committer = Committer {
            group: plan.group,
            generation: -1,
            member_id: "",
        };
        commit_all(
            cluster.coordinator(plan.group)?,
            &committer,
            plan.topic,
            &new_offsets,
        )?;
    }
    print_plan(output, plan, &current, &new_offsets, execute);
    Ok(())
}

fn print_plan(
    output: Output,
    plan: &ResetPlan,
    current: &BTreeMap<i32, i64>,
    new_offsets: &BTreeMap<i32, i64>,
    executed: bool,
) {
    if output == Output::Csv {
        let lines: String = new_offsets
            .iter()
            .map(|(partition, new)| format!("{},{partition},{new}\n", plan.topic))
            .collect();
        print_text(&lines);
        return;
    }
    if output == Output::Json {
        let partitions: Vec<_> = new_offsets
            .iter()
            .map(|(partition, new)| {
                json!({
                    "topic": plan.topic,
                    "partition": partition,
                    "current_offset": offset_json(current[partition]),
                    "new_offset": new,
                })
            })
            .collect();
        print_json(&json!({ "group": plan.group, "executed": executed, "partitions": partitions }));
        return;
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    for (partition, new) in new_offsets {
        table.row(vec![
            plan.topic.to_string(),
            partition.to_string(),
            offset_cell(current[partition]),
            new.to_string(),
        ]);
    }
    let mut text = table.render();
    if executed {
        text.push_str(&format!(
            "\nCommitted the new offsets for group {}.\n",
            plan.group
        ));
    } else {
        text.push_str("\nDry run: nothing was changed. Add --execute to commit these offsets.\n");
    }
    print_text(&text);
}
