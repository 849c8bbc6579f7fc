//! The controller quorum's network: openraft's RPCs between members over TCP, on each voter's
//! controller port, with a fault-injection table for partition tests.
//!
//! Wire format (ours; the quorum is openraft's, not KRaft's, so Kafka's Vote and Fetch APIs do
//! not apply): every message is a frame `[u32 BE length][u8 kind][JSON body]`, at most
//! [`FRAME_MAX_BYTES`]. A connection starts with the client's [`Hello`] (protocol version and
//! its node id), answered by the server's hello; then the client sends one request at a time
//! (openraft awaits each RPC to a peer before the next) and the server answers each with the
//! kind's response, the JSON of `Result<response, String>`. Anything else closes the
//! connection with one log line.
//!
//! Besides Raft's RPCs, a member that does not lead forwards the controller calls of its node
//! to the leader on the same port ([`Forwarder`], answered by the leader's
//! [`ControllerPort`]), as Kafka brokers forward admin requests to the active controller
//! (KIP-590). The bytes are opaque here: `metadata::controller_task` encodes them.
//!
//! Under `--controller-security-protocol SSL` every connection is mutual TLS and the peer's
//! certificate must name a principal the node admits (`transport`, [`ControllerPort::admits`]);
//! the frames above run inside it unchanged.
//!
//! [`Faults`] is the seam for the in-process partition tests of the quorum: a per-peer block
//! (the client fails the RPC as unreachable, and the server drops connections from a blocked
//! peer) and a per-peer delay before each request. A partition of node X is every other node
//! blocking X and X blocking every other node. It cuts only this port; partitions between
//! real processes (data path too) are made by the kernel, in `ci/compat/netfaults.py`.
//! The same table records when each peer last refused a connection
//! ([`Faults::refused_at`]): nothing listens on its controller port, so its process is gone
//! (or not yet started), which the controller takes as a reason to fence it at once rather
//! than after a whole session timeout (see `metadata/controller_task.rs`).
//!
//! Concurrency contract: everything here lives on the quorum's executor (`!Send`); one task
//! per server connection; a client connection is used by one openraft replication task.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::rt::WatchReceiver;
use openraft::{BasicNode, OptionalSend};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::transport::{ControllerTls, PeerStream};
use super::{QuorumRaft, QuorumTypes as C};
use crate::security::client::ClientStream;

/// Largest frame either side accepts (a snapshot of the metadata image is the largest).
pub const FRAME_MAX_BYTES: usize = 64 << 20;
/// Bumped when the messages change incompatibly.
const PROTOCOL_VERSION: u32 = 1;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may sit without a whole request before the server closes it.
/// Raft peers send heartbeats many times a second; a forwarder that was idle this long
/// reconnects on its next call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

const KIND_HELLO: u8 = 0;
const KIND_APPEND_ENTRIES: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_PRE_VOTE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
/// A controller call forwarded from a member that does not lead (opaque bytes here; see
/// [`ForwardedCalls`]).
const KIND_FORWARD: u8 = 5;
/// Set in a response's kind.
const RESPONSE: u8 = 0x80;

/// The first message each side sends.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    version: u32,
    node_id: u64,
}

/// A whole snapshot, sent in one frame.
#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: VoteOf<C>,
    meta: SnapshotMetaOf<C>,
    data: Vec<u8>,
}

#[derive(Default)]
struct FaultTable {
    blocked: BTreeSet<u64>,
    delays: BTreeMap<u64, Duration>,
}

/// The fault-injection table of one node, and when each peer last refused a connection;
/// see the module docs. Cheap to clone.
#[derive(Clone, Default)]
pub struct Faults {
    table: Rc<RefCell<FaultTable>>,
    refusals: Rc<RefCell<BTreeMap<u64, Instant>>>,
}

impl Faults {
    /// When `peer` last refused a connection from this node (`ECONNREFUSED`: no process
    /// listens on its controller port). A timeout or a reset is not a refusal: a peer that is
    /// cut off or slow is left to the session timeout.
    pub fn refused_at(&self, peer: u64) -> Option<Instant> {
        self.refusals.borrow().get(&peer).copied()
    }

    fn note_refused(&self, peer: u64) {
        self.refusals.borrow_mut().insert(peer, Instant::now());
    }

    /// Cuts this node off from `peer`, both ways.
    pub fn block(&self, peer: u64) {
        self.table.borrow_mut().blocked.insert(peer);
    }

    /// Heals the cut to `peer`.
    pub fn unblock(&self, peer: u64) {
        self.table.borrow_mut().blocked.remove(&peer);
    }

