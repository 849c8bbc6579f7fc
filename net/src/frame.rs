//! Size-prefixed framing: every Kafka request and response is `[length: i32][payload]`.
//!
//! [`FrameReader`] reads ahead into one buffer so that a burst of small pipelined requests
//! costs one read system call, and hands each frame out as a [`Bytes`] that shares that
//! buffer (decoded record batches are slices of it: no copy).

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};

/// Why a connection's byte stream could not be cut into frames. Every variant ends the
/// connection; the caller logs one line with the variant's message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is zero or negative: the stream is not Kafka or is corrupt.
    #[error("invalid frame size {0}")]
    InvalidSize(i32),
    /// The size prefix is above `socket.request.max.bytes`; Kafka closes such connections.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes (socket.request.max.bytes)")]
    TooLarge {
        /// The size the client announced.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame ({received} of {expected} bytes received)")]
    Truncated {
        /// Bytes of the frame (prefix included) that did arrive.
        received: usize,
        /// Bytes the frame should have had (prefix included).
        expected: usize,
    },
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Smallest read we ask the socket for, so that small frames arrive in batches.
const READ_AHEAD_BYTES: usize = 64 * 1024;

/// Reads size-prefixed frames from one connection. Owned by the connection's task.
pub struct FrameReader {
    /// Bytes read from the socket and not yet handed out. Its length is exactly what was
    /// read, so when it has to grow into a new allocation (the previous frames still being
    /// referenced), only unread bytes are copied.
    buffer: BytesMut,
    max_frame_bytes: usize,
}

impl FrameReader {
    /// A reader that refuses frames larger than `max_frame_bytes` (payload, prefix excluded).
    pub fn new(max_frame_bytes: usize) -> FrameReader {
        FrameReader {
            buffer: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// The next frame's payload (size prefix removed), or `None` when the peer closed the
    /// connection cleanly between frames.
    pub async fn next_frame<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame_len) = self.complete_frame_len()? {
                return Ok(Some(self.take_frame(frame_len)));
            }
            let wanted = self.bytes_wanted();
            if !self.fill(reader, wanted).await? {
                return match self.buffer.len() {
                    0 => Ok(None),
                    received => Err(FrameError::Truncated {
                        received,
                        expected: self.expected_len().unwrap_or(SIZE_PREFIX_BYTES),
                    }),
                };
            }
        }
    }

    /// The announced size of the frame at the front of the buffer, checked against limits.
    fn announced_size(&self) -> Result<Option<usize>, FrameError> {
        if self.buffer.len() < SIZE_PREFIX_BYTES {
            return Ok(None);
        }
        let size = (&self.buffer[..SIZE_PREFIX_BYTES]).get_i32();
        if size <= 0 {
            return Err(FrameError::InvalidSize(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size))
    }

    fn expected_len(&self) -> Option<usize> {
        self.announced_size()
            .ok()
            .flatten()
            .map(|size| size + SIZE_PREFIX_BYTES)
    }

    /// The frame's total length (prefix included) if it is entirely in the buffer.
    fn complete_frame_len(&self) -> Result<Option<usize>, FrameError> {
        Ok(self
            .announced_size()?
            .map(|size| size + SIZE_PREFIX_BYTES)
            .filter(|&total| total <= self.buffer.len()))
    }

    /// How many bytes to ask the socket for: the rest of the current frame, and at least
    /// [`READ_AHEAD_BYTES`] so that several small frames come in one read.
    fn bytes_wanted(&self) -> usize {
        let frame_total = self.expected_len().unwrap_or(SIZE_PREFIX_BYTES);
        frame_total
            .saturating_sub(self.buffer.len())
            .max(READ_AHEAD_BYTES)
    }

    fn take_frame(&mut self, frame_len: usize) -> Bytes {
        let mut frame = self.buffer.split_to(frame_len);
        frame.advance(SIZE_PREFIX_BYTES);
        frame.freeze()
    }

    /// Reads once from the socket, up to `wanted` more bytes. Returns false at end of stream.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        wanted: usize,
    ) -> Result<bool, FrameError> {
        let filled = self.buffer.len();
        // Zeroing the space costs a memset, well below the socket copy; it keeps this code
        // free of `unsafe` reads into uninitialised memory.
        self.buffer.resize(filled + wanted, 0);
        let read = reader.read(&mut self.buffer[filled..]).await;
        self.buffer.truncate(filled + *read.as_ref().unwrap_or(&0));
        Ok(read? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    #[test]
    fn reads_back_to_back_frames_then_clean_eof() {
        let bytes = framed(&[b"one", b"two two", &[7u8; 100_000]]);
        let mut cursor = Cursor::new(bytes);
        let mut reader = FrameReader::new(1 << 20);
        block_on(async {
            assert_eq!(
                &reader.next_frame(&mut cursor).await.unwrap().unwrap()[..],
                b"one"
            );
            assert_eq!(
                &reader.next_frame(&mut cursor).await.unwrap().unwrap()[..],
                b"two two"
            );
            assert_eq!(
                reader.next_frame(&mut cursor).await.unwrap().unwrap().len(),
                100_000
            );
            assert!(reader.next_frame(&mut cursor).await.unwrap().is_none());
        });
    }

    #[test]
    fn rejects_negative_zero_and_oversize_prefixes() {
        for (prefix, expect_too_large) in [(-1i32, false), (0, false), (1025, true)] {
            let mut cursor = Cursor::new(prefix.to_be_bytes().to_vec());
            let mut reader = FrameReader::new(1024);
            let error = block_on(reader.next_frame(&mut cursor)).unwrap_err();
            assert_eq!(
                matches!(error, FrameError::TooLarge { .. }),
                expect_too_large
            );
        }
    }

    #[test]
    fn lying_prefix_is_truncated_not_hung() {
        let mut bytes = 1000i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1u8; 10]);
        let mut cursor = Cursor::new(bytes);
        let mut reader = FrameReader::new(1 << 20);
        let error = block_on(reader.next_frame(&mut cursor)).unwrap_err();
        assert!(matches!(
            error,
            FrameError::Truncated {
                received: 14,
                expected: 1004
            }
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_streams_never_panic(stream in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let mut cursor = Cursor::new(stream);
            let mut reader = FrameReader::new(512);
            block_on(async {
                while let Ok(Some(_)) = reader.next_frame(&mut cursor).await {}
            });
        }
    }
}
