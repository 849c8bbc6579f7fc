//! One client connection: read requests, dispatch them in order, write responses in order.
//!
//! Kafka clients pipeline requests (up to `max.in.flight` produce requests per connection)
//! and expect responses in request order. The reader task dispatches each request before
//! reading the next, so side effects (offset assignment, topic creation) happen in request
//! order; what a request still has to wait for (the group commit that makes a produce
//! durable) is a [`Pending`] future that the writer task awaits, in order, while the reader
//! moves on. That lets one connection's pipelined produces share a group commit, where
//! Kafka mutes the connection until each response is sent.
//!
//! The same code serves a plain socket and TLS over it (`security::tls`); over TLS, file
//! ranges are read and written instead of spliced. The connection's `security::session`
//! decides what may be served before a SASL client has authenticated.

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use futures_lite::io::WriteHalf;
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use spate_net::{FramePiece, FrameReader, NextFrame, Reservation};

use crate::handlers::{self, Frame, Pending};
use crate::latency::Stage;
use crate::security::session::{Session, UNAUTHENTICATED_FRAME_BYTES_MAX};
use crate::security::SecurityProtocol;
use crate::shard::Shard;
use crate::splice::Splicer;
use glommio::io::BufferedFile;
use spate_storage::{FileRange, RecordsPiece};

/// Requests dispatched but not yet answered, per connection. Bounds the memory a client
/// can pin by pipelining.
const PIPELINE_DEPTH: usize = 32;

/// Idle splicers kept per shard for the next file range. Each holds a small io_uring, a
/// pipe and an eventfd (four descriptors); sends that run at the same time take more, which
/// are closed when they finish.
const IDLE_SPLICERS_MAX: usize = 4;

thread_local! {
    /// This shard's idle splicers.
    static SPLICERS: std::cell::RefCell<Vec<Splicer>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether this shard already said that it could not set up a splicer.
    static SPLICE_FALLBACK_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Serves a connection that arrived on a listener of `protocol` until the client closes it or
/// breaks the protocol.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, protocol: SecurityProtocol) {
    let peer_address = stream.peer_addr().ok();
    let peer =
        peer_address.map_or_else(|| "unknown peer".to_string(), |address| address.to_string());
    let client_host = peer_address.map_or_else(String::new, |address| format!("/{}", address.ip()));
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let fd = stream.as_raw_fd();
    if !protocol.is_tls() {
        let socket = Socket { fd, splice: true };
        let session = Session::new(protocol);
        return serve_stream(shard, stream, socket, session, peer, client_host).await;
    }
    let Some(acceptor) = shard.node.tls.clone() else {
        tracing::error!(%peer, "a TLS listener without TLS settings; closing");
        return;
    };
    // A peer that opens a connection and never finishes the handshake is cut off like a
    // request that never arrives whole.
    let timeout = shard.node.config.request_receive_timeout;
    let handshake =
        futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        });
    match handshake.await {
        Some(Ok(tls)) => {
            // Encrypted in user space: sealed segments are read and written, not spliced.
            let socket = Socket { fd, splice: false };
            // A client certificate (verified against --ssl-ca) names the principal, as the
            // mapping rules make it; one that no rule applies to is refused, as Kafka does.
            let certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first());
            let principal = match (certificate, shard.node.config.tls.as_ref()) {
                (Some(certificate), Some(settings)) => {
                    match settings.principal_of(certificate.as_ref()) {
                        Ok(principal) => Some(principal),
                        Err(reason) if settings.principal_mapping.is_default() => {
                            crate::security::log_refusal(
                                "client certificate subject unreadable",
                                &client_host,
                                &format!("{reason}: the connection stays User:ANONYMOUS"),
                            );
                            None
                        }
                        Err(reason) => {
                            crate::security::log_refusal(
                                "client certificate refused",
                                &client_host,
                                &reason,
                            );
                            return;
                        }
                    }
                }
                _ => None,
            };
            let mut session = Session::new(protocol);
            if let Some(principal) = principal {
                session.set_certificate_principal(principal);
            }
            let tls = crate::security::tls::CloseNotifyOptional(tls);
            serve_stream(shard, tls, socket, session, peer, client_host).await;
        }
        Some(Err(error)) => {
            crate::security::log_refusal("TLS handshake failed", &client_host, &error.to_string())
        }
        None => crate::security::log_refusal(
            "TLS handshake failed",
            &client_host,
            &format!("not finished within {timeout:?}"),
        ),
    }
}

/// The connection's socket under whatever stream it is read through: its descriptor (to
/// shut it down, and to splice file ranges into when `splice`), and whether bytes may go to
/// it directly (not when TLS encrypts them in user space).
#[derive(Clone, Copy)]
struct Socket {
    fd: RawFd,
    splice: bool,
}

