//! Size-prefixed framing: every Kafka request and response is `[length: i32][payload]`.
//!
//! [`FrameReader`] cuts one connection's byte stream into frames, with three aims:
//!
//! - A burst of small pipelined requests costs one read system call: they are read ahead into
//!   one buffer of [`READ_AHEAD_BYTES`], and each is handed out as a [`Bytes`] that shares it
//!   (decoded record batches are slices of it: no copy).
//! - A large frame (payload of [`LARGE_FRAME_BYTES_MIN`] or more) is read into one allocation
//!   of exactly its size: it never grows, and nothing but the few bytes that came with the
//!   previous read is copied.
//! - An idle connection holds no buffer. When the socket has nothing more to read, the reader
//!   gives its read-ahead buffer back to the thread's pool and waits for the next size prefix
//!   in a 4-byte array; unread bytes wait in the socket's kernel buffer meanwhile.
//!
//! - A large frame of an API the caller streams (Produce, in the broker) is not buffered at
//!   all: [`FrameReader::next`] hands it out as [`NextFrame::Streamed`], and the caller reads
//!   it in pieces with [`FrameReader::read_streamed`]. Small pieces (the request's fields) are
//!   buffered a little at a time; large ones (record batches) are read from the socket
//!   straight into the caller's memory, which for the broker is the DMA buffer the batch is
//!   written to disk from.
//!
//! Buffers are allocated zeroed once and then reused, rather than zero-filled on every read.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

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

/// Size of a read-ahead buffer: the most one read asks the socket for between frames.
pub const READ_AHEAD_BYTES: usize = 64 * 1024;

/// Frames whose payload is this size or more are read into their own allocation of exactly
/// their size; smaller ones share read-ahead buffers. A small frame that straddles the end of
/// a read-ahead buffer is copied to the next one, so this bounds that copy.
pub const LARGE_FRAME_BYTES_MIN: usize = 16 * 1024;

/// A read-ahead buffer with less room than this left is replaced before the next read
/// between frames, so that reads are never tiny.
const READ_BYTES_MIN: usize = 4 * 1024;

/// A streamed frame's pieces smaller than this are served from a buffer refilled this much at
/// a time (never past the frame's end); larger ones are read straight into the caller's memory.
pub const STREAMED_BUFFERED_BYTES: usize = 4 * 1024;

/// Idle read-ahead buffers kept per thread (2 MiB). A connection holds one only while its
/// socket has bytes to read, so a shard needs few; more are freed.
const POOLED_READ_AHEAD_MAX: usize = 32;

const _: () = assert!(LARGE_FRAME_BYTES_MIN + SIZE_PREFIX_BYTES <= READ_AHEAD_BYTES);
const _: () = assert!(READ_BYTES_MIN < READ_AHEAD_BYTES);

