//! `spate group`: list, describe, reset and delete the offsets of, and delete consumer groups.

use spate_net::error_code::{GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP};
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetDeleteRequest,
};
use serde_json::json;

use super::broker::{str_bytes, topic_name, Cluster};
use super::consumer_protocol::decode_assignment;
use super::group_member::PROTOCOL_TYPE;
use super::group_offsets::fetch_committed;
use super::offsets::list_offsets;
use super::output::{id_list, offset_cell, offset_json, print_json, print_text, Table};
use super::{check_error, error_name, group_reset, ConnectionArgs};

/// `spate group ...`
#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List the groups every broker coordinates.
    List,
    /// Show a group's state and members, and per partition its committed offset, log end
    /// offset and lag.
    Describe {
        /// The group id.
        name: String,
    },
    /// Move a group's committed offsets for one topic. Prints the plan unless --execute;
    /// executing needs the group to have no members, as with Kafka's tool.
    ///
    /// Example: spate group reset-offsets billing --topic orders --to-earliest --execute
    ResetOffsets(group_reset::ResetArgs),
    /// Delete a group's committed offsets for one topic (OffsetDelete); refused while the
    /// group's members subscribe to it.
    ///
    /// Example: spate group offset-delete billing --topic orders
    OffsetDelete {
        /// The group id.
        name: String,
        /// The topic whose offsets go.
        #[arg(long)]
        topic: String,
        /// Only these partitions (repeat for several; default: all).
        #[arg(long = "partition", value_name = "N")]
        partitions: Vec<i32>,
    },
    /// Delete a group and its committed offsets; it must have no members.
    Delete {
        /// The group id.
        name: String,
    },
}

/// Runs `spate group ...`.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let json = args.connection.json;
    let mut cluster = Cluster::connect(&args.connection)?;
    match args.command {
        GroupCommand::List => list(&mut cluster, json),
        GroupCommand::Describe { name } => describe(&mut cluster, json, &name),
        GroupCommand::ResetOffsets(reset) => group_reset::run(&mut cluster, json, &reset),
        GroupCommand::OffsetDelete {
            name,
            topic,
            partitions,
        } => offset_delete(&mut cluster, json, &name, &topic, partitions),
        GroupCommand::Delete { name } => delete(&mut cluster, json, &name),
    }
}

fn list(cluster: &mut Cluster, json: bool) -> anyhow::Result<()> {
    cluster.metadata(Some(&[]))?;
    let broker_ids: Vec<i32> = cluster.brokers().keys().copied().collect();
    // group → (protocol type, state, type); each coordinator lists only its own groups.
    let mut groups: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for broker_id in broker_ids {
        let connection = cluster.broker(broker_id)?;
        let version = connection.version(ApiKey::ListGroups, 0..=5)?;
        let response = connection.send(version, &ListGroupsRequest::default())?;
        check_error(response.error_code, None, || {
            format!("cannot list the groups of broker {broker_id}")
        })?;
        for group in response.groups {
            groups.insert(
                group.group_id.0.to_string(),
                (
                    group.protocol_type.to_string(),
                    group.group_state.to_string(),
                    // ListGroups v5 (KIP-848): "classic" or "consumer".
                    if group.group_type.is_empty() {
                        "classic".to_string()
                    } else {
                        group.group_type.to_string()
                    },
                ),
            );
        }
    }
    if json {
        let entries: Vec<_> = groups
            .iter()
            .map(|(group, (protocol_type, state, group_type))| {
                json!({ "group": group, "protocol_type": protocol_type, "state": state, "type": group_type })
            })
            .collect();
        print_json(&json!(entries));
        return Ok(());
    }
    let mut table = Table::new(&["GROUP", "TYPE", "PROTOCOL-TYPE", "STATE"]);
    for (group, (protocol_type, state, group_type)) in groups {
        table.row(vec![
            group,
            group_type,
            protocol_type,
            if state.is_empty() { "-".into() } else { state },
        ]);
    }
    table.print();
    Ok(())
}

/// DescribeGroups of one group at its coordinator.
pub fn describe_group(cluster: &mut Cluster, name: &str) -> anyhow::Result<DescribedGroup> {
    let coordinator = cluster.coordinator(name)?;
    let version = coordinator.version(ApiKey::DescribeGroups, 0..=5)?;
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(name))]);
    let response = coordinator.send(version, &request)?;
    let group = response
        .groups
        .into_iter()
        .next()
        .context("the broker answered DescribeGroups with no group")?;
    check_error(group.error_code, group.error_message.as_deref(), || {
        format!("cannot describe group {name}")
    })?;
    Ok(group)
}

/// One member as `group describe` shows it.
pub struct MemberRow {
    member_id: String,
    client_id: String,
    host: String,
    assignment: BTreeMap<String, Vec<i32>>,
}

/// One partition's offsets as `group describe` shows it.
struct OffsetRow {
    topic: String,
    partition: i32,
    committed: i64,
    log_end: i64,
    member: Option<usize>,
}

