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
//! - [`client::Client`] is a small blocking client over `std::net::TcpStream`, used by the
//!   CLI, the tests and (later) the bench harness.
//!
//! This crate knows nothing about partitions, groups or disks; which API versions the
//! broker serves is decided by the engine's handler table, not here.

pub mod budget;
pub mod client;
pub mod codec;
pub mod frame;
pub mod records;

pub use budget::{MemoryBudget, Reservation};
pub use codec::{encode_response, Request, RequestError};
pub use frame::{FrameError, FrameReader, NextFrame, Sleep};
pub use kafka_protocol;