thread_local! {
    /// This thread's idle read-ahead buffers, each empty with `READ_AHEAD_BYTES` of
    /// (initialised) room, shared by all the connections the thread serves.
    static READ_AHEAD_POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A read-ahead buffer from the thread's pool, or a new one.
fn acquire_read_ahead() -> BytesMut {
    let pooled = READ_AHEAD_POOL.with(|pool| pool.borrow_mut().pop());
    pooled.unwrap_or_else(|| zeroed_room(READ_AHEAD_BYTES))
}

/// An empty buffer with `bytes` of room, all of it initialised (zeroed) memory.
fn zeroed_room(bytes: usize) -> BytesMut {
    let mut buffer = BytesMut::zeroed(bytes);
    buffer.clear();
    buffer
}

/// Reads size-prefixed frames from one connection. Owned by the connection's task.
///
/// Every buffer it reads into was allocated zeroed (by [`zeroed_room`]) and is never grown,
/// only split and reclaimed, so all of its capacity is initialised memory: the socket reads
/// straight into the spare capacity, and only the bytes read become part of the buffer.
pub struct FrameReader {
    /// Bytes read ahead and not yet handed out, starting at a size prefix. Holds no
    /// allocation while the connection is idle.
    read_ahead: BytesMut,
    /// The large frame being read, if any.
    large_frame: Option<LargeFrame>,
    max_frame_bytes: usize,
    /// API keys whose large frames are streamed.
    streamed_api_keys: Vec<i16>,
    /// The announced payload size of a large frame whose API is not known yet: its first
    /// bytes are at the front of `read_ahead`, size prefix included.
    undecided: Option<usize>,
    /// Bytes of the streamed frame not yet handed to the caller (some may be in `read_ahead`).
    streamed: Option<usize>,
    /// The streamed frame's payload size.
    streamed_size: usize,
    /// Caps the next read between frames: right after a streamed frame, read little ahead, so
    /// that a next streamed frame's batch is not read into the read-ahead buffer and copied.
    follows_streamed: bool,
}

/// What [`FrameReader::next`] found.
#[derive(Debug)]
pub enum NextFrame {
    /// A whole frame's payload.
    Whole(Bytes),
    /// A large frame of a streamed API, of this many bytes (payload): read all of them with
    /// [`FrameReader::read_streamed`] before asking for the next frame.
    Streamed(usize),
}

/// A frame of [`LARGE_FRAME_BYTES_MIN`] or more, read into its own allocation.
struct LargeFrame {
    /// The payload received so far; its capacity is `size`.
    payload: BytesMut,
    /// The announced payload size.
    size: usize,
}

impl FrameReader {
    /// A reader that refuses frames larger than `max_frame_bytes` (payload, prefix excluded).
    pub fn new(max_frame_bytes: usize) -> FrameReader {
        FrameReader {
            read_ahead: BytesMut::new(),
            large_frame: None,
            max_frame_bytes,
            streamed_api_keys: Vec::new(),
            undecided: None,
            streamed: None,
            streamed_size: 0,
            follows_streamed: false,
        }
    }

    /// Large frames whose request header names this API key are handed out by
    /// [`Self::next`] as [`NextFrame::Streamed`].
    pub fn stream_api_key(mut self, api_key: i16) -> FrameReader {
        self.streamed_api_keys.push(api_key);
        self
    }

    /// The next frame, whole or streamed, or `None` when the peer closed the connection
    /// cleanly between frames. A streamed frame must be read to its end first.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<NextFrame>, FrameError> {
        assert!(
            self.streamed.is_none(),
            "the streamed frame was not read to its end"
        );
        loop {
            if let Some(frame) = self.take_complete_frame()? {
                return Ok(Some(NextFrame::Whole(frame)));
            }
            if let Some(size) = self.undecided {
                if let Some(streamed) = self.decide_large_frame(reader, size).await? {
                    return Ok(Some(streamed));
                }
            } else if self.large_frame.is_some() {
                self.fill_large_frame(reader).await?;
            } else if self.read_ahead.is_empty() {
                if !self.read_between_frames(reader).await? {
                    return Ok(None);
                }
            } else {
                self.fill_read_ahead(reader).await?;
            }
        }
    }

    /// Bytes of the streamed frame still to read.
    pub fn streamed_remaining(&self) -> usize {
        self.streamed.unwrap_or(0)
    }

    /// Reads exactly `target.len()` bytes of the streamed frame into `target`: what is
    /// buffered first, then small pieces through a buffer of [`STREAMED_BUFFERED_BYTES`] and
    /// large ones straight from the socket. Never reads past the frame's end; asking for more
    /// than [`Self::streamed_remaining`] is a bug.
    pub async fn read_streamed<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        target: &mut [u8],
    ) -> Result<(), FrameError> {
        let remaining = self.streamed_remaining();
        assert!(
            target.len() <= remaining,
            "asked for {} bytes of a streamed frame that has {remaining} left",
            target.len()
        );
        let mut filled = 0;
        while filled < target.len() {
            if !self.read_ahead.is_empty() {
                let take = self.read_ahead.len().min(target.len() - filled);
                target[filled..filled + take].copy_from_slice(&self.read_ahead[..take]);
                self.read_ahead.advance(take);
                filled += take;
                continue;
            }
            // Nothing is buffered: the frame's unread bytes are all still in the socket.
            let unread = remaining - filled;
            let read = if target.len() - filled >= STREAMED_BUFFERED_BYTES {
                // The read may wait on a slow client: hold no read-ahead buffer meanwhile.
                self.release_read_ahead();
                let read = reader.read(&mut target[filled..]).await?;
                filled += read;
                read
            } else {
                if spare_len(&self.read_ahead) < STREAMED_BUFFERED_BYTES {
                    self.release_read_ahead();
                    self.read_ahead = acquire_read_ahead();
                }
                let limit = unread.min(STREAMED_BUFFERED_BYTES);
                let read = reader.read(spare(&mut self.read_ahead, limit)).await?;
                commit(&mut self.read_ahead, read);
                read
            };
            if read == 0 {
                return Err(FrameError::Truncated {
                    received: SIZE_PREFIX_BYTES + self.streamed_size - unread,
                    expected: SIZE_PREFIX_BYTES + self.streamed_size,
                });
            }
        }
        let left = remaining - target.len();
        self.streamed = (left > 0).then_some(left);
        self.follows_streamed = left == 0;
        Ok(())
    }

    /// The next frame's payload (size prefix removed), or `None` when the peer closed the
    /// connection cleanly between frames. For readers that stream no API.
    pub async fn next_frame<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<Bytes>, FrameError> {
        assert!(self.streamed_api_keys.is_empty(), "use `next` to stream");
        Ok(self.next(reader).await?.map(|next| match next {
            NextFrame::Whole(frame) => frame,
            NextFrame::Streamed(_) => unreachable!("no API is streamed"),
        }))
    }

    /// Bytes of memory this reader holds for buffered input (0 while idle).
    pub fn buffered_capacity(&self) -> usize {
        self.read_ahead.capacity()
            + self
                .large_frame
                .as_ref()
                .map_or(0, |large| large.payload.capacity())
    }

    /// Hands out the frame at the front, if it has arrived entirely.
    fn take_complete_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(large) = &self.large_frame {
            if large.payload.len() < large.size {
                return Ok(None);
            }
            return Ok(self.large_frame.take().map(|large| large.payload.freeze()));
        }
        let Some(size) = self.announced_size()? else {
            return Ok(None);
        };
        if SIZE_PREFIX_BYTES + size > self.read_ahead.len() {
            return Ok(None);
        }
        let mut frame = self.read_ahead.split_to(SIZE_PREFIX_BYTES + size);
        frame.advance(SIZE_PREFIX_BYTES);
        Ok(Some(frame.freeze()))
    }

    /// The announced size of the frame at the front of the read-ahead buffer, checked.
    fn announced_size(&self) -> Result<Option<usize>, FrameError> {
        if self.read_ahead.len() < SIZE_PREFIX_BYTES {
            return Ok(None);
        }
        let prefix = (&self.read_ahead[..SIZE_PREFIX_BYTES]).get_i32();
        self.checked_size(prefix).map(Some)
    }

    fn checked_size(&self, prefix: i32) -> Result<usize, FrameError> {
        if prefix <= 0 {
            return Err(FrameError::InvalidSize(prefix));
        }
        let size = prefix as usize;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(size)
    }

    /// Reads when nothing is buffered. If the socket has bytes now, they go into the
    /// read-ahead buffer; otherwise the buffer goes back to the pool, and the reader waits
    /// for the next size prefix holding no memory. Returns false at a clean end of stream.
    async fn read_between_frames<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<bool, FrameError> {
        if spare_len(&self.read_ahead) < READ_BYTES_MIN {
            self.release_read_ahead();
            self.read_ahead = acquire_read_ahead();
        }
        let limit = if std::mem::take(&mut self.follows_streamed) {
            STREAMED_BUFFERED_BYTES
        } else {
            usize::MAX
        };
        if let Some(read) = read_now(reader, spare(&mut self.read_ahead, limit)).await {
            let read = read?;
            commit(&mut self.read_ahead, read);
            return Ok(read > 0);
        }
        self.release_read_ahead();
        let Some(prefix) = read_size_prefix(reader).await? else {
            return Ok(false);
        };
        let size = self.checked_size(i32::from_be_bytes(prefix))?;
        if size >= LARGE_FRAME_BYTES_MIN && !self.streamed_api_keys.is_empty() {
            self.read_ahead = acquire_read_ahead();
            self.read_ahead.extend_from_slice(&prefix);
            self.undecided = Some(size);
        } else if size >= LARGE_FRAME_BYTES_MIN {
            self.large_frame = Some(LargeFrame {
                payload: zeroed_room(size),
                size,
            });
        } else {
            self.read_ahead = acquire_read_ahead();
            self.read_ahead.extend_from_slice(&prefix);
        }
        Ok(true)
    }

    /// Reads more of the partial frame at the front of the read-ahead buffer (and whatever
    /// follows it, up to the buffer's room), first moving it to a large frame or to a fresh
    /// buffer if it does not fit in this one.
    async fn fill_read_ahead<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<(), FrameError> {
        let frame_total = self
            .announced_size()?
            .map_or(SIZE_PREFIX_BYTES, |size| SIZE_PREFIX_BYTES + size);
        if frame_total > self.read_ahead.capacity() {
            let size = frame_total - SIZE_PREFIX_BYTES;
            if size >= LARGE_FRAME_BYTES_MIN && !self.streamed_api_keys.is_empty() {
                self.undecided = Some(size);
                return Ok(());
            }
            if size >= LARGE_FRAME_BYTES_MIN {
                self.start_large_frame(size);
                return Ok(());
            }
            self.move_to_fresh_read_ahead();
        }
        let read = reader.read(spare(&mut self.read_ahead, usize::MAX)).await?;
        if read == 0 {
            return Err(FrameError::Truncated {
                received: self.read_ahead.len(),
                expected: frame_total,
            });
        }
        commit(&mut self.read_ahead, read);
        Ok(())
    }

    /// Reads the request header's API key of a large frame (a little more, never past the
    /// frame's end, if it has not arrived) and streams the frame or reads it whole.
    async fn decide_large_frame<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        size: usize,
    ) -> Result<Option<NextFrame>, FrameError> {
        const API_KEY_BYTES: usize = 2;
        if self.read_ahead.len() < SIZE_PREFIX_BYTES + API_KEY_BYTES {
            if spare_len(&self.read_ahead) < STREAMED_BUFFERED_BYTES {
                self.move_to_fresh_read_ahead();
            }
            let unread = SIZE_PREFIX_BYTES + size - self.read_ahead.len();
            let limit = unread.min(STREAMED_BUFFERED_BYTES);
            let read = reader.read(spare(&mut self.read_ahead, limit)).await?;
            if read == 0 {
                return Err(FrameError::Truncated {
                    received: self.read_ahead.len(),
                    expected: SIZE_PREFIX_BYTES + size,
                });
            }
            commit(&mut self.read_ahead, read);
            return Ok(None);
        }
        self.undecided = None;
        let at = SIZE_PREFIX_BYTES;
        let api_key = i16::from_be_bytes([self.read_ahead[at], self.read_ahead[at + 1]]);
        if self.streamed_api_keys.contains(&api_key) {
            self.read_ahead.advance(SIZE_PREFIX_BYTES);
            self.streamed = Some(size);
            self.streamed_size = size;
            return Ok(Some(NextFrame::Streamed(size)));
        }
        self.start_large_frame(size);
        Ok(None)
    }

    /// Moves the start of a large frame out of the read-ahead buffer into an allocation of
    /// the frame's size.
    fn start_large_frame(&mut self, size: usize) {
        let mut payload = zeroed_room(size);
        let received = &self.read_ahead[SIZE_PREFIX_BYTES..];
        assert!(received.len() < size);
        payload.extend_from_slice(received);
        self.read_ahead.clear();
        self.large_frame = Some(LargeFrame { payload, size });
    }

    /// Reads more of the large frame, never past its end (what follows stays in the socket).
    async fn fill_large_frame<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<(), FrameError> {
        let Some(large) = self.large_frame.as_mut() else {
            return Ok(());
        };
        let missing = large.size - large.payload.len();
        let read = reader.read(spare(&mut large.payload, missing)).await?;
        if read == 0 {
            return Err(FrameError::Truncated {
                received: SIZE_PREFIX_BYTES + large.payload.len(),
                expected: SIZE_PREFIX_BYTES + large.size,
            });
        }
        commit(&mut large.payload, read);
        Ok(())
    }

    /// Moves the partial frame at the front to the start of a buffer with full room: this
    /// one, if no frame handed out still shares it, or one from the pool.
    fn move_to_fresh_read_ahead(&mut self) {
        let partial = self.read_ahead.len();
        if self.read_ahead.try_reclaim(READ_AHEAD_BYTES - partial) {
            return;
        }
        let mut fresh = acquire_read_ahead();
        assert!(partial <= spare_len(&fresh));
        fresh.extend_from_slice(&self.read_ahead);
        self.read_ahead = fresh;
    }

    /// Lets go of the (empty) read-ahead buffer: back to the pool if no frame handed out
    /// still shares it, else it is freed with the last such frame.
    fn release_read_ahead(&mut self) {
        let mut buffer = std::mem::take(&mut self.read_ahead);
        assert!(buffer.is_empty());
        if buffer.capacity() == 0 || !buffer.try_reclaim(READ_AHEAD_BYTES) {
            return;
        }
        assert_eq!(buffer.capacity(), READ_AHEAD_BYTES);
        READ_AHEAD_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOLED_READ_AHEAD_MAX {
                pool.push(buffer);
            }
        });
    }
}

