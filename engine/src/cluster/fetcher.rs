//! A follower shard's fetch sessions: how replicas copy their leaders' logs (Kafka's
//! `ReplicaFetcherThread`, one per follower shard and leader broker).
//!
//! [`spawn`] starts a supervisor on each shard of a cluster node. Whenever the shard's image
//! names partitions it follows, it makes sure a session runs for each leader broker they
//! follow. A session ([`session`]) loops: it builds one Fetch request (v17 as Kafka's own
//! followers send it: topics by id, this shard's broker id and broker epoch in
//! `replica_state`; v12 with `replica_id` to a leader that serves no newer version) over all
//! the partitions it follows from that leader,
//! each from its durable end with the epoch of its last batch, sends it on its own
//! connection, and applies the answer:
//! - batches are appended as they are (`Partition::append_replicated`: CRC and offsets
//!   checked), and the session waits for their group commit before it fetches again, so
//!   that the position its next fetch reports is durable here: "acknowledged" means
//!   fdatasync'ed on every in-sync replica;
//! - a diverging epoch truncates the log where it leaves the leader's (Kafka's rules in
//!   `AbstractFetcherThread.truncateOnFetchResponse`), a leader log that starts past this
//!   one's end restarts it there;
//! - the leader's high watermark becomes this replica's, capped at what it holds;
//! - leadership errors wait for the next image, other errors back off and retry.
//!
//! A session ends when its leader no longer leads anything this shard follows; the
//! supervisor starts a new one when that changes again.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{ApiKey, BrokerId as WireBrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use spate_storage::Offset;

use crate::metadata::image::MetadataImage;
use crate::partition::{BrokerId, LeaderEpoch, Partition};
use crate::shard::Shard;

/// How long the leader may hold a fetch that finds nothing new (replica.fetch.wait.max.ms).
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// The pause after an error, and how often the supervisor looks at the image.
const BACKOFF: Duration = Duration::from_millis(100);

/// How often a follower warns that its leader refuses its inter-broker login.
const LOGIN_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// The Fetch versions a follower speaks: v12 has `last_fetched_epoch` (KIP-595) for
/// divergence, v13 topic ids, v15 `replica_state` (KIP-903: the broker epoch, so that a
/// leader can tell a fetch from an earlier incarnation of this broker), v17 the newest
/// Spate serves. The highest the leader serves is taken.
const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 12..=17;
/// The first Fetch version that identifies topics by id.
const TOPIC_IDS_VERSION: i16 = 13;
/// The first Fetch version with `replica_state`.
const REPLICA_STATE_VERSION: i16 = 15;
/// Answers that mean "the leadership moved": wait for the image to follow.
const LEADERSHIP_MOVED: [i16; 4] = [6, 74, 75, 3];
/// OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Starts the supervisor of this shard's fetch sessions. Every node runs it: a single node
/// too, whose partitions with a factor above one have their replicas on its other shards.
pub fn spawn(shard: &Rc<Shard>) {
    glommio::spawn_local(supervise(shard.clone())).detach();
}

async fn supervise(shard: Rc<Shard>) {
    let running: Rc<RefCell<HashSet<BrokerId>>> = Rc::default();
    // The image version last looked at; a session that ends looks again (`None`). A node
    // with nothing replicated (a single node's default) scans each image once, not every
    // tick.
    let seen: Rc<Cell<Option<u64>>> = Rc::default();
    while !shard.node.is_shutting_down() {
        let image = shard.partitions.image();
        if seen.get() != Some(image.version) {
            seen.set(Some(image.version));
            for leader in followed(&image, shard.broker_id()).into_keys() {
                if running.borrow_mut().insert(leader) {
                    tracing::info!(leader = %leader, "starting a follower fetch session");
                    let running = running.clone();
                    let seen = seen.clone();
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        session(&shard, leader).await;
                        running.borrow_mut().remove(&leader);
                        seen.set(None);
                    })
                    .detach();
                }
            }
        }
        glommio::timer::sleep(BACKOFF).await;
    }
}

/// A partition this shard follows: its topic, index and the leader epoch of the image.
#[derive(Clone, Debug)]
struct Followed {
    topic: String,
    topic_id: uuid::Uuid,
    partition: i32,
    leader_epoch: LeaderEpoch,
}

/// Per leader broker, the partitions `me` follows from it.
fn followed(image: &MetadataImage, me: BrokerId) -> BTreeMap<BrokerId, Vec<Followed>> {
    let mut by_leader: BTreeMap<BrokerId, Vec<Followed>> = BTreeMap::new();
    for topic in image.topics() {
        for (index, assignment) in topic.partitions.iter().enumerate() {
            if assignment.leader == me
                || assignment.leader.0 < 0
                || !assignment.replicas.contains(&me)
            {
                continue;
            }
            by_leader
                .entry(assignment.leader)
                .or_default()
                .push(Followed {
                    topic: topic.name.clone(),
                    topic_id: topic.id,
                    partition: index as i32,
                    leader_epoch: assignment.leader_epoch,
                });
        }
    }
    by_leader
}

