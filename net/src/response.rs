//! Response frames that are not one buffer: encoded bytes with records in between, sent
//! from where they lie (the engine's tail cache chunks, or segment file ranges spliced to
//! the socket without a copy).
//!
//! The records are the engine's type `P` (this crate knows nothing about disks): the
//! encoders here ask of them only what [`RecordPieces`] says, and the connection that sends
//! a [`Frame`] knows how to send each piece.

use bytes::{BufMut, BytesMut};

/// A response frame, size prefix included.
pub enum Frame<P> {
    /// The whole frame in one buffer.
    Whole(BytesMut),
    /// The frame as pieces sent in order.
    Pieces(Vec<FramePiece<P>>),
}

/// Part of a [`Frame::Pieces`].
pub enum FramePiece<P> {
    /// Encoded bytes.
    Bytes(BytesMut),
    /// Records, in memory or described.
    Records(P),
}

impl<P> From<BytesMut> for Frame<P> {
    fn from(bytes: BytesMut) -> Frame<P> {
        Frame::Whole(bytes)
    }
}

/// One partition's records as the engine read them: pieces in log order.
pub trait RecordPieces {
    /// A piece, sent by the connection as it knows how.
    type Piece: Clone;
    /// Total bytes.
    fn len(&self) -> usize;
    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The pieces, in order.
    fn pieces(&self) -> &[Self::Piece];
    /// A piece's bytes if it holds them in memory.
    fn in_memory(piece: &Self::Piece) -> Option<&[u8]>;
    /// A piece's length in bytes.
    fn piece_len(piece: &Self::Piece) -> usize;
}

/// Memory pieces up to this size are copied into the frame's own bytes rather than sent as
/// a piece of their own: one more send costs more than copying a few KiB.
pub const INLINE_PIECE_BYTES: usize = 4096;

/// Builds a [`Frame`]: encoded bytes go to `bytes`, records are pushed as pieces.
pub struct FrameBuilder<P> {
    /// The bytes after the last piece pushed.
    pub bytes: BytesMut,
    pieces: Vec<FramePiece<P>>,
    /// The size prefix: every byte after it, pieces included.
    length: usize,
}

impl<P> Default for FrameBuilder<P> {
    fn default() -> Self {
        FrameBuilder {
            bytes: BytesMut::new(),
            pieces: Vec::new(),
            length: 0,
        }
    }
}

impl<P> FrameBuilder<P> {
    /// Starts a frame: the size prefix (patched by [`Self::finish`]).
    pub fn new() -> Self {
        let mut builder = FrameBuilder::default();
        builder.bytes.put_i32(0);
        builder
    }

    /// Adds a partition's records after the bytes written so far: small pieces in memory
    /// are copied, others become pieces of the frame.
    pub fn records<R: RecordPieces<Piece = P>>(&mut self, records: &R)
    where
        P: Clone,
    {
        for piece in records.pieces() {
            match R::in_memory(piece) {
                Some(slice) if slice.len() <= INLINE_PIECE_BYTES => self.bytes.put_slice(slice),
                _ => {
                    self.flush_bytes();
                    self.length += R::piece_len(piece);
                    self.pieces.push(FramePiece::Records(piece.clone()));
                }
            }
        }
    }

    fn flush_bytes(&mut self) {
        if !self.bytes.is_empty() {
            let bytes = self.bytes.split();
            self.length += bytes.len();
            self.pieces.push(FramePiece::Bytes(bytes));
        }
    }

    /// The frame, its size prefix patched.
    pub fn finish(mut self) -> Frame<P> {
        self.flush_bytes();
        let size = i32::try_from(self.length - 4).expect("a response never exceeds 2 GiB");
        match self.pieces.first_mut() {
            Some(FramePiece::Bytes(first)) => first[0..4].copy_from_slice(&size.to_be_bytes()),
            _ => unreachable!("the frame starts with its size prefix"),
        }
        if self.pieces.len() == 1 {
            if let Some(FramePiece::Bytes(whole)) = self.pieces.pop() {
                return Frame::Whole(whole);
            }
        }
        Frame::Pieces(self.pieces)
    }
}

/// Records in one buffer, for tests and for callers with nothing to send in place.
#[derive(Clone, Debug, Default)]
pub struct InlineRecords(pub [bytes::Bytes; 1]);

impl InlineRecords {
    /// The records `bytes`.
    pub fn new(bytes: bytes::Bytes) -> InlineRecords {
        InlineRecords([bytes])
    }
}

impl RecordPieces for InlineRecords {
    type Piece = bytes::Bytes;

    fn len(&self) -> usize {
        self.0[0].len()
    }

    fn pieces(&self) -> &[bytes::Bytes] {
        &self.0
    }

    fn in_memory(piece: &bytes::Bytes) -> Option<&[u8]> {
        Some(piece)
    }

    fn piece_len(piece: &bytes::Bytes) -> usize {
        piece.len()
    }
}

impl Frame<bytes::Bytes> {
    /// The frame's bytes in one buffer (tests, and frames whose pieces are all in memory).
    pub fn flatten(self) -> Vec<u8> {
        match self {
            Frame::Whole(bytes) => bytes.to_vec(),
            Frame::Pieces(pieces) => {
                let mut all = Vec::new();
                for piece in pieces {
                    match piece {
                        FramePiece::Bytes(bytes) => all.extend_from_slice(&bytes),
                        FramePiece::Records(bytes) => all.extend_from_slice(&bytes),
                    }
                }
                all
            }
        }
    }
}