/// Reads into `target` if the reader has bytes (or an end of stream, or an error) now;
/// `None` if the read would have to wait.
async fn read_now<R: AsyncRead + Unpin>(
    reader: &mut R,
    target: &mut [u8],
) -> Option<std::io::Result<usize>> {
    poll_fn(
        |context| match Pin::new(&mut *reader).poll_read(context, target) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Ready(None),
        },
    )
    .await
}

/// The next size prefix, or `None` at a clean end of stream (before its first byte).
async fn read_size_prefix<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<[u8; SIZE_PREFIX_BYTES]>, FrameError> {
    let mut prefix = [0u8; SIZE_PREFIX_BYTES];
    let mut received = 0;
    while received < SIZE_PREFIX_BYTES {
        match reader.read(&mut prefix[received..]).await? {
            0 if received == 0 => return Ok(None),
            0 => {
                return Err(FrameError::Truncated {
                    received,
                    expected: SIZE_PREFIX_BYTES,
                })
            }
            read => received += read,
        }
    }
    Ok(Some(prefix))
}

fn spare_len(buffer: &BytesMut) -> usize {
    buffer.capacity() - buffer.len()
}

/// Up to `limit` bytes of `buffer`'s spare capacity, to read into.
fn spare(buffer: &mut BytesMut, limit: usize) -> &mut [u8] {
    let spare = buffer.spare_capacity_mut();
    let length = spare.len().min(limit);
    // SAFETY: every buffer this module reads into was allocated zeroed by `zeroed_room` and
    // is never grown (only split off from the front, cleared and reclaimed, which keep the
    // same allocation), so its spare capacity is initialised memory.
    unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), length) }
}