    /// Delays each request to `peer` by `delay` (zero removes the delay).
    pub fn set_delay(&self, peer: u64, delay: Duration) {
        let mut table = self.table.borrow_mut();
        if delay.is_zero() {
            table.delays.remove(&peer);
        } else {
            table.delays.insert(peer, delay);
        }
    }

    /// Removes every block and delay.
    pub fn heal_all(&self) {
        *self.table.borrow_mut() = FaultTable::default();
    }

    /// Whether `peer` is cut off.
    pub fn is_blocked(&self, peer: u64) -> bool {
        self.table.borrow().blocked.contains(&peer)
    }

    fn delay(&self, peer: u64) -> Option<Duration> {
        self.table.borrow().delays.get(&peer).copied()
    }
}

/// Writes one frame.
async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    kind: u8,
    body: &[u8],
) -> io::Result<()> {
    let length = body.len() + 1;
    if length > FRAME_MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {length}-byte quorum message is above the {FRAME_MAX_BYTES}-byte limit"),
        ));
    }
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads one frame: its kind and body. A length above the limit is an error before anything
/// is allocated for it.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<(u8, Vec<u8>)> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length == 0 || length > FRAME_MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a quorum frame of {length} bytes"),
        ));
    }
    let mut frame = vec![0u8; length];
    stream.read_exact(&mut frame).await?;
    let body = frame.split_off(1);
    Ok((frame[0], body))
}

fn to_json(value: &impl Serialize) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Runs `work`, or fails with `TimedOut` after `limit`.
async fn within<T>(limit: Duration, work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(work, async {
        glommio::timer::sleep(limit).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

/// Makes the clients of one node; see the module docs.
pub struct TcpNetworkFactory {
    node_id: u64,
    faults: Faults,
    tls: Option<ControllerTls>,
}

impl TcpNetworkFactory {
    /// The network of node `node_id`, over TLS if `tls` is given.
    pub fn new(node_id: u64, faults: Faults, tls: Option<ControllerTls>) -> TcpNetworkFactory {
        TcpNetworkFactory {
            node_id,
            faults,
            tls,
        }
    }
}

impl RaftNetworkFactory<C> for TcpNetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            source: self.node_id,
            target,
            address: node.addr.clone(),
            faults: self.faults.clone(),
            tls: self.tls.clone(),
            stream: None,
        }
    }
}

/// The connection from this node to one peer, opened on first use and after a failure.
pub struct PeerClient {
    source: u64,
    target: u64,
    address: String,
    faults: Faults,
    tls: Option<ControllerTls>,
    stream: Option<PeerStream>,
}

/// Why an RPC failed, before it is put in openraft's error types.
enum CallError {
    /// The peer could not be reached, or the connection broke.
    Unreachable(io::Error),
    /// No answer in time.
    Timeout,
    /// The peer answered with an error of its Raft member.
    Remote(String),
}

impl PeerClient {
    async fn call<Request: Serialize, Response: DeserializeOwned>(
        &mut self,
        kind: u8,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, CallError> {
        if self.faults.is_blocked(self.target) {
            return Err(CallError::Unreachable(io::Error::other(format!(
                "node {} is cut off from node {} (fault injection)",
                self.source, self.target
            ))));
        }
        if let Some(delay) = self.faults.delay(self.target) {
            glommio::timer::sleep(delay).await;
        }
        let body = to_json(request).map_err(CallError::Unreachable)?;
        let answer = self.call_raw(kind, body, limit).await?;
        let answer: Result<Response, String> =
            from_json(&answer).map_err(CallError::Unreachable)?;
        answer.map_err(CallError::Remote)
    }

    /// Sends one request's bytes and returns the answer's bytes.
    async fn call_raw(
        &mut self,
        kind: u8,
        body: Vec<u8>,
        limit: Duration,
    ) -> Result<Vec<u8>, CallError> {
        if self.faults.is_blocked(self.target) {
            return Err(CallError::Unreachable(io::Error::other(format!(
                "node {} is cut off from node {} (fault injection)",
                self.source, self.target
            ))));
        }
        let answer = within(limit, self.exchange(kind, &body)).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                // The connection is in an unknown state (a half-read answer): start afresh.
                self.stream = None;
                return Err(if error.kind() == io::ErrorKind::TimedOut {
                    CallError::Timeout
                } else {
                    CallError::Unreachable(error)
                });
            }
        };
        // An answer that arrives after a cut began is lost with it.
        if self.faults.is_blocked(self.target) {
            return Err(CallError::Unreachable(io::Error::other("cut off")));
        }
        Ok(answer)
    }

    async fn exchange(&mut self, kind: u8, body: &[u8]) -> io::Result<Vec<u8>> {
        if self.stream.is_none() {
            self.stream = Some(self.connect().await?);
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        write_frame(stream, kind, body).await?;
        let (answered, answer) = read_frame(stream).await?;
        if answered != kind | RESPONSE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("answered kind {answered} to kind {kind}"),
            ));
        }
        Ok(answer)
    }

    async fn connect(&self) -> io::Result<PeerStream> {
        let socket = TcpStream::connect(self.address.as_str())
            .await
            .map_err(io::Error::from)
            .inspect_err(|error| {
                if error.kind() == io::ErrorKind::ConnectionRefused {
                    self.faults.note_refused(self.target);
                }
            })?;
        socket.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => ClientStream::Plain(socket),
            Some(tls) => tls.connect(socket, &self.address).await?,
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            node_id: self.source,
        };
        write_frame(&mut stream, KIND_HELLO, &to_json(&hello)?).await?;
        let (kind, body) = read_frame(&mut stream).await?;
        let answer: Hello = from_json(&body)?;
        if kind != KIND_HELLO || answer.version != PROTOCOL_VERSION || answer.node_id != self.target
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} answered as node {} with protocol {} (expected node {}, protocol {PROTOCOL_VERSION})",
                    self.address, answer.node_id, answer.version, self.target
                ),
            ));
        }
        Ok(stream)
    }
}

