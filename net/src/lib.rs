//! The Kafka wire protocol for Spate, in both directions.
//!
//! A tour of the crate:
//! - [`frame::FrameReader`] cuts a byte stream into size-prefixed frames and refuses frames
//!   whose size prefix is negative, zero or over the configured maximum
//!   (`socket.request.max.bytes`), so a lying client can never make us allocate what it claims.
//!   Small frames share pooled read-ahead buffers, a large one gets an allocation that grows
//!   as its bytes arrive (and reserves its size from a [`budget::MemoryBudget`], the
//!   back-pressure of `queued.max.request.bytes`), and an idle connection's reader holds no
//!   buffer at all. Large frames of an API
//!   the caller streams (the broker streams Produce) are read piece by piece into the
//!   caller's memory instead ([`frame::NextFrame::Streamed`]).
//! - [`codec`] turns a frame into a typed request ([`codec::Request`]: the header plus a
//!   `kafka_protocol` [`RequestKind`](kafka_protocol::messages::RequestKind)), and a typed
//!   response back into a size-prefixed frame. It also builds the special reply that
//!   KIP-511 prescribes when a client asks for an ApiVersions version we do not speak.
//! - [`produce_stream`] walks a streamed Produce frame as it arrives, copying its fields into
//!   a "skeleton" request and receiving each large batch into memory the caller's
//!   [`produce_stream::BatchSink`] gives (the engine's: the DMA chunks the log writes from).
//! - [`response`] holds response frames made of pieces ([`response::Frame`]): encoded bytes
//!   with records between them that the connection sends from where they lie (file ranges
//!   spliced, cached chunks); [`fetch_response`] encodes a Fetch response that way, byte for
//!   byte what kafka-protocol would.
//! - [`wire`] holds the primitives those hand-written codecs share: varints, compact and
//!   classic strings, arrays and bytes, tagged fields.
//! - [`legacy`] codes request versions kafka-protocol dropped that old tools still send
//!   (ListOffsets v0).
//! - [`error_code`] is the one list of Kafka error codes Spate's code matches on.
//! - [`async_client`] is the client a shard uses to talk to other brokers without blocking:
//!   [`async_client::BrokerConnection`] (one broker, versions negotiated) and
//!   [`async_client::ClusterClient`] (routed to partition leaders: Fetch, ListOffsets,
//!   OffsetForLeaderEpoch), on the caller's runtime.
//! - [`client::Client`] is a small blocking client over `std::net::TcpStream`, used by the
//!   CLI, the tests and the bench harness.
//!
//! This crate knows nothing about partitions, groups or disks; which API versions the
//! broker serves is decided by the engine's handler table, not here.

pub mod async_client;
pub mod budget;
pub mod client;
pub mod codec;
pub mod error_code;
pub mod fetch_response;
pub mod frame;
pub mod legacy;
pub mod produce_stream;
pub mod records;
pub mod response;
pub mod wire;

pub use budget::{MemoryBudget, Reservation};
pub use codec::{encode_response, Request, RequestError};
pub use frame::{FrameError, FrameReader, NextFrame, Sleep};
pub use kafka_protocol;
pub use response::{Frame, FramePiece};
