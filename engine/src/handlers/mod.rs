//! The Kafka API handlers, one module per API, and the one table that lists them.
//!
//! [`APIS`] is the only place that says which APIs and versions Spate serves; the
//! ApiVersions response is built from it and [`dispatch`] checks every request against it.
//! Each handler module declares its `SPEC` (API key and version range) next to its code.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use spate_net::produce_stream::StreamedProduce;
use spate_storage::{ReceivedBatch, RecordsPiece};
use std::rc::Rc;

use crate::quota::{QuotaKey, Timed, Who};
use crate::security::session::Session;
use crate::shard::Shard;
use std::time::{Duration, Instant};

pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod api_versions;
pub mod client_quotas;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod group_common;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leader_hints;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;
pub mod telemetry;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// A response frame, size prefix included: whole, or encoded bytes with the log's records
/// between them (see `spate_net::response`).
pub type Frame = spate_net::Frame<RecordsPiece>;

/// What is left of a request after dispatch: the response frame, once ready (`None` when
/// the request has no response, as for acks=0).
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Frame>, CloseReason>>>>;

/// Why a connection is closed instead of answered. Logged once, as one line.
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    /// The request could not be parsed, or asks for an API or version we do not serve.
    #[error(transparent)]
    Request(#[from] spate_net::RequestError),
    /// The request is well-formed but Kafka's rules say to close (for example an error on
    /// an acks=0 produce, which has no response to carry it).
    #[error("{0}")]
    Protocol(String),
    /// The response could not be encoded (a bug, but not one worth a shard).
    #[error("cannot encode response: {0:#}")]
    Encode(anyhow::Error),
}

/// The versions of one API that Spate serves.
#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions. Below `min` only for Produce, where Kafka
    /// 4 advertises 0 but serves 3+ (KAFKA-18659: librdkafka before 2.11.1 disables
    /// compression when Produce's minimum is above 0).
    pub advertised_min: i16,
    /// Lowest version served.
    pub min: i16,
    /// Highest version served.
    pub max: i16,
}

impl ApiSpec {
    /// An API served over exactly the versions it advertises.
    pub const fn new(key: ApiKey, min: i16, max: i16) -> ApiSpec {
        ApiSpec {
            key,
            advertised_min: min,
            min,
            max,
        }
    }
}

/// Every API Spate serves.
pub const APIS: &[ApiSpec] = &[
    produce::SPEC,
    fetch::SPEC,
    list_offsets::SPEC,
    metadata::SPEC,
    api_versions::SPEC,
    create_topics::SPEC,
    delete_topics::SPEC,
    delete_records::SPEC,
    init_producer_id::SPEC,
    offset_for_leader_epoch::SPEC,
    describe_configs::SPEC,
    create_partitions::SPEC,
    describe_cluster::SPEC,
    find_coordinator::SPEC,
    join_group::SPEC,
    sync_group::SPEC,
    heartbeat::SPEC,
    leave_group::SPEC,
    offset_commit::SPEC,
    offset_fetch::SPEC,
    list_groups::SPEC,
    describe_groups::SPEC,
    delete_groups::SPEC,
    offset_delete::SPEC,
    alter_configs::SPEC,
    alter_configs::INCREMENTAL_SPEC,
    describe_log_dirs::SPEC,
    describe_quorum::SPEC,
    describe_topic_partitions::SPEC,
    elect_leaders::SPEC,
    reassignments::ALTER_SPEC,
    reassignments::LIST_SPEC,
    telemetry::SUBSCRIPTIONS_SPEC,
    telemetry::PUSH_SPEC,
    consumer_group_heartbeat::SPEC,
    consumer_group_describe::SPEC,
    sasl::HANDSHAKE_SPEC,
    sasl::AUTHENTICATE_SPEC,
    scram_credentials::DESCRIBE_SPEC,
    scram_credentials::ALTER_SPEC,
    acls::DESCRIBE_SPEC,
    acls::CREATE_SPEC,
    acls::DELETE_SPEC,
    client_quotas::DESCRIBE_SPEC,
    client_quotas::ALTER_SPEC,
    write_txn_markers::SPEC,
    add_partitions_to_txn::SPEC,
    add_offsets_to_txn::SPEC,
    end_txn::SPEC,
    txn_offset_commit::SPEC,
    describe_transactions::SPEC,
    list_transactions::SPEC,
    describe_producers::SPEC,
];

