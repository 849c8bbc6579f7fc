//! Request decoding and response encoding on top of the `kafka_protocol` crate.
//!
//! The crate's generated codecs are complete and zero-copy on decode (record data stays a
//! slice of the frame). What it does not decide is which versions a broker serves: the
//! caller passes its own check, so that the engine's handler table stays the only source
//! of truth for version ranges.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Why a request frame could not be turned into a typed request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The frame is shorter than the fixed part of a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// The API key is not one Kafka defines. Kafka closes the connection.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The header could not be parsed.
    #[error("malformed request header for {api_key:?} v{version}: {reason}")]
    MalformedHeader {
        /// The request's API.
        api_key: ApiKey,
        /// The request's version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// The body could not be parsed at the version the header names.
    #[error("malformed {api_key:?} v{version} request body: {reason}")]
    MalformedBody {
        /// The request's API.
        api_key: ApiKey,
        /// The request's version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
}

/// A request whose header has been decoded; the body is decoded separately, once the
/// broker has checked that it serves this version.
#[derive(Debug)]
pub struct Request {
    /// The API the request is for.
    pub api_key: ApiKey,
    /// The decoded header (correlation id, client id, version).
    pub header: RequestHeader,
    /// The undecoded body: a slice of the frame.
    pub body: Bytes,
}

impl Request {
    /// Decodes the header of a frame. The API key and version are read first, so a header
    /// for an unknown key fails before anything else is parsed.
    pub fn decode_header(mut frame: Bytes) -> Result<Request, RequestError> {
        if frame.len() < 8 {
            return Err(RequestError::TooShort(frame.len()));
        }
        let raw_key = (&frame[0..2]).get_i16();
        let version = (&frame[2..4]).get_i16();
        let api_key =
            ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
        let header_version = request_header_version(api_key, version);
        let header = RequestHeader::decode(&mut frame, header_version).map_err(|error| {
            RequestError::MalformedHeader {
                api_key,
                version,
                reason: error.to_string(),
            }
        })?;
        Ok(Request {
            api_key,
            header,
            body: frame,
        })
    }

    /// The request's version.
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// Decodes the body at the header's version. The caller has checked that the version is
    /// one it serves; the decoder checks that the bytes match it.
    pub fn decode_body(&self) -> Result<RequestKind, RequestError> {
        let mut body = self.body.clone();
        RequestKind::decode(self.api_key, &mut body, self.version()).map_err(|error| {
            RequestError::MalformedBody {
                api_key: self.api_key,
                version: self.version(),
                reason: error.to_string(),
            }
        })
    }
}

/// The request header version for an API version. For versions above what the codec knows
/// (a client probing ApiVersions v99), the newest header version is the right guess: KIP-511
/// requires brokers to parse the header of a too-new ApiVersions request.
fn request_header_version(api_key: ApiKey, version: i16) -> i16 {
    let known_max = api_key.valid_versions().max;
    api_key.request_header_version(version.clamp(0, known_max))
}

/// Encodes a response as one size-prefixed frame: `[size][response header][body]`.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0); // patched below, once the size is known
    let header_version = api_key.response_header_version(version);
    frame.put_i32(correlation_id);
    if header_version >= 1 {
        frame.put_u8(0); // no tagged fields in the response header
    }
    response.encode(&mut frame, version)?;
    patch_size_prefix(&mut frame);
    Ok(frame)
}

/// The reply to an ApiVersions request whose version we do not serve (KIP-511): response
/// header v0 and a v0 body with UNSUPPORTED_VERSION and the ApiVersions range we serve, so
/// the client can retry at a version we speak.
pub fn encode_api_versions_unsupported(correlation_id: i32, min: i16, max: i16) -> BytesMut {
    let mut frame = BytesMut::with_capacity(20);
    frame.put_i32(0);
    frame.put_i32(correlation_id);
    frame.put_i16(crate::error_code::UNSUPPORTED_VERSION);
    frame.put_i32(1); // one entry in api_keys
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(min);
    frame.put_i16(max);
    patch_size_prefix(&mut frame);
    frame
}