fn rpc_error(error: CallError, limit: Duration) -> RPCError<C> {
    match error {
        CallError::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
        // openraft backs off from an unreachable peer; a peer that does not answer in time
        // is one.
        CallError::Timeout => RPCError::Unreachable(Unreachable::new(&io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ))),
        // The peer's member is stopping or failed: back off as from an unreachable peer.
        CallError::Remote(message) => {
            RPCError::Network(NetworkError::new(&io::Error::other(message)))
        }
    }
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let limit = option.hard_ttl();
        self.call(KIND_APPEND_ENTRIES, &request, limit)
            .await
            .map_err(|error| rpc_error(error, limit))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let limit = option.hard_ttl();
        self.call(KIND_VOTE, &request, limit)
            .await
            .map_err(|error| rpc_error(error, limit))
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let limit = option.hard_ttl();
        self.call(KIND_PRE_VOTE, &request, limit)
            .await
            .map_err(|error| rpc_error(error, limit))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let limit = option.hard_ttl();
        self.call(KIND_SNAPSHOT, &request, limit)
            .await
            .map_err(|error| match rpc_error(error, limit) {
                RPCError::Unreachable(unreachable) => StreamingError::Unreachable(unreachable),
                RPCError::Network(network) => StreamingError::Network(network),
                other => {
                    StreamingError::Network(NetworkError::new(&io::Error::other(other.to_string())))
                }
            })
    }
}

/// What the node behind the controller port provides: answers to the controller calls
/// forwarded to it, and who may connect (see the module docs).
pub trait ControllerPort {
    /// The answer to one forwarded call.
    fn call(&self, request: Vec<u8>) -> futures::future::LocalBoxFuture<'static, Vec<u8>>;

    /// Whether a member whose certificate names `principal`, connecting from `host`, may use
    /// the port (asked only under TLS).
    fn admits(&self, principal: &str, host: &str) -> bool;
}

/// Forwards this node's controller calls to the quorum's leader over one cached connection.
pub struct Forwarder {
    node_id: u64,
    faults: Faults,
    tls: Option<ControllerTls>,
    connection: RefCell<Option<PeerClient>>,
}

impl Forwarder {
    /// The forwarder of node `node_id`, over TLS if `tls` is given.
    pub fn new(node_id: u64, faults: Faults, tls: Option<ControllerTls>) -> Forwarder {
        Forwarder {
            node_id,
            faults,
            tls,
            connection: RefCell::new(None),
        }
    }

    /// Sends `request` to `leader` at `address` and waits up to `limit` for its answer.
    pub async fn forward(
        &self,
        leader: u64,
        address: &str,
        request: Vec<u8>,
        limit: Duration,
    ) -> io::Result<Vec<u8>> {
        let reusable = self
            .connection
            .borrow()
            .as_ref()
            .is_some_and(|client| client.target == leader && client.address == address);
        let mut client = match self.connection.borrow_mut().take() {
            Some(client) if reusable => client,
            _ => PeerClient {
                source: self.node_id,
                target: leader,
                address: address.to_string(),
                faults: self.faults.clone(),
                tls: self.tls.clone(),
                stream: None,
            },
        };
        let answer = client.call_raw(KIND_FORWARD, request, limit).await;
        *self.connection.borrow_mut() = Some(client);
        answer.map_err(|error| match error {
            CallError::Unreachable(error) => error,
            CallError::Timeout => io::Error::new(io::ErrorKind::TimedOut, "no answer in time"),
            CallError::Remote(message) => io::Error::other(message),
        })
    }
}