/// Makes the `read` bytes just read into `buffer`'s spare capacity part of it.
fn commit(buffer: &mut BytesMut, read: usize) {
    assert!(
        read <= spare_len(buffer),
        "a read returned more than it was given"
    );
    // SAFETY: the bytes are initialised (see `spare`) and within capacity (checked above).
    unsafe { buffer.set_len(buffer.len() + read) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};
    use futures_lite::io::Cursor;
    use std::collections::VecDeque;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    /// A socket whose bytes arrive in the given chunks; with no chunk left it would block
    /// (until more are pushed through a clone of `state`), or reports the end of stream once
    /// `closed`.
    #[derive(Default)]
    struct Socket {
        state: std::rc::Rc<std::cell::RefCell<SocketState>>,
    }

    #[derive(Default)]
    struct SocketState {
        chunks: VecDeque<Vec<u8>>,
        closed: bool,
        /// The size of every read that returned bytes.
        reads: Vec<usize>,
    }

    impl Socket {
        fn new(chunks: impl IntoIterator<Item = Vec<u8>>, closed: bool) -> Socket {
            let state = SocketState {
                chunks: chunks.into_iter().collect(),
                closed,
                reads: Vec::new(),
            };
            Socket {
                state: std::rc::Rc::new(std::cell::RefCell::new(state)),
            }
        }

        fn reads(&self) -> Vec<usize> {
            self.state.borrow().reads.clone()
        }
    }

    impl AsyncRead for Socket {
        fn poll_read(
            self: Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
            target: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut state = self.state.borrow_mut();
            let Some(chunk) = state.chunks.front_mut() else {
                return if state.closed {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            let read = chunk.len().min(target.len());
            target[..read].copy_from_slice(&chunk[..read]);
            chunk.drain(..read);
            if chunk.is_empty() {
                state.chunks.pop_front();
            }
            state.reads.push(target.len());
            Poll::Ready(Ok(read))
        }
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
    fn rejects_oversize_prefix_behind_a_read_ahead_frame() {
        let mut bytes = framed(&[b"fine"]);
        bytes.extend_from_slice(&2000i32.to_be_bytes());
        let mut cursor = Cursor::new(bytes);
        let mut reader = FrameReader::new(1024);
        block_on(async {
            assert_eq!(
                &reader.next_frame(&mut cursor).await.unwrap().unwrap()[..],
                b"fine"
            );
            let error = reader.next_frame(&mut cursor).await.unwrap_err();
            assert!(matches!(
                error,
                FrameError::TooLarge {
                    size: 2000,
                    max: 1024
                }
            ));
        });
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

    #[test]
    fn client_vanishing_mid_prefix_or_mid_large_frame_is_truncated() {
        let mut reader = FrameReader::new(1 << 20);
        let error = block_on(reader.next_frame(&mut Cursor::new(vec![0u8, 1]))).unwrap_err();
        assert!(matches!(
            error,
            FrameError::Truncated {
                received: 2,
                expected: 4
            }
        ));
        let mut bytes = 100_000i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1u8; 70_000]);
        let mut reader = FrameReader::new(1 << 20);
        let error = block_on(reader.next_frame(&mut Cursor::new(bytes))).unwrap_err();
        assert!(matches!(
            error,
            FrameError::Truncated {
                received: 70_004,
                expected: 100_004
            }
        ));
    }

    #[test]
    fn pipelined_small_frames_arrive_in_one_read() {
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|index| vec![index; 300]).collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut socket = Socket::new([framed(&slices)], true);
        let mut reader = FrameReader::new(1 << 20);
        block_on(async {
            for payload in &payloads {
                let frame = reader.next_frame(&mut socket).await.unwrap().unwrap();
                assert_eq!(&frame[..], &payload[..]);
            }
        });
        assert_eq!(socket.reads(), [READ_AHEAD_BYTES]);
    }

    #[test]
    fn idle_connection_holds_no_buffer_and_reuses_the_pooled_one() {
        let mut socket = Socket::new([framed(&[b"first"])], false);
        let mut reader = FrameReader::new(1 << 20);
        let first = block_on(reader.next_frame(&mut socket)).unwrap().unwrap();
        let first_address = first.as_ptr();
        let first_frame_bytes = SIZE_PREFIX_BYTES + b"first".len();
        assert_eq!(
            reader.buffered_capacity(),
            READ_AHEAD_BYTES - first_frame_bytes
        );
        drop(first);

        // Nothing to read: the reader waits holding no buffer.
        assert!(block_on(poll_once(reader.next_frame(&mut socket))).is_none());
        assert_eq!(reader.buffered_capacity(), 0);

        let arrived = framed(&[b"second", b"third"]);
        socket.state.borrow_mut().chunks.push_back(arrived);
        let second = block_on(reader.next_frame(&mut socket)).unwrap().unwrap();
        assert_eq!(&second[..], b"second");
        assert_eq!(
            second.as_ptr(),
            first_address,
            "the pooled buffer is reused"
        );
        assert_eq!(
            &block_on(reader.next_frame(&mut socket)).unwrap().unwrap()[..],
            b"third"
        );
        socket.state.borrow_mut().closed = true;
        assert!(block_on(reader.next_frame(&mut socket)).unwrap().is_none());
    }

    #[test]
    fn large_frame_is_read_into_one_allocation_of_its_size() {
        let size = 1_000_000;
        let payload: Vec<u8> = (0..size).map(|index| index as u8).collect();
        let bytes = framed(&[b"small", &payload, b"after"]);
        // The large frame starts inside the first read and arrives in 10 KiB pieces.
        let first_read = 30_000;
        let mut chunks = vec![bytes[..first_read].to_vec()];
        chunks.extend(bytes[first_read..].chunks(10 * 1024).map(<[u8]>::to_vec));
        let mut socket = Socket::new(chunks, true);
        let mut reader = FrameReader::new(1 << 20);
        block_on(async {
            let small = reader.next_frame(&mut socket).await.unwrap().unwrap();
            assert_eq!(&small[..], b"small");
            let large = reader.next_frame(&mut socket).await.unwrap().unwrap();
            assert_eq!(&large[..], &payload[..]);
            let large = large.try_into_mut().expect("nothing else shares the frame");
            assert_eq!(large.capacity(), size, "one allocation of the frame's size");
            let after = reader.next_frame(&mut socket).await.unwrap().unwrap();
            assert_eq!(&after[..], b"after");
        });
        // Between the first read and the one for "after", every read asked for exactly
        // the rest of the large frame: never more.
        let reads = socket.reads();
        let mut missing = size - (first_read - 2 * SIZE_PREFIX_BYTES - b"small".len());
        for &asked in &reads[1..reads.len() - 1] {
            assert_eq!(asked, missing);
            missing -= asked.min(10 * 1024);
        }
        assert_eq!(missing, 0);
    }

    #[test]
    fn large_frame_announced_while_idle_is_read_in_place() {
        let payload = vec![3u8; 200_000];
        let mut socket = Socket::new([], false);
        let arrivals = socket.state.clone();
        let mut reader = FrameReader::new(1 << 20);
        let mut next = Box::pin(reader.next_frame(&mut socket));
        // Idle: the reader waits for a size prefix.
        assert!(block_on(poll_once(&mut next)).is_none());
        arrivals.borrow_mut().chunks.push_back(framed(&[&payload]));
        let frame = block_on(next).unwrap().unwrap();
        assert_eq!(arrivals.borrow().reads, [SIZE_PREFIX_BYTES, payload.len()]);
        assert_eq!(frame.try_into_mut().unwrap().capacity(), payload.len());
    }

    #[test]
    fn small_frame_straddling_the_buffer_end_moves_to_a_fresh_buffer() {
        // Frames of 10,000 bytes: the seventh straddles the end of the first 64 KiB read.
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|index| vec![index; 9_996]).collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let bytes = framed(&slices);
        let chunks = bytes.chunks(READ_AHEAD_BYTES).map(<[u8]>::to_vec);
        let mut socket = Socket::new(chunks, true);
        let mut reader = FrameReader::new(1 << 20);
        let mut kept = Vec::new(); // keeps the buffers shared, so none can be reclaimed
        block_on(async {
            for payload in &payloads {
                let frame = reader.next_frame(&mut socket).await.unwrap().unwrap();
                assert_eq!(&frame[..], &payload[..]);
                kept.push(frame);
            }
            assert!(reader.next_frame(&mut socket).await.unwrap().is_none());
        });
    }

    /// A request-like payload: API key `api_key`, then bytes counting up.
    fn request(api_key: i16, size: usize) -> Vec<u8> {
        let mut payload = api_key.to_be_bytes().to_vec();
        payload.extend((2..size).map(|at| (at % 251) as u8));
        payload
    }

    /// Reads a streamed frame as the broker does: small fields, then a large piece.
    async fn read_in_pieces(
        reader: &mut FrameReader,
        socket: &mut Socket,
        pieces: &[usize],
    ) -> Result<Vec<u8>, FrameError> {
        let mut read = Vec::new();
        for &piece in pieces {
            let mut target = vec![0u8; piece.min(reader.streamed_remaining())];
            reader.read_streamed(socket, &mut target).await?;
            read.extend_from_slice(&target);
        }
        let mut rest = vec![0u8; reader.streamed_remaining()];
        reader.read_streamed(socket, &mut rest).await?;
        read.extend_from_slice(&rest);
        Ok(read)
    }

    #[test]
    fn large_frames_of_a_streamed_api_are_read_into_the_callers_memory() {
        let produce = request(0, 300_000);
        let fetch = request(1, 100_000);
        let bytes = framed(&[
            b"\x00\x12small",
            &produce,
            &fetch,
            &produce,
            b"\x00\x00after",
        ]);
        let mut socket = Socket::new(bytes.chunks(50_000).map(<[u8]>::to_vec), true);
        let mut reader = FrameReader::new(1 << 20).stream_api_key(0);
        block_on(async {
            let Some(NextFrame::Whole(small)) = reader.next(&mut socket).await.unwrap() else {
                panic!("a small frame is whole")
            };
            assert_eq!(&small[..], b"\x00\x12small");
            let Some(NextFrame::Streamed(size)) = reader.next(&mut socket).await.unwrap() else {
                panic!("a large produce is streamed")
            };
            assert_eq!(size, produce.len());
            let reads_before = socket.reads().len();
            let read = read_in_pieces(&mut reader, &mut socket, &[2, 2, 4, 7, 100])
                .await
                .unwrap();
            assert_eq!(read, produce);
            // The large piece was read from the socket straight into its target: reads of
            // the socket's 50,000-byte arrivals, each asking for the rest of the frame.
            let direct: Vec<usize> = socket.reads()[reads_before..]
                .iter()
                .copied()
                .filter(|asked| *asked > STREAMED_BUFFERED_BYTES)
                .collect();
            assert!(direct.len() >= 5, "{direct:?}");
            assert!(direct.windows(2).all(|pair| pair[0] - pair[1] == 50_000));
            let Some(NextFrame::Whole(fetch_frame)) = reader.next(&mut socket).await.unwrap()
            else {
                panic!("other APIs are read whole")
            };
            assert_eq!(&fetch_frame[..], &fetch[..]);
            let Some(NextFrame::Streamed(_)) = reader.next(&mut socket).await.unwrap() else {
                panic!("a large produce is streamed")
            };
            let read = read_in_pieces(&mut reader, &mut socket, &[61, 5000])
                .await
                .unwrap();
            assert_eq!(read, produce);
            let Some(NextFrame::Whole(after)) = reader.next(&mut socket).await.unwrap() else {
                panic!("a small frame is whole")
            };
            assert_eq!(&after[..], b"\x00\x00after");
            assert!(reader.next(&mut socket).await.unwrap().is_none());
        });
    }

    #[test]
    fn a_streamed_frame_cut_short_is_truncated() {
        let produce = request(0, 100_000);
        let bytes = framed(&[&produce]);
        for cut in [5, 6, 3_000, 70_000] {
            let mut socket = Socket::new([bytes[..cut].to_vec()], true);
            let mut reader = FrameReader::new(1 << 20).stream_api_key(0);
            let error = block_on(async {
                match reader.next(&mut socket).await? {
                    Some(NextFrame::Streamed(_)) => {
                        read_in_pieces(&mut reader, &mut socket, &[10]).await?;
                        panic!("read past the end")
                    }
                    other => panic!("{other:?}"),
                }
                #[allow(unreachable_code)]
                Ok::<(), FrameError>(())
            })
            .unwrap_err();
            assert!(
                matches!(error, FrameError::Truncated { received, expected: 100_004 } if received == cut),
                "cut at {cut}: {error:?}"
            );
        }
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

        #[test]
        fn streamed_frames_survive_any_chunking_and_piece_sizes(
            sizes in proptest::collection::vec(1usize..200_000, 1..8),
            chunk_bytes in 1usize..70_000,
            piece_bytes in 1usize..10_000,
        ) {
            let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, &size)| {
                let mut payload = request((index % 2) as i16, size.max(2));
                payload[2] = index as u8;
                payload
            }).collect();
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let bytes = framed(&slices);
            let mut socket = Socket::new(bytes.chunks(chunk_bytes).map(<[u8]>::to_vec), true);
            let mut reader = FrameReader::new(1 << 20).stream_api_key(0);
            block_on(async {
                for payload in &payloads {
                    let frame = match reader.next(&mut socket).await.unwrap().unwrap() {
                        NextFrame::Whole(frame) => frame.to_vec(),
                        NextFrame::Streamed(size) => {
                            assert_eq!(payload[..2], [0, 0], "only API key 0 is streamed");
                            assert!(size >= LARGE_FRAME_BYTES_MIN);
                            read_in_pieces(&mut reader, &mut socket, &[2, 1, piece_bytes, 3]).await.unwrap()
                        }
                    };
                    assert_eq!(&frame[..], &payload[..]);
                }
                assert!(reader.next(&mut socket).await.unwrap().is_none());
            });
        }

        #[test]
        fn frames_survive_any_chunking(
            sizes in proptest::collection::vec(1usize..40_000, 1..12),
            chunk_bytes in 1usize..70_000,
        ) {
            let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, &size)| vec![index as u8; size]).collect();
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let bytes = framed(&slices);
            let mut socket = Socket::new(bytes.chunks(chunk_bytes).map(<[u8]>::to_vec), true);
            let mut reader = FrameReader::new(1 << 20);
            block_on(async {
                for payload in &payloads {
                    let frame = reader.next_frame(&mut socket).await.unwrap().unwrap();
                    assert_eq!(&frame[..], &payload[..]);
                }
                assert!(reader.next_frame(&mut socket).await.unwrap().is_none());
            });
        }
    }
}