/// One follower replica in a fetch round.
struct Fetching {
    followed: Followed,
    replica: Rc<Partition>,
    fetch_offset: Offset,
}

/// Copies every partition this shard follows from `leader` until there is none.
async fn session(shard: &Rc<Shard>, leader: BrokerId) {
    let mut connection: Option<super::PeerConnection> = None;
    let mut last_login_warning: Option<Instant> = None;
    while !shard.node.is_shutting_down() {
        let image = shard.partitions.image();
        let Some(partitions) = followed(&image, shard.broker_id()).remove(&leader) else {
            return;
        };
        let Some(address) = image
            .broker(leader)
            .filter(|broker| !broker.fenced)
            .and_then(|broker| shard.node.config.inter_broker.address_of(broker))
        else {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        let round = match prepare(shard, partitions).await {
            Some(round) => round,
            None => {
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        };
        if connection
            .as_ref()
            .is_none_or(|open| open.is_broken() || open.broker() != address)
        {
            connection = match connect(shard, &address).await {
                Ok(open) => Some(open),
                Err(error) => {
                    // A leader that is down is routine; one that refuses this broker's TLS
                    // or SASL login is a configuration to fix (the inter-broker user, its
                    // password, the CA), so it is a warning, once per LOGIN_WARNING_INTERVAL.
                    if error.refused
                        && last_login_warning
                            .is_none_or(|at: Instant| at.elapsed() >= LOGIN_WARNING_INTERVAL)
                    {
                        last_login_warning = Some(Instant::now());
                        tracing::warn!(%leader, %address, %error, "the leader refuses this broker's inter-broker login: check --inter-broker-user, its password and the TLS settings");
                    } else {
                        tracing::debug!(%leader, %address, %error, "cannot reach the leader");
                    }
                    glommio::timer::sleep(BACKOFF).await;
                    continue;
                }
            };
        }
        let open = connection.as_mut().expect("connected above");
        let version = match open.version_for(ApiKey::Fetch, FETCH_VERSIONS) {
            Ok(version) => version,
            Err(error) => {
                tracing::warn!(%leader, %address, %error, "the leader serves no Fetch version a follower speaks");
                connection = None;
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        };
        let request = fetch_request(shard, &round, version);
        tracing::trace!(%leader, version, partitions = ?round.iter().map(|f| (f.followed.partition, f.fetch_offset.0)).collect::<Vec<_>>(), "fetching");
        let response = open
            .call_holding(version..=version, &request, FETCH_WAIT)
            .await;
        let response = match response {
            Ok((_, response)) if response.error_code == 0 => response,
            Ok((_, response)) => {
                tracing::debug!(%leader, code = response.error_code, "fetch refused");
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(%leader, %address, %error, "fetch failed");
                connection = None;
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        };
        // Answers by (topic id, partition); before v13 the answer names its topics, whose ids
        // the round knows.
        let ids_by_name: BTreeMap<&str, uuid::Uuid> = if version < TOPIC_IDS_VERSION {
            round
                .iter()
                .map(|fetching| (fetching.followed.topic.as_str(), fetching.followed.topic_id))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut answers = BTreeMap::new();
        for topic in response.responses {
            let id = if version >= TOPIC_IDS_VERSION {
                Some(topic.topic_id)
            } else {
                ids_by_name.get(&*topic.topic.0).copied()
            };
            let Some(id) = id else { continue };
            for answer in topic.partitions {
                answers.insert((id, answer.partition_index), answer);
            }
        }
        let mut back_off = false;
        let mut appended = Vec::new();
        for fetching in &round {
            let key = (fetching.followed.topic_id, fetching.followed.partition);
            let Some(answer) = answers.remove(&key) else {
                tracing::debug!(partition = %fetching.replica.key(), "the leader's answer leaves this partition out");
                continue;
            };
            // The leadership moved while the fetch was out (a leader frozen and deposed
            // answers late): its answer is no longer ours to take, as Kafka's fetcher drops a
            // response whose leader epoch is not the partition's current one.
            let replica = &fetching.replica;
            if replica.is_leader() || replica.leader_epoch() != fetching.followed.leader_epoch {
                tracing::debug!(
                    partition = %replica.key(),
                    followed = %fetching.followed.leader_epoch,
                    replica = %replica.leader_epoch(),
                    "answer dropped: the leadership moved while the fetch was out"
                );
                continue;
            }
            match apply(fetching, answer).await {
                Applied::Appended(last_offset, high_watermark) => {
                    appended.push((fetching, last_offset, high_watermark))
                }
                Applied::Nothing => {}
                Applied::BackOff => back_off = true,
            }
        }
        // The next fetch reports these positions: only once they are durable.
        tracing::trace!(%leader, appended = appended.len(), "answer applied");
        for (fetching, last_offset, high_watermark) in appended {
            match fetching.replica.log().wait_durable(last_offset).await {
                Ok(()) => fetching.replica.follow_high_watermark(high_watermark),
                Err(error) => {
                    tracing::warn!(partition = %fetching.replica.key(), %error, "cannot make replicated batches durable");
                    back_off = true;
                }
            }
        }
        if back_off {
            glommio::timer::sleep(BACKOFF).await;
        }
    }
}

/// The replicas of a round, opened (their logs recovered) if need be; `None` if none is
/// ready.
async fn prepare(shard: &Rc<Shard>, partitions: Vec<Followed>) -> Option<Vec<Fetching>> {
    let mut round = Vec::with_capacity(partitions.len());
    for followed in partitions {
        tracing::trace!(topic = %followed.topic, partition = followed.partition, "preparing");
        match shard
            .partitions
            .replica_of(&followed.topic, followed.partition)
            .await
        {
            Ok(replica) if !replica.is_leader() && !replica.log().failed() => {
                // A tail appended but not yet durable (a round cut short): wait for it, so
                // that the position reported is durable and the next batches follow it.
                let log_end = replica.log_end_offset();
                if log_end > replica.durable_end_offset() {
                    tracing::debug!(partition = %replica.key(), %log_end, durable_end = %replica.durable_end_offset(), "waiting for the tail to be durable before fetching");
                    let _ = replica.log().wait_durable(Offset(log_end.0 - 1)).await;
                }
                let fetch_offset = replica.durable_end_offset();
                round.push(Fetching {
                    followed,
                    replica,
                    fetch_offset,
                });
            }
            Ok(replica) => {
                tracing::debug!(partition = %replica.key(), leads = replica.is_leader(), failed = replica.log().failed(), "not fetching this replica");
            }
            Err(error) => {
                tracing::debug!(topic = %followed.topic, partition = followed.partition, %error, "cannot open a follower replica");
            }
        }
    }
    (!round.is_empty()).then_some(round)
}

async fn connect(
    shard: &Shard,
    address: &str,
) -> Result<super::PeerConnection, super::ConnectError> {
    let config = &shard.node.config;
    // A response holds at least one whole batch, even past the limits.
    let max_response_bytes = config
        .replica_fetch_response_max_bytes
        .max(config.replica_fetch_max_bytes)
        + (1 << 20);
    super::connect(
        &shard.node.inter_broker,
        address,
        "spate-replica-fetcher",
        max_response_bytes,
    )
    .await
}

/// One fetch of a round at `version`, with `--replica-fetch-max-bytes` per partition and
/// `--replica-fetch-response-max-bytes` in all.
fn fetch_request(shard: &Shard, round: &[Fetching], version: i16) -> FetchRequest {
    let me = shard.broker_id();
    let config = &shard.node.config;
    let partition_max_bytes = i32::try_from(config.replica_fetch_max_bytes).unwrap_or(i32::MAX);
    let response_max_bytes =
        i32::try_from(config.replica_fetch_response_max_bytes).unwrap_or(i32::MAX);
    let mut topics: BTreeMap<(&str, uuid::Uuid), Vec<FetchPartition>> = BTreeMap::new();
    for fetching in round {
        let followed = &fetching.followed;
        topics
            .entry((&followed.topic, followed.topic_id))
            .or_default()
            .push(
                FetchPartition::default()
                    .with_partition(fetching.followed.partition)
                    .with_current_leader_epoch(fetching.followed.leader_epoch.0)
                    .with_fetch_offset(fetching.fetch_offset.0)
                    .with_last_fetched_epoch(fetching.replica.last_epoch())
                    .with_log_start_offset(fetching.replica.log_start_offset().0)
                    .with_partition_max_bytes(partition_max_bytes),
            );
    }
    // From v15 the follower names itself in `replica_state`, and `replica_id` must be -1.
    let (replica_id, replica_state) = if version >= REPLICA_STATE_VERSION {
        (
            WireBrokerId(-1),
            ReplicaState::default()
                .with_replica_id(WireBrokerId(me.0))
                .with_replica_epoch(shard.node.broker_epoch),
        )
    } else {
        (WireBrokerId(me.0), ReplicaState::default())
    };
    FetchRequest::default()
        .with_replica_id(replica_id)
        .with_replica_state(replica_state)
        .with_max_wait_ms(FETCH_WAIT.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(response_max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|((topic, topic_id), partitions)| {
                    let topic = if version >= TOPIC_IDS_VERSION {
                        FetchTopic::default().with_topic_id(topic_id)
                    } else {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    };
                    topic.with_partitions(partitions)
                })
                .collect(),
        )
}

/// What one partition's answer led to.
enum Applied {
    /// Batches appended up to this last offset; the leader's high watermark.
    Appended(Offset, Offset),
    /// Nothing to wait for (no new batches, a truncation, the high watermark taken).
    Nothing,
    /// An error: pause before the next round.
    BackOff,
}

async fn apply(
    fetching: &Fetching,
    answer: kafka_protocol::messages::fetch_response::PartitionData,
) -> Applied {
    let replica = &fetching.replica;
    let high_watermark = Offset(answer.high_watermark);
    tracing::trace!(
        partition = %replica.key(),
        fetch_offset = %fetching.fetch_offset,
        last_epoch = replica.last_epoch(),
        code = answer.error_code,
        high_watermark = answer.high_watermark,
        log_start = answer.log_start_offset,
        diverging_epoch = answer.diverging_epoch.epoch,
        diverging_end = answer.diverging_epoch.end_offset,
        bytes = answer.records.as_ref().map_or(0, |records| records.len()),
        "answer"
    );
    match answer.error_code {
        0 => {}
        OFFSET_OUT_OF_RANGE if fetching.fetch_offset.0 < answer.log_start_offset => {
            // The leader's log starts past ours (retention, DeleteRecords): start there.
            let start = Offset(answer.log_start_offset);
            tracing::info!(partition = %replica.key(), %start, "the leader's log starts past this replica's end: restarting the log there");
            return settled(replica, replica.restart_at(start).await);
        }
        OFFSET_OUT_OF_RANGE
            if answer.high_watermark >= 0 && fetching.fetch_offset > high_watermark =>
        {
            // This log runs past the leader's (a leader that lost an unacknowledged tail
            // this replica has): everything up to the leader's high watermark is on both.
            tracing::info!(partition = %replica.key(), offset = %high_watermark, "this replica's log runs past the leader's: truncating to its high watermark");
            return settled(replica, replica.truncate_to(high_watermark).await);
        }
        code if LEADERSHIP_MOVED.contains(&code) => {
            tracing::debug!(partition = %replica.key(), code, leader_epoch = %fetching.followed.leader_epoch, "the leader answered that the leadership moved: waiting for the image");
            return Applied::BackOff;
        }
        code => {
            tracing::debug!(partition = %replica.key(), code, "the leader refused a partition's fetch");
            return Applied::BackOff;
        }
    }
    if answer.diverging_epoch.epoch >= 0 || answer.diverging_epoch.end_offset >= 0 {
        let target = truncation_offset(
            replica,
            answer.diverging_epoch.epoch,
            answer.diverging_epoch.end_offset,
        );
        tracing::info!(partition = %replica.key(), offset = %target, leader_epoch = answer.diverging_epoch.epoch, "the log diverges from the leader's: truncating");
        return settled(replica, replica.truncate_to(target).await);
    }
    let records: Bytes = answer.records.unwrap_or_default();
    if records.is_empty() {
        replica.follow_high_watermark(high_watermark);
        return Applied::Nothing;
    }
    match replica.append_replicated(&records) {
        Ok(appended) => Applied::Appended(appended.last_offset, high_watermark),
        Err(error) => {
            tracing::warn!(partition = %replica.key(), %error, "cannot append the leader's batches");
            Applied::BackOff
        }
    }
}

/// The outcome of cutting a follower's log (a truncation, a restart at the leader's log
/// start): fetch on at once, or back off after a failure.
fn settled(replica: &Partition, cut: Result<(), crate::partition::PartitionError>) -> Applied {
    match cut {
        Ok(()) => Applied::Nothing,
        Err(error) => {
            tracing::warn!(partition = %replica.key(), %error, "cannot cut the log to the leader's");
            Applied::BackOff
        }
    }
}

/// Where a follower truncates after the leader answered that its log diverges at
/// (`epoch`, `end_offset`): Kafka's rule. An undefined epoch truncates to the high
/// watermark; an epoch this replica does not have truncates to the end of the largest one it
/// has below it (the next fetch checks again from there); otherwise to the smaller of both
/// ends of that epoch.
fn truncation_offset(replica: &Partition, epoch: i32, end_offset: i64) -> Offset {
    if epoch < 0 || end_offset < 0 {
        return replica.high_watermark();
    }
    match replica.end_offset_for_epoch(LeaderEpoch(epoch)) {
        Some((ours, our_end)) if ours.0 == epoch => our_end.min(Offset(end_offset)),
        Some((_, our_end)) => our_end,
        None => replica.high_watermark(),
    }
}