/// Serves the members that connect to this node's controller port, until the executor ends;
/// over TLS if `tls` is given.
pub async fn serve(
    listener: TcpListener,
    raft: QuorumRaft,
    faults: Faults,
    port: Rc<dyn ControllerPort>,
    tls: Option<ControllerTls>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let raft = raft.clone();
                let faults = faults.clone();
                let port = port.clone();
                let tls = tls.clone();
                glommio::spawn_local(async move {
                    let peer = stream.peer_addr().ok();
                    if let Err(error) = serve_connection(stream, raft, faults, port, tls).await {
                        if error.kind() != io::ErrorKind::UnexpectedEof {
                            tracing::warn!(?peer, %error, "closing a controller quorum connection");
                        }
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(%error, "controller port accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: the TLS handshake and admission if the port is secured, then its frames.
async fn serve_connection(
    stream: TcpStream,
    raft: QuorumRaft,
    faults: Faults,
    port: Rc<dyn ControllerPort>,
    tls: Option<ControllerTls>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        return serve_frames(stream, raft, faults, port).await;
    };
    let host = stream.peer_addr().map_or_else(
        |_| "unknown".to_string(),
        |address| address.ip().to_string(),
    );
    // Refusals are logged at most once a second (`log_refusal`): whoever can reach the port
    // must not be able to flood the log.
    let (stream, principal) = match within(HELLO_TIMEOUT, tls.accept(stream)).await {
        Ok(accepted) => accepted,
        // A port probe (connect, close) says nothing.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(error) => {
            crate::security::log_refusal(
                "controller port TLS handshake failed",
                &host,
                &error.to_string(),
            );
            return Ok(());
        }
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(reason) => {
            crate::security::log_refusal("controller port refused a member", &host, &reason);
            return Ok(());
        }
    };
    if !port.admits(&principal, &host) {
        crate::security::log_refusal_with("controller port refused a member", &host, || {
            format!("{principal} is neither a super user nor allowed ClusterAction on the cluster")
        });
        return Ok(());
    }
    serve_frames(stream, raft, faults, port).await
}

/// Answers the hello, then each request, until the peer closes or breaks the protocol.
async fn serve_frames<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    raft: QuorumRaft,
    faults: Faults,
    port: Rc<dyn ControllerPort>,
) -> io::Result<()> {
    let (kind, body) = within(HELLO_TIMEOUT, read_frame(&mut stream)).await?;
    let hello: Hello = from_json(&body)?;
    if kind != KIND_HELLO || hello.version != PROTOCOL_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected a hello of protocol {PROTOCOL_VERSION}, got kind {kind} version {}",
                hello.version
            ),
        ));
    }
    let peer = hello.node_id;
    let answer = Hello {
        version: PROTOCOL_VERSION,
        node_id: raft.metrics().borrow_watched().id,
    };
    write_frame(&mut stream, KIND_HELLO, &to_json(&answer)?).await?;
    loop {
        let (kind, body) = within(IDLE_TIMEOUT, read_frame(&mut stream)).await?;
        if faults.is_blocked(peer) {
            return Ok(()); // dropped, as a cut link would
        }
        let answer = match kind {
            KIND_APPEND_ENTRIES => answer_of(raft.append_entries(from_json(&body)?).await)?,
            KIND_VOTE => answer_of(raft.vote(from_json(&body)?).await)?,
            KIND_PRE_VOTE => answer_of(raft.pre_vote(from_json(&body)?).await)?,
            KIND_SNAPSHOT => {
                let request: SnapshotRequest = from_json(&body)?;
                let snapshot = openraft::storage::Snapshot {
                    meta: request.meta,
                    snapshot: request.data,
                };
                answer_of(raft.install_full_snapshot(request.vote, snapshot).await)?
            }
            KIND_FORWARD => port.call(body).await,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown quorum message kind {other}"),
                ))
            }
        };
        if faults.is_blocked(peer) {
            return Ok(());
        }
        write_frame(&mut stream, kind | RESPONSE, &answer).await?;
    }
}

fn answer_of<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> io::Result<Vec<u8>> {
    let answer: Result<T, String> = result.map_err(|error| error.to_string());
    to_json(&answer)
}
