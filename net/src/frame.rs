//! Size-prefixed framing: every Kafka request and response is `[length: i32][payload]`.
//!
//! [`FrameReader`] cuts one connection's byte stream into frames, with three aims:
//!
//! - A burst of small pipelined requests costs one read system call: they are read ahead into
//!   one buffer of [`READ_AHEAD_BYTES`], and each is handed out as a [`Bytes`] that shares it
//!   (decoded record batches are slices of it: no copy).
//! - A large frame (payload of [`LARGE_FRAME_BYTES_MIN`] or more) is read into an allocation
//!   of its own, which doubles as bytes arrive, up to the frame's size: what a client claims is
//!   never allocated before it is sent, so a few lying bytes cannot reserve 100 MB.
//! - With a [`MemoryBudget`], a large frame's size is reserved from it before its body is read:
//!   when the thread's connections hold the whole budget, the reader stops reading its socket
//!   (back-pressure) until answered requests give bytes back. With a receive timeout, a large
//!   frame must arrive whole within it, so a client trickling bytes cannot hold a reservation
//!   for ever.
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
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

pub use crate::budget::{MemoryBudget, Reservation};

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
    /// A large frame did not arrive whole within the receive timeout of its start.
    #[error("large request not received whole within {0:?} of its start")]
    TimedOut(Duration),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Makes a future that completes after the given time: the reader's clock, injected so that
/// this crate stays independent of the runtime.
pub type Sleep = Rc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()>>>>;

/// A running receive deadline: the timeout, and the sleep that ends with it.
type Deadline = (Duration, Pin<Box<dyn Future<Output = ()>>>);

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
    /// Where large frames reserve their size, if anywhere.
    budget: Option<Rc<MemoryBudget>>,
    /// The reservation of the last large frame, until the caller takes it.
    reservation: Option<Reservation>,
    /// How long a large frame may take to arrive, and the clock to time it with.
    receive_timeout: Option<(Duration, Sleep)>,
    /// The running large frame's deadline.
    deadline: Option<Deadline>,
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
    /// The payload received so far; its capacity doubles as it fills, up to `size`.
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
            budget: None,
            reservation: None,
            receive_timeout: None,
            deadline: None,
        }
    }

    /// Changes the largest frame accepted from the next frame on (a SASL listener reads with a
    /// small limit until the client has authenticated).
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// Changes which APIs' large frames are streamed, from the next frame on (none until a
    /// SASL client has authenticated, so that nothing is written for an anonymous one).
    pub fn set_streamed_api_keys(&mut self, api_keys: &[i16]) {
        self.streamed_api_keys = api_keys.to_vec();
    }

    /// Large frames reserve their size from `budget` before their body is read, waiting (and
    /// so not reading the socket) while it is spent. Take each frame's reservation with
    /// [`Self::take_reservation`] and keep it until the request is answered.
    pub fn with_budget(mut self, budget: Rc<MemoryBudget>) -> FrameReader {
        self.budget = Some(budget);
        self
    }

    /// A large frame must arrive whole within `timeout` of the moment its body starts to be
    /// read, else [`FrameError::TimedOut`]: Kafka clients give up on a request after their
    /// `request.timeout.ms` anyway, and a reservation must not be held by a trickle.
    pub fn with_receive_timeout(mut self, timeout: Duration, sleep: Sleep) -> FrameReader {
        self.receive_timeout = Some((timeout, sleep));
        self
    }

    /// The budget reservation of the frame just handed out, if it took one.
    pub fn take_reservation(&mut self) -> Option<Reservation> {
        self.reservation.take()
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
                let read = read_by(&mut self.deadline, reader, &mut target[filled..]).await?;
                filled += read;
                read
            } else {
                if spare_len(&self.read_ahead) < STREAMED_BUFFERED_BYTES {
                    self.release_read_ahead();
                    self.read_ahead = acquire_read_ahead();
                }
                let limit = unread.min(STREAMED_BUFFERED_BYTES);
                let read = read_by(
                    &mut self.deadline,
                    reader,
                    spare(&mut self.read_ahead, limit),
                )
                .await?;
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
        if left == 0 {
            self.deadline = None;
        }
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
            self.deadline = None;
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
        if size >= LARGE_FRAME_BYTES_MIN {
            self.begin_large_frame(size).await;
        }
        if size >= LARGE_FRAME_BYTES_MIN && !self.streamed_api_keys.is_empty() {
            self.read_ahead = acquire_read_ahead();
            self.read_ahead.extend_from_slice(&prefix);
            self.undecided = Some(size);
        } else if size >= LARGE_FRAME_BYTES_MIN {
            self.large_frame = Some(LargeFrame {
                payload: zeroed_room(first_room(size, 0)),
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
            if size >= LARGE_FRAME_BYTES_MIN {
                self.begin_large_frame(size).await;
            }
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
            let read = read_by(
                &mut self.deadline,
                reader,
                spare(&mut self.read_ahead, limit),
            )
            .await?;
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
        let received = &self.read_ahead[SIZE_PREFIX_BYTES..];
        let mut payload = zeroed_room(first_room(size, received.len()));
        assert!(received.len() < size);
        payload.extend_from_slice(received);
        self.read_ahead.clear();
        // The frame's bytes come straight into its own allocation: hold no read-ahead meanwhile.
        self.release_read_ahead();
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
        if spare_len(&large.payload) == 0 {
            // Full: double, up to the frame's size. The copies add up to less than the frame.
            let mut grown = zeroed_room(large.size.min(2 * large.payload.capacity()));
            grown.extend_from_slice(&large.payload);
            large.payload = grown;
        }
        let missing = large.size - large.payload.len();
        let read = read_by(
            &mut self.deadline,
            reader,
            spare(&mut large.payload, missing),
        )
        .await?;
        if read == 0 {
            return Err(FrameError::Truncated {
                received: SIZE_PREFIX_BYTES + large.payload.len(),
                expected: SIZE_PREFIX_BYTES + large.size,
            });
        }
        commit(&mut large.payload, read);
        Ok(())
    }

    /// A large frame of `size` starts: reserve its size from the budget (waiting while it is
    /// spent) and start its receive deadline.
    async fn begin_large_frame(&mut self, size: usize) {
        if let Some(budget) = &self.budget {
            // Drop an untaken reservation first: its frame is gone.
            self.reservation = None;
            self.reservation = Some(budget.reserve(SIZE_PREFIX_BYTES + size).await);
        }
        self.deadline = self
            .receive_timeout
            .as_ref()
            .map(|(timeout, sleep)| (*timeout, sleep(*timeout)));
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

/// Reads into `target`, or fails with [`FrameError::TimedOut`] once `deadline`, if any, has
/// passed.
async fn read_by<R: AsyncRead + Unpin>(
    deadline: &mut Option<Deadline>,
    reader: &mut R,
    target: &mut [u8],
) -> Result<usize, FrameError> {
    poll_fn(|context| {
        if let Some((timeout, sleep)) = deadline.as_mut() {
            if sleep.as_mut().poll(context).is_ready() {
                return Poll::Ready(Err(FrameError::TimedOut(*timeout)));
            }
        }
        Pin::new(&mut *reader)
            .poll_read(context, target)
            .map_err(FrameError::from)
    })
    .await
}

/// The first allocation for a large frame of `size` of which `received` bytes have arrived:
/// room for a read-ahead buffer's worth more, never more than the frame.
fn first_room(size: usize, received: usize) -> usize {
    size.min(received + READ_AHEAD_BYTES)
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
#[path = "frame_tests.rs"]
mod tests;