fn patch_size_prefix(frame: &mut BytesMut) {
    let size = i32::try_from(frame.len() - 4).expect("a response never exceeds 2 GiB");
    frame[0..4].copy_from_slice(&size.to_be_bytes());
}

/// Encodes a client's request frame: `body` at `version`, with the header a client sends.
pub fn encode_client_request<T: kafka_protocol::protocol::Request>(
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    body: &T,
) -> anyhow::Result<BytesMut> {
    let api_key = ApiKey::try_from(T::KEY).map_err(|_| anyhow::anyhow!("unknown API key"))?;
    let header = RequestHeader::default()
        .with_request_api_key(T::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    encode_request(&header, api_key, body)
}

/// Encodes a request frame (used by the client and by tests).
pub fn encode_request<T: Encodable>(
    header: &RequestHeader,
    api_key: ApiKey,
    body: &T,
) -> anyhow::Result<BytesMut> {
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    header.encode(
        &mut frame,
        api_key.request_header_version(header.request_api_version),
    )?;
    body.encode(&mut frame, header.request_api_version)?;
    patch_size_prefix(&mut frame);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiVersionsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    fn header(api_key: ApiKey, version: i16) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")))
    }

    fn strip_prefix(frame: BytesMut) -> Bytes {
        let mut frame = frame.freeze();
        frame.advance(4);
        frame
    }

    #[test]
    fn request_round_trips_for_every_served_metadata_version() {
        for version in 0..=12 {
            let body = MetadataRequest::default().with_topics(None);
            let frame = encode_request(&header(ApiKey::Metadata, version), ApiKey::Metadata, &body)
                .unwrap();
            let request = Request::decode_header(strip_prefix(frame)).unwrap();
            assert_eq!(request.header.correlation_id, 42);
            assert!(matches!(
                request.decode_body().unwrap(),
                RequestKind::Metadata(_)
            ));
        }
    }

    #[test]
    fn too_new_api_versions_header_still_parses() {
        let body = ApiVersionsRequest::default();
        let frame =
            encode_request(&header(ApiKey::ApiVersions, 3), ApiKey::ApiVersions, &body).unwrap();
        let mut bytes = strip_prefix(frame).to_vec();
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        let request = Request::decode_header(Bytes::from(bytes)).unwrap();
        assert_eq!(request.version(), 99);
        assert_eq!(request.header.correlation_id, 42);
    }

    #[test]
    fn unknown_key_and_short_frames_are_errors() {
        let mut bytes = vec![0u8; 12];
        bytes[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(
            Request::decode_header(Bytes::from(bytes)),
            Err(RequestError::UnknownApiKey(9999))
        ));
        assert!(matches!(
            Request::decode_header(Bytes::from_static(b"abc")),
            Err(RequestError::TooShort(3))
        ));
    }

    #[test]
    fn response_frame_has_size_and_flexible_header() {
        let response = ResponseKind::Metadata(MetadataResponse::default());
        let frame = encode_response(ApiKey::Metadata, 9, 7, &response).unwrap();
        assert_eq!((&frame[0..4]).get_i32() as usize, frame.len() - 4);
        assert_eq!((&frame[4..8]).get_i32(), 7);
        assert_eq!(
            frame[8], 0,
            "v9 is flexible: empty tagged fields in the header"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), key in 0i16..80, version in -2i16..20) {
            let mut frame = bytes;
            if frame.len() >= 4 {
                frame[0..2].copy_from_slice(&key.to_be_bytes());
                frame[2..4].copy_from_slice(&version.to_be_bytes());
            }
            if let Ok(request) = Request::decode_header(Bytes::from(frame)) {
                let _ = request.decode_body();
            }
        }

        #[test]
        fn produce_garbage_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), version in 3i16..=11) {
            let frame = encode_request(&header(ApiKey::Produce, version), ApiKey::Produce, &ProduceRequest::default()).unwrap();
            let mut bytes = strip_prefix(frame).to_vec();
            bytes.extend_from_slice(&body);
            if let Ok(request) = Request::decode_header(Bytes::from(bytes)) {
                let _ = request.decode_body();
            }
        }
    }
}