impl OffsetRow {
    fn lag(&self) -> i64 {
        if self.committed < 0 || self.log_end < 0 {
            -1
        } else {
            (self.log_end - self.committed).max(0)
        }
    }
}

/// A KIP-848 consumer group as ConsumerGroupDescribe shows it, in DescribeGroups' shape
/// (protocol type "consumer", the server assignor as the protocol) with its members; `None`
/// when the group is not one (or the broker does not serve the API).
pub fn describe_consumer_group(
    cluster: &mut Cluster,
    name: &str,
) -> anyhow::Result<Option<(DescribedGroup, i32, Vec<MemberRow>)>> {
    let coordinator = cluster.coordinator(name)?;
    let Ok(version) = coordinator.version(ApiKey::ConsumerGroupDescribe, 0..=1) else {
        return Ok(None);
    };
    let request =
        ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str_bytes(name))]);
    let response = coordinator.send(version, &request)?;
    let Some(group) = response.groups.into_iter().next() else {
        return Ok(None);
    };
    if group.error_code == GROUP_ID_NOT_FOUND {
        return Ok(None);
    }
    check_error(group.error_code, group.error_message.as_deref(), || {
        format!("cannot describe group {name}")
    })?;
    let members = group
        .members
        .iter()
        .map(|member| MemberRow {
            member_id: member.member_id.to_string(),
            client_id: member.client_id.to_string(),
            host: member.client_host.to_string(),
            assignment: member
                .assignment
                .topic_partitions
                .iter()
                .map(|topic| (topic.topic_name.0.to_string(), topic.partitions.clone()))
                .collect(),
        })
        .collect();
    let described = DescribedGroup::default()
        .with_group_id(group.group_id)
        .with_group_state(group.group_state)
        .with_protocol_type(str_bytes("consumer"))
        .with_protocol_data(group.assignor_name);
    Ok(Some((described, group.group_epoch, members)))
}