/// What a handler learns from the request header.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The API.
    pub api_key: ApiKey,
    /// The request's version.
    pub version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The client's self-declared id, for logs and group membership.
    pub client_id: Option<String>,
    /// The client's address as Kafka reports it in groups ("/127.0.0.1").
    pub client_host: String,
    /// The listener the request arrived on, whose endpoints the client is told.
    pub listener: &'static str,
    /// Who asks (`User:alice`; `User:ANONYMOUS` without authentication), for the
    /// authorizer (`crate::security::authorizer`) and client quotas (`crate::quota`).
    pub principal: Rc<str>,
    /// The response's throttle_time_ms, when a byte-rate quota measured before the handler
    /// ran already throttles the client (Produce).
    pub throttle_time_ms: i32,
    /// Under a request-time quota, the throttle that the request's own time on the shard
    /// adds, known once its in-order part has run: a Produce response, built later, reads it
    /// here.
    pub time_throttle_ms: Option<Rc<std::cell::Cell<i32>>>,
}

impl RequestContext {
    /// The throttle_time_ms a response built after the in-order part carries.
    pub fn response_throttle_ms(&self) -> i32 {
        let late = self.time_throttle_ms.as_ref().map_or(0, |cell| cell.get());
        self.throttle_time_ms.max(late)
    }
}

/// What dispatch leaves the connection.
pub struct Dispatched {
    /// The response, once ready.
    pub pending: Pending,
    /// How long the connection must read nothing more: its client is over a quota
    /// (`crate::quota`; KIP-219's muted channel).
    pub throttle: Duration,
}

impl From<Pending> for Dispatched {
    fn from(pending: Pending) -> Dispatched {
        Dispatched {
            pending,
            throttle: Duration::ZERO,
        }
    }
}

/// A throttle time as the wire's `throttle_time_ms`.
fn millis(throttle: Duration) -> i32 {
    throttle.as_millis().min(i32::MAX as u128) as i32
}

/// A request frame as the connection read it.
pub struct RequestFrame {
    /// The frame's payload; for a streamed Produce, without the batches it received.
    pub bytes: Bytes,
    /// The batches of a streamed Produce received into DMA chunks (see
    /// `spate_net::produce_stream` and `produce::IntoLogs`).
    pub received: produce::ReceivedBatches,
    /// The frame's size as the client sent it.
    pub frame_bytes: usize,
}

impl From<Bytes> for RequestFrame {
    fn from(bytes: Bytes) -> RequestFrame {
        RequestFrame {
            frame_bytes: bytes.len(),
            bytes,
            received: Vec::new(),
        }
    }
}

impl From<StreamedProduce<ReceivedBatch>> for RequestFrame {
    fn from(streamed: StreamedProduce<ReceivedBatch>) -> RequestFrame {
        RequestFrame {
            bytes: streamed.skeleton,
            received: streamed.received,
            frame_bytes: streamed.frame_bytes,
        }
    }
}