/// Serves the connection's requests over `stream` (the socket, or TLS over it).
async fn serve_stream<S>(
    shard: Rc<Shard>,
    stream: S,
    socket: Socket,
    mut session: Session,
    peer: String,
    client_host: String,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    // Reading and writing proceed independently on two halves of the one stream (glommio
    // keeps separate read and write readiness per stream; each half locks the stream only
    // while it polls). One descriptor per connection; dropping both halves closes it.
    let (mut stream, writer_stream) = futures_lite::io::split(stream);
    let (sender, receiver) = local_channel::new_bounded::<InFlight>(PIPELINE_DEPTH);
    let writer = glommio::spawn_local(write_responses(
        writer_stream,
        socket,
        receiver,
        peer.clone(),
        shard.clone(),
    ));

    // Large Produce requests are streamed, so that their batches are received straight into
    // the DMA chunks they are written from (`spate_net::produce_stream`, `produce::IntoLogs`).
    // Until a SASL client has authenticated, frames are small and nothing is streamed into
    // a log (`security::session`).
    let sleep: spate_net::Sleep = Rc::new(|duration| Box::pin(glommio::timer::sleep(duration)));
    let mut frames = FrameReader::new(shard.node.config.socket_request_max_bytes)
        .with_budget(shard.request_memory.clone())
        .with_receive_timeout(shard.node.config.request_receive_timeout, sleep);
    let mut opened = false;
    loop {
        if !opened {
            opened = open_frames(&mut frames, &session, &shard);
        }
        let frame = match frames.next(&mut stream).await {
            Ok(Some(NextFrame::Whole(frame))) => frame.into(),
            Ok(Some(NextFrame::Streamed(size))) => {
                let sink = handlers::produce::IntoLogs(&shard);
                match spate_net::produce_stream::read(&sink, &mut frames, &mut stream, size).await {
                    Ok(streamed) => streamed.into(),
                    Err(error) => {
                        tracing::info!(%peer, %error, "closing connection");
                        break;
                    }
                }
            }
            Ok(None) => break,
            Err(error) => {
                tracing::info!(%peer, %error, "closing connection");
                break;
            }
        };
        // A large request's share of the shard's request memory is held until it is answered.
        let reservation = frames.take_reservation();
        let timing = RequestTiming::of(&frame);
        match handlers::dispatch(&shard, frame, &client_host, &mut session).await {
            Ok(dispatched) => {
                timing.record(&shard, Stage::Local);
                if sender
                    .send((dispatched.pending, reservation, timing))
                    .await
                    .is_err()
                {
                    break; // the writer stopped: the socket is gone
                }
                if !dispatched.throttle.is_zero() {
                    // A client over its quota (`crate::quota`): its response goes out now,
                    // with throttle_time_ms, and nothing more is read from it until the
                    // throttle has passed (KIP-219), whether or not the client honours it.
                    shard.stats().throttled(dispatched.throttle);
                    glommio::timer::sleep(dispatched.throttle).await;
                }
            }
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    drop(sender);
    writer.await;
}

/// Sets the frame reader for the session: the broker's limits and produce streaming once
/// requests are served, [`UNAUTHENTICATED_FRAME_BYTES_MAX`] and no streaming before. Returns
/// whether the session is open.
fn open_frames(frames: &mut FrameReader, session: &Session, shard: &Shard) -> bool {
    if session.is_open() {
        frames.set_max_frame_bytes(shard.node.config.socket_request_max_bytes);
        frames.set_streamed_api_keys(&[kafka_protocol::messages::ApiKey::Produce as i16]);
        true
    } else {
        frames.set_max_frame_bytes(
            UNAUTHENTICATED_FRAME_BYTES_MAX.min(shard.node.config.socket_request_max_bytes),
        );
        frames.set_streamed_api_keys(&[]);
        false
    }
}

/// A dispatched request on its way to the writer: its response, its share of the request
/// memory, and when it was read.
type InFlight = (Pending, Option<Reservation>, RequestTiming);

/// When a request was read whole, and its API, for `spate_request_latency_seconds`.
struct RequestTiming {
    api_key: i16,
    read_at: std::time::Instant,
}

impl RequestTiming {
    fn of(frame: &handlers::RequestFrame) -> RequestTiming {
        // The API key is the header's first field; a frame too short for one is refused by
        // the dispatcher, and counted under key -1's slot meanwhile.
        let api_key = match frame.bytes.get(..2) {
            Some(&[high, low]) => i16::from_be_bytes([high, low]),
            _ => -1,
        };
        RequestTiming {
            api_key,
            read_at: std::time::Instant::now(),
        }
    }

    fn record(&self, shard: &Shard, stage: Stage) {
        shard
            .stats()
            .latencies
            .record(self.api_key, stage, self.read_at.elapsed());
    }
}

async fn write_responses<S: futures_lite::AsyncWrite + Unpin>(
    mut stream: WriteHalf<S>,
    socket: Socket,
    receiver: LocalReceiver<InFlight>,
    peer: String,
    shard: Rc<Shard>,
) {
    while let Some((pending, _reservation, timing)) = receiver.recv().await {
        let response = pending.await;
        timing.record(&shard, Stage::Total);
        match response {
            Ok(Some(frame)) => {
                if let Err(error) = write_frame(&mut stream, socket, frame).await {
                    tracing::debug!(%peer, %error, "client went away before its response");
                    break;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    // Wake the reader if it is blocked on a socket we are giving up on. The reader's half
    // keeps the descriptor open until it returns.
    // SAFETY: `fd` is the connection's socket, open as long as either half lives.
    unsafe { libc::shutdown(socket.fd, libc::SHUT_RDWR) };
}

/// Sends one response frame. An error leaves part of the frame sent: the caller closes the
/// connection.
async fn write_frame<S: futures_lite::AsyncWrite + Unpin>(
    stream: &mut WriteHalf<S>,
    socket: Socket,
    frame: Frame,
) -> std::io::Result<()> {
    write_pieces(stream, socket, frame).await?;
    if !socket.splice {
        // A TLS stream may hold the frame's last record until flushed.
        stream.flush().await?;
    }
    Ok(())
}

async fn write_pieces<S: futures_lite::AsyncWrite + Unpin>(
    stream: &mut WriteHalf<S>,
    socket: Socket,
    frame: Frame,
) -> std::io::Result<()> {
    let pieces = match frame {
        Frame::Whole(bytes) => return stream.write_all(&bytes).await,
        Frame::Pieces(pieces) => pieces,
    };
    for piece in pieces {
        match piece {
            FramePiece::Bytes(bytes) => stream.write_all(&bytes).await?,
            FramePiece::Records(RecordsPiece::Copied(bytes)) => stream.write_all(&bytes).await?,
            FramePiece::Records(RecordsPiece::Cached(cached)) => {
                stream.write_all(cached.as_slice()).await?
            }
            FramePiece::Records(RecordsPiece::File(range)) if socket.splice => {
                send_range(stream, socket.fd, &range).await?
            }
            FramePiece::Records(RecordsPiece::File(range)) => {
                copy_range(stream, &range.file, range.position, range.length).await?
            }
        }
    }
    Ok(())
}

/// Sends a file range with splice. If no splicer can be set up (out of descriptors, say), the
/// range is read and written instead, so that consumers are still served; the shard says so
/// once.
async fn send_range<S: futures_lite::AsyncWrite + Unpin>(
    stream: &mut WriteHalf<S>,
    fd: RawFd,
    range: &FileRange,
) -> std::io::Result<()> {
    let pooled = SPLICERS.with(|pool| pool.borrow_mut().pop());
    let mut splicer = match pooled.map_or_else(Splicer::new, Ok) {
        Ok(splicer) => splicer,
        Err(error) => {
            if !SPLICE_FALLBACK_LOGGED.replace(true) {
                tracing::warn!(%error, "cannot set up splice; sending sealed segments by reading them instead (logged once per shard)");
            }
            return copy_range(stream, &range.file, range.position, range.length).await;
        }
    };
    // On an error the splicer is dropped, not pooled: it may hold bytes.
    splicer
        .send_file(fd, range.file.as_raw_fd(), range.position, range.length)
        .await?;
    SPLICERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < IDLE_SPLICERS_MAX {
            pool.push(splicer);
        }
    });
    Ok(())
}

/// Reads `length` bytes of `file` from `position` and writes them, a pipe's worth at a time.
async fn copy_range<W: futures_lite::AsyncWrite + Unpin>(
    stream: &mut W,
    file: &BufferedFile,
    position: u64,
    length: usize,
) -> std::io::Result<()> {
    let end = position + length as u64;
    let mut at = position;
    while at < end {
        let want = ((end - at) as usize).min(crate::splice::PIPE_BYTES);
        let bytes = file.read_at(at, want).await?;
        if bytes.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("file ends before position {at}"),
            ));
        }
        stream.write_all(&bytes).await?;
        at += bytes.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_range_sends_the_range_byte_for_byte_and_refuses_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) =
            crate::splice::patterned_file(dir.path(), 3 * crate::splice::PIPE_BYTES + 777);
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(spate_storage::wakeup::guarded(async move {
                let file = BufferedFile::open(&path).await.unwrap();
                let (start, length) = (5_000usize, data.len() - 9_000);
                let mut sent = Vec::new();
                copy_range(&mut sent, &file, start as u64, length)
                    .await
                    .unwrap();
                assert!(sent == data[start..start + length]);
                let mut short = Vec::new();
                let error = copy_range(&mut short, &file, start as u64, data.len())
                    .await
                    .unwrap_err();
                assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
                file.close().await.unwrap();
            }));
    }
}
