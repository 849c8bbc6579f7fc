//! The connection against a scripted broker in memory: negotiation, version choice, and
//! every way a broker can fail a call. (The whole client against a real broker is in
//! `engine/tests/integration/async_client.rs`.)

use super::*;
use bytes::BytesMut;
use futures_lite::future::block_on;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, RequestKind, ResponseKind};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// What the scripted broker does with a request: its response frame, or nothing (a broker
/// that goes silent).
type Script = Box<dyn FnMut(&crate::Request) -> Option<BytesMut>>;

/// A stream whose far end is a scripted broker.
struct ScriptedBroker {
    script: Script,
    received: Vec<u8>,
    to_send: VecDeque<u8>,
    /// Reads past what was scripted: end of stream, or wait forever.
    eof_when_empty: bool,
}

impl ScriptedBroker {
    fn new(script: Script) -> ScriptedBroker {
        ScriptedBroker {
            script,
            received: Vec::new(),
            to_send: VecDeque::new(),
            eof_when_empty: true,
        }
    }
}

impl AsyncWrite for ScriptedBroker {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.received.extend_from_slice(buf);
        while self.received.len() >= 4 {
            let size = i32::from_be_bytes(self.received[..4].try_into().unwrap()) as usize;
            if self.received.len() < 4 + size {
                break;
            }
            let frame: Vec<u8> = self.received.drain(..4 + size).skip(4).collect();
            let request = crate::Request::decode_header(Bytes::from(frame)).unwrap();
            if let Some(response) = (self.script)(&request) {
                self.to_send.extend(response.iter());
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ScriptedBroker {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.to_send.is_empty() && !self.eof_when_empty {
            return Poll::Pending;
        }
        let count = buf.len().min(self.to_send.len());
        for (at, byte) in self.to_send.drain(..count).enumerate() {
            buf[at] = byte;
        }
        Poll::Ready(Ok(count))
    }
}

fn options(sleep_ends: bool) -> ClientOptions {
    ClientOptions {
        client_id: "test".into(),
        request_timeout: Duration::from_secs(1),
        max_response_bytes: 1 << 20,
        // The clock: a timeout that fires at once, or never.
        sleep: Rc::new(move |_| {
            if sleep_ends {
                Box::pin(std::future::ready(()))
            } else {
                Box::pin(std::future::pending())
            }
        }),
    }
}

fn respond(request: &crate::Request, response: ResponseKind) -> BytesMut {
    crate::encode_response(
        request.api_key,
        request.version(),
        request.header.correlation_id,
        &response,
    )
    .unwrap()
}

/// ApiVersions: ApiVersions 0..=3, Metadata 1..=`metadata_max`.
fn versions(request: &crate::Request, metadata_max: i16) -> BytesMut {
    let api = |key: ApiKey, min, max| {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    };
    let response = ApiVersionsResponse::default().with_api_keys(vec![
        api(ApiKey::ApiVersions, 0, 3),
        api(ApiKey::Metadata, 1, metadata_max),
    ]);
    respond(request, ResponseKind::ApiVersions(response))
}

/// A broker that serves ApiVersions and Metadata, recording the Metadata versions asked.
fn metadata_broker(metadata_max: i16, asked: Rc<std::cell::RefCell<Vec<i16>>>) -> Script {
    Box::new(move |request| match request.decode_body().unwrap() {
        RequestKind::ApiVersions(_) => Some(versions(request, metadata_max)),
        RequestKind::Metadata(_) => {
            asked.borrow_mut().push(request.version());
            Some(respond(
                request,
                ResponseKind::Metadata(MetadataResponse::default()),
            ))
        }
        other => panic!("unexpected {other:?}"),
    })
}

fn start(
    broker: ScriptedBroker,
    sleep_ends: bool,
) -> Result<BrokerConnection<ScriptedBroker>, ClientError> {
    block_on(BrokerConnection::start(
        broker,
        "scripted:1".into(),
        options(sleep_ends),
    ))
}

#[test]
fn the_highest_common_version_is_used() {
    let asked = Rc::new(std::cell::RefCell::new(Vec::new()));
    let broker = ScriptedBroker::new(metadata_broker(9, asked.clone()));
    let mut connection = start(broker, false).unwrap();
    let (version, _) = block_on(connection.call(1..=12, &MetadataRequest::default())).unwrap();
    assert_eq!(version, 9, "the broker's maximum");
    let (version, _) = block_on(connection.call(1..=4, &MetadataRequest::default())).unwrap();
    assert_eq!(version, 4, "ours");
    assert_eq!(*asked.borrow(), vec![9, 4]);
    assert!(matches!(
        connection.version_for(ApiKey::Metadata, 10..=12),
        Err(ClientError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        connection.version_for(ApiKey::Fetch, 4..=12),
        Err(ClientError::UnsupportedVersion { .. })
    ));
}

#[test]
fn a_broker_without_api_versions_v3_is_asked_at_v0() {
    let script: Script = Box::new(|request| match request.version() {
        // KIP-511: the answer to a version it does not speak, in v0.
        3 => Some(crate::codec::encode_api_versions_unsupported(
            request.header.correlation_id,
            0,
            2,
        )),
        _ => Some(versions(request, 5)),
    });
    let connection = start(ScriptedBroker::new(script), false).unwrap();
    assert_eq!(connection.version_for(ApiKey::Metadata, 1..=12).unwrap(), 5);
}

#[test]
fn a_wrong_correlation_id_breaks_the_connection() {
    let script: Script = Box::new(move |request| match request.decode_body().unwrap() {
        RequestKind::ApiVersions(_) => Some(versions(request, 12)),
        _ => {
            let mut response =
                respond(request, ResponseKind::Metadata(MetadataResponse::default()));
            response[4..8].copy_from_slice(&999i32.to_be_bytes());
            Some(response)
        }
    });
    let mut connection = start(ScriptedBroker::new(script), false).unwrap();
    let result = block_on(connection.call(1..=12, &MetadataRequest::default()));
    assert!(
        matches!(result, Err(ClientError::Protocol { .. })),
        "{result:?}"
    );
    assert!(connection.is_broken());
    let again = block_on(connection.call(1..=12, &MetadataRequest::default()));
    assert!(matches!(again, Err(ClientError::Broken(_))), "{again:?}");
}

#[test]
fn a_silent_broker_times_out_and_a_closed_one_fails() {
    let script: Script = Box::new(|request| match request.decode_body().unwrap() {
        RequestKind::ApiVersions(_) => Some(versions(request, 12)),
        _ => None,
    });
    let mut broker = ScriptedBroker::new(script);
    broker.eof_when_empty = false;
    // The handshake is answered before the clock could end it; then silence.
    let mut connection = block_on(BrokerConnection::start(
        broker,
        "scripted:1".into(),
        options(false),
    ))
    .unwrap();
    connection.options = options(true);
    let result = block_on(connection.call(1..=12, &MetadataRequest::default()));
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(connection.is_broken());

    let script: Script = Box::new(|request| match request.decode_body().unwrap() {
        RequestKind::ApiVersions(_) => Some(versions(request, 12)),
        _ => None,
    });
    let mut connection = start(ScriptedBroker::new(script), false).unwrap();
    let result = block_on(connection.call(1..=12, &MetadataRequest::default()));
    assert!(matches!(result, Err(ClientError::Io { .. })), "{result:?}");
}

#[test]
fn garbage_and_cut_responses_are_errors_not_panics() {
    for cut in [5usize, 9, 12, 20] {
        let script: Script = Box::new(move |request| match request.decode_body().unwrap() {
            RequestKind::ApiVersions(_) => Some(versions(request, 12)),
            _ => {
                let whole = respond(
                    request,
                    ResponseKind::Metadata(
                        MetadataResponse::default().with_cluster_id(Some("c".into())),
                    ),
                );
                // Size prefix made to match: the body is cut inside its fields.
                let mut response = BytesMut::from(&whole[..cut.min(whole.len())]);
                let size = (response.len() - 4) as i32;
                response[..4].copy_from_slice(&size.to_be_bytes());
                Some(response)
            }
        });
        let mut connection = start(ScriptedBroker::new(script), false).unwrap();
        let result = block_on(connection.call(1..=12, &MetadataRequest::default()));
        assert!(result.is_err(), "cut at {cut}: {result:?}");
    }
    let script: Script = Box::new(|request| match request.decode_body().unwrap() {
        RequestKind::ApiVersions(_) => Some(versions(request, 12)),
        _ => Some(BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..])),
    });
    let mut connection = start(ScriptedBroker::new(script), false).unwrap();
    let result = block_on(connection.call(1..=12, &MetadataRequest::default()));
    assert!(
        matches!(result, Err(ClientError::Protocol { .. })),
        "{result:?}"
    );
}