/// Decodes a request, runs its handler's in-order part, and returns what remains.
pub async fn dispatch(
    shard: &Rc<Shard>,
    frame: RequestFrame,
    client_host: &str,
    session: &mut Session,
) -> Result<Dispatched, CloseReason> {
    let RequestFrame {
        bytes: frame,
        received,
        frame_bytes,
    } = frame;
    let request = spate_net::Request::decode_header(frame)?;
    session
        .admit(request.api_key, std::time::Instant::now())
        .map_err(CloseReason::Protocol)?;
    shard.stats().request(request.api_key as i16, frame_bytes);
    let version = request.version();
    let mut context = RequestContext {
        api_key: request.api_key,
        version,
        correlation_id: request.header.correlation_id,
        client_id: request.header.client_id.as_ref().map(|id| id.to_string()),
        client_host: client_host.to_string(),
        listener: session.listener(),
        principal: session.principal(),
        throttle_time_ms: 0,
        time_throttle_ms: None,
    };
    let spec = APIS
        .iter()
        .find(|spec| spec.key == request.api_key)
        .ok_or_else(|| CloseReason::Protocol(format!("unsupported API {:?}", request.api_key)))?;
    if request.api_key == ApiKey::ApiVersions && version > spec.max {
        return Ok(ready(Some(
            api_versions::unsupported_version_reply(&context).into(),
        ))
        .into());
    }
    if version < spec.min || version > spec.max {
        return Err(CloseReason::Protocol(format!(
            "unsupported version {version} of {:?} (served: {}..={})",
            request.api_key, spec.min, spec.max
        )));
    }
    if request.api_key == ApiKey::ListOffsets && version == 0 {
        // kafka-protocol no longer codes v0: decoded and encoded by hand around the handler.
        let (body, wanted) = spate_net::legacy::decode_list_offsets_v0(request.body.clone())?;
        let response = list_offsets::handle(shard, &context, body).await;
        let response = ResponseKind::ListOffsets(response);
        shard
            .stats()
            .response_errors(context.api_key as i16, |count| {
                crate::request_errors::each_error(&response, count)
            });
        let ResponseKind::ListOffsets(response) = &response else {
            unreachable!()
        };
        let frame =
            spate_net::legacy::encode_list_offsets_v0(context.correlation_id, response, &wanted);
        return Ok(ready(Some(frame.into())).into());
    }
    let body = request.decode_body()?;
    // Client quotas (`crate::quota`): replication, and a client still authenticating, are
    // exempt. Each kind costs one check when no quota of it is set.
    let image = shard.image();
    let exempt = !session.is_open()
        || matches!(&body, RequestKind::Fetch(fetch) if fetch::is_follower(&context, fetch));
    let timed = !exempt && image.quotas().any(QuotaKey::RequestPercentage);
    let record_time = |principal: &str, client_id: Option<&str>, busy: Duration| {
        let who = Who::new(principal, client_id);
        let percent = busy.as_secs_f64() * 100.0;
        let key = QuotaKey::RequestPercentage;
        shard
            .quotas
            .record(image.quotas(), key, who, percent, Instant::now())
    };
    if let RequestKind::Produce(body) = body {
        let mut throttle = Duration::ZERO;
        if !exempt && image.quotas().any(QuotaKey::ProducerByteRate) {
            // As Kafka: a produce counts its request's size, before it is appended.
            let who = Who::new(&context.principal, context.client_id.as_deref());
            let key = QuotaKey::ProducerByteRate;
            throttle =
                shard
                    .quotas
                    .record(image.quotas(), key, who, frame_bytes as f64, Instant::now());
            context.throttle_time_ms = millis(throttle);
        }
        if !timed {
            return Ok(Dispatched {
                pending: produce::handle(shard, context, body, received).await?,
                throttle,
            });
        }
        let (principal, client_id) = (context.principal.clone(), context.client_id.clone());
        let late = Rc::new(std::cell::Cell::new(0));
        context.time_throttle_ms = Some(late.clone());
        let (pending, busy) = Timed::new(produce::handle(shard, context, body, received)).await;
        let throttle = throttle.max(record_time(&principal, client_id.as_deref(), busy));
        late.set(millis(throttle));
        return Ok(Dispatched {
            pending: pending?,
            throttle,
        });
    }
    let (handled, busy) = if timed {
        Timed::new(respond(shard, &context, body, session)).await
    } else {
        (
            respond(shard, &context, body, session).await,
            Duration::ZERO,
        )
    };
    let mut throttle = if timed {
        record_time(&context.principal, context.client_id.as_deref(), busy)
    } else {
        Duration::ZERO
    };
    let mut response = match handled? {
        Handled::Response(response) => response,
        Handled::Fetch(mut fetched) => {
            if throttle > fetched.throttle {
                // As Kafka: a fetch throttled by its request time is answered empty too, and
                // its bytes do not count against the consumer.
                if fetched.charged > 0.0 {
                    let who = Who::new(&context.principal, context.client_id.as_deref());
                    let key = QuotaKey::ConsumerByteRate;
                    shard
                        .quotas
                        .unrecord(image.quotas(), key, who, fetched.charged);
                }
                fetched.frame = fetch::throttled(&context, throttle);
            }
            return Ok(Dispatched {
                pending: ready(Some(fetched.frame)),
                throttle: throttle.max(fetched.throttle),
            });
        }
    };
    if !throttle.is_zero() && !set_throttle(&mut response, millis(throttle)) {
        // A response with no field to say so (the SASL ones, DescribeQuorum) is not held
        // back either: Kafka throttles none of them.
        throttle = Duration::ZERO;
    }
    shard
        .stats()
        .response_errors(context.api_key as i16, |count| {
            crate::request_errors::each_error(&response, count)
        });
    Ok(Dispatched {
        pending: ready(Some(encode(&context, &response)?.into())),
        throttle,
    })
}