fn describe(cluster: &mut Cluster, json: bool, name: &str) -> anyhow::Result<()> {
    if let Some((group, epoch, members)) = describe_consumer_group(cluster, name)? {
        return show(cluster, json, name, &group, Some(epoch), members);
    }
    let group = match describe_group(cluster, name) {
        Err(error) if error.to_string().contains(&error_name(GROUP_ID_NOT_FOUND)) => {
            bail!("group {name} does not exist")
        }
        other => other?,
    };
    let members: Vec<MemberRow> = group
        .members
        .iter()
        .map(|member| MemberRow {
            member_id: member.member_id.to_string(),
            client_id: member.client_id.to_string(),
            host: member.client_host.to_string(),
            assignment: if group.protocol_type.as_str() == PROTOCOL_TYPE {
                decode_assignment(&member.member_assignment).unwrap_or_default()
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    show(cluster, json, name, &group, None, members)
}

/// Prints a described group (a KIP-848 consumer group with its group epoch).
fn show(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    group: &DescribedGroup,
    epoch: Option<i32>,
    members: Vec<MemberRow>,
) -> anyhow::Result<()> {
    let coordinator = cluster.coordinator(name)?;
    let coordinator_address = coordinator.address().to_string();
    let committed = fetch_committed(coordinator, name, None)?;
    if group.group_state.as_str() == "Dead" && committed.is_empty() {
        bail!("group {name} does not exist");
    }
    let rows = offset_rows(cluster, &members, &committed)?;
    if json {
        let mut described = describe_json(name, group, &coordinator_address, &members, &rows);
        described["type"] = json!(if epoch.is_some() {
            "consumer"
        } else {
            "classic"
        });
        if let Some(epoch) = epoch {
            described["group_epoch"] = json!(epoch);
        }
        print_json(&described);
        return Ok(());
    }
    let kind = match epoch {
        Some(epoch) => format!("  Type: consumer (KIP-848), epoch {epoch}"),
        None => String::new(),
    };
    let mut text = format!(
        "Group: {name}  State: {}  Protocol: {}/{}{kind}  Coordinator: {coordinator_address}  Members: {}\n",
        group.group_state,
        dash_if_empty(group.protocol_type.as_str()),
        dash_if_empty(group.protocol_data.as_str()),
        members.len()
    );
    if !members.is_empty() {
        let mut table = Table::new(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for member in &members {
            table.row(vec![
                member.member_id.clone(),
                member.client_id.clone(),
                member.host.clone(),
                assignment_text(&member.assignment),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text.push('\n');
    if rows.is_empty() {
        text.push_str("No committed offsets and no assigned partitions.\n");
    } else {
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "HOST",
            "CLIENT-ID",
        ]);
        for row in &rows {
            let member = row.member.map(|index| &members[index]);
            table.row(vec![
                row.topic.clone(),
                row.partition.to_string(),
                offset_cell(row.committed),
                offset_cell(row.log_end),
                offset_cell(row.lag()),
                member.map_or("-".into(), |m| m.member_id.clone()),
                member.map_or("-".into(), |m| m.host.clone()),
                member.map_or("-".into(), |m| m.client_id.clone()),
            ]);
        }
        text.push_str(&table.render());
    }
    print_text(&text);
    Ok(())
}

/// A row for every partition the group has an offset for or a member owns.
fn offset_rows(
    cluster: &mut Cluster,
    members: &[MemberRow],
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<OffsetRow>> {
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    let mut owners: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (index, member) in members.iter().enumerate() {
        for (topic, assigned) in &member.assignment {
            for &partition in assigned {
                partitions.insert((topic.clone(), partition));
                owners.insert((topic.clone(), partition), index);
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    let mut rows = Vec::new();
    for (topic, indexes) in by_topic {
        // A deleted topic keeps its committed offsets for a while; show them without an end.
        let log_ends = match cluster.topic(&topic) {
            Ok(layout) => {
                let known: Vec<i32> = indexes
                    .iter()
                    .copied()
                    .filter(|p| layout.leader(*p).is_ok())
                    .collect();
                list_offsets(cluster, &layout, &known, super::offsets::LATEST)?
            }
            Err(_) => BTreeMap::new(),
        };
        for partition in indexes {
            let key = (topic.clone(), partition);
            rows.push(OffsetRow {
                committed: committed.get(&key).copied().unwrap_or(-1),
                log_end: log_ends.get(&partition).copied().unwrap_or(-1),
                member: owners.get(&key).copied(),
                topic: topic.clone(),
                partition,
            });
        }
    }
    Ok(rows)
}

fn describe_json(
    name: &str,
    group: &DescribedGroup,
    coordinator: &str,
    members: &[MemberRow],
    rows: &[OffsetRow],
) -> serde_json::Value {
    let members_json: Vec<_> = members
        .iter()
        .map(|member| {
            json!({
                "member_id": member.member_id,
                "client_id": member.client_id,
                "host": member.host,
                "assignment": member.assignment,
            })
        })
        .collect();
    let offsets: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "topic": row.topic,
                "partition": row.partition,
                "committed_offset": offset_json(row.committed),
                "log_end_offset": offset_json(row.log_end),
                "lag": offset_json(row.lag()),
                "member_id": row.member.map(|index| members[index].member_id.clone()),
            })
        })
        .collect();
    json!({
        "group": name,
        "state": group.group_state.to_string(),
        "protocol_type": group.protocol_type.to_string(),
        "protocol": group.protocol_data.to_string(),
        "coordinator": coordinator,
        "members": members_json,
        "offsets": offsets,
    })
}

fn dash_if_empty(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// `orders:0,1 payments:2`.
fn assignment_text(assignment: &BTreeMap<String, Vec<i32>>) -> String {
    if assignment.is_empty() {
        return "-".to_string();
    }
    assignment
        .iter()
        .map(|(topic, partitions)| {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}:{}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn delete(cluster: &mut Cluster, json: bool, name: &str) -> anyhow::Result<()> {
    let coordinator = cluster.coordinator(name)?;
    let version = coordinator.version(ApiKey::DeleteGroups, 0..=2)?;
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(name))]);
    let response = coordinator.send(version, &request)?;
    let result = response
        .results
        .first()
        .context("the broker answered DeleteGroups with no result")?;
    match result.error_code {
        0 => {}
        GROUP_ID_NOT_FOUND => bail!("group {name} does not exist"),
        NON_EMPTY_GROUP => bail!(
            "cannot delete group {name}: {}: it has active members",
            error_name(NON_EMPTY_GROUP)
        ),
        code => bail!("cannot delete group {name}: {}", error_name(code)),
    }
    if json {
        print_json(&json!({ "group": name, "deleted": true }));
    } else {
        print_text(&format!("Deleted group {name}.\n"));
    }
    Ok(())
}

fn offset_delete(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    topic: &str,
    mut partitions: Vec<i32>,
) -> anyhow::Result<()> {
    if partitions.is_empty() {
        partitions = cluster.topic(topic)?.partition_indexes();
    }
    let coordinator = cluster.coordinator(name)?;
    let version = coordinator.version(ApiKey::OffsetDelete, 0..=0)?;
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str_bytes(name)))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&partition| {
                        OffsetDeleteRequestPartition::default().with_partition_index(partition)
                    })
                    .collect(),
            )]);
    let response = coordinator.send(version, &request)?;
    match response.error_code {
        0 => {}
        GROUP_ID_NOT_FOUND => bail!("group {name} does not exist"),
        code => bail!(
            "cannot delete the offsets of group {name}: {}",
            error_name(code)
        ),
    }
    let answers: Vec<(i32, i16)> = response
        .topics
        .iter()
        .flat_map(|answer| &answer.partitions)
        .map(|answer| (answer.partition_index, answer.error_code))
        .collect();
    if let Some(&(partition, code)) = answers.iter().find(|(_, code)| *code != 0) {
        bail!(
            "cannot delete the offsets of group {name} for {topic}-{partition}: {}",
            error_name(code)
        );
    }
    if json {
        print_json(&json!({ "group": name, "topic": topic, "partitions": partitions }));
    } else {
        print_text(&format!(
            "Deleted the committed offsets of group {name} for {topic} (partitions {}).\n",
            id_list(&partitions)
        ));
    }
    Ok(())
}