/// What a handler produced.
// Moved once, from the handler to `dispatch`: boxing the response would cost every request
// an allocation to save a copy.
#[allow(clippy::large_enum_variant)]
enum Handled {
    /// A response to encode.
    Response(ResponseKind),
    /// A Fetch response, already encoded (its records are pieces of the frame).
    Fetch(fetch::Fetched),
}

/// Runs the handler of a decoded request (all but Produce, which `dispatch` runs itself).
async fn respond(
    shard: &Rc<Shard>,
    context: &RequestContext,
    body: RequestKind,
    session: &mut Session,
) -> Result<Handled, CloseReason> {
    let response = match body {
        RequestKind::Produce(_) => unreachable!("dispatch runs Produce itself"),
        RequestKind::Fetch(body) => {
            return Ok(Handled::Fetch(fetch::handle(shard, context, body).await));
        }
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, context, body).await)
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(shard, context, body).await)
        }
        RequestKind::ApiVersions(body) => {
            ResponseKind::ApiVersions(api_versions::handle(shard, context, body))
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(create_topics::handle(shard, context, body).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(shard, context, body).await)
        }
        RequestKind::WriteTxnMarkers(body) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(shard, context, body).await)
        }
        RequestKind::AddPartitionsToTxn(body) => ResponseKind::AddPartitionsToTxn(
            add_partitions_to_txn::handle(shard, context, body).await,
        ),
        RequestKind::AddOffsetsToTxn(body) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(shard, context, body).await)
        }
        RequestKind::EndTxn(body) => {
            ResponseKind::EndTxn(end_txn::handle(shard, context, body).await)
        }
        RequestKind::DescribeTransactions(body) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(shard, context, body))
        }
        RequestKind::ListTransactions(body) => {
            ResponseKind::ListTransactions(list_transactions::handle(shard, context, body))
        }
        RequestKind::DescribeProducers(body) => {
            ResponseKind::DescribeProducers(describe_producers::handle(shard, context, body).await)
        }
        RequestKind::TxnOffsetCommit(body) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(shard, context, body).await)
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(shard, context, body).await)
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(shard, context, body).await)
        }
        RequestKind::OffsetForLeaderEpoch(body) => ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(shard, context, body).await,
        ),
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(shard, context, body))
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(shard, context, body).await)
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(shard, context, body))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(shard, context, body))
        }
        RequestKind::JoinGroup(body) => {
            ResponseKind::JoinGroup(join_group::handle(shard, context, body).await)
        }
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(sync_group::handle(shard, context, body).await)
        }
        RequestKind::Heartbeat(body) => {
            ResponseKind::Heartbeat(heartbeat::handle(shard, context, body))
        }
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(leave_group::handle(shard, context, body))
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(offset_commit::handle(shard, context, body).await)
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(shard, context, body))
        }
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(list_groups::handle(shard, context, body))
        }
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(describe_groups::handle(shard, context, body))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(delete_groups::handle(shard, context, body).await)
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(offset_delete::handle(shard, context, body).await)
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(shard, context, body).await)
        }
        RequestKind::IncrementalAlterConfigs(body) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(shard, context, body).await,
        ),
        RequestKind::DescribeTopicPartitions(body) => ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(shard, context, body),
        ),
        RequestKind::DescribeQuorum(body) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(shard, context, body))
        }
        RequestKind::ElectLeaders(body) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(shard, context, body).await)
        }
        RequestKind::AlterPartitionReassignments(body) => {
            ResponseKind::AlterPartitionReassignments(
                reassignments::alter(shard, context, body).await,
            )
        }
        RequestKind::ListPartitionReassignments(body) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(shard, context, body))
        }
        RequestKind::DescribeLogDirs(body) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(shard, context, body).await)
        }
        RequestKind::GetTelemetrySubscriptions(body) => {
            ResponseKind::GetTelemetrySubscriptions(telemetry::subscriptions(context, body))
        }
        RequestKind::PushTelemetry(body) => {
            ResponseKind::PushTelemetry(telemetry::push(context, body))
        }
        RequestKind::ConsumerGroupHeartbeat(body) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(shard, context, body).await,
        ),
        RequestKind::ConsumerGroupDescribe(body) => ResponseKind::ConsumerGroupDescribe(
            consumer_group_describe::handle(shard, context, body),
        ),
        RequestKind::SaslHandshake(body) => {
            ResponseKind::SaslHandshake(sasl::handshake(shard, session, body))
        }
        RequestKind::SaslAuthenticate(body) => {
            ResponseKind::SaslAuthenticate(sasl::authenticate(shard, context, session, body))
        }
        RequestKind::DescribeUserScramCredentials(body) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(
                shard, context, body,
            ))
        }
        RequestKind::AlterUserScramCredentials(body) => ResponseKind::AlterUserScramCredentials(
            scram_credentials::alter(shard, context, body).await,
        ),
        RequestKind::DescribeAcls(body) => {
            ResponseKind::DescribeAcls(acls::describe(shard, context, body))
        }
        RequestKind::CreateAcls(body) => {
            ResponseKind::CreateAcls(acls::create(shard, context, body).await)
        }
        RequestKind::DeleteAcls(body) => {
            ResponseKind::DeleteAcls(acls::delete(shard, context, body).await)
        }
        RequestKind::DescribeClientQuotas(body) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(shard, context, body))
        }
        RequestKind::AlterClientQuotas(body) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(shard, context, body).await)
        }
        other => {
            return Err(CloseReason::Protocol(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            )))
        }
    };
    Ok(Handled::Response(response))
}

/// Sets a response's throttle_time_ms; false for the responses that have none.
fn set_throttle(response: &mut ResponseKind, throttle_time_ms: i32) -> bool {
    macro_rules! throttled {
        ($($kind:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$kind(response) => {
                    response.throttle_time_ms = throttle_time_ms;
                    true
                })*
                _ => false,
            }
        };
    }
    throttled!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        DescribeConfigs,
        CreatePartitions,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        AlterConfigs,
        IncrementalAlterConfigs,
        DescribeTopicPartitions,
        ElectLeaders,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        DescribeLogDirs,
        GetTelemetrySubscriptions,
        PushTelemetry,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeClientQuotas,
        AlterClientQuotas,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeTransactions,
        ListTransactions,
        DescribeProducers,
    )
}

/// Encodes a response frame for a request.
pub fn encode(
    context: &RequestContext,
    response: &ResponseKind,
) -> Result<bytes::BytesMut, CloseReason> {
    spate_net::encode_response(
        context.api_key,
        context.version,
        context.correlation_id,
        response,
    )
    .map_err(CloseReason::Encode)
}

/// A pending response that is already complete.
pub fn ready(frame: Option<Frame>) -> Pending {
    Box::pin(std::future::ready(Ok(frame)))
}
