//! Tests of `FrameReader`: framing, read-ahead and pooled buffers, large frames, and
//! streamed frames read piece by piece.
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
fn large_frame_is_read_into_room_that_grows_to_its_size() {
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
        assert_eq!(
            large.capacity(),
            size,
            "room grown exactly to the frame's size"
        );
        let after = reader.next_frame(&mut socket).await.unwrap().unwrap();
        assert_eq!(&after[..], b"after");
    });
    // The frame's room doubled as it filled: no read asked for more than half of it (a
    // lying size costs only what arrives), and every byte of "after" stayed in the socket
    // for the read after the frame (checked by its contents above).
    let reads = socket.reads();
    assert!(reads[1..reads.len() - 1]
        .iter()
        .all(|&asked| asked <= size / 2));
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
    // The payload is read into room that doubles: 64 KiB, then up to the frame's size.
    assert_eq!(
        arrivals.borrow().reads,
        [
            SIZE_PREFIX_BYTES,
            READ_AHEAD_BYTES,
            READ_AHEAD_BYTES,
            200_000 - 2 * READ_AHEAD_BYTES
        ]
    );
    assert_eq!(frame.try_into_mut().unwrap().capacity(), payload.len());
}

#[test]
fn a_lying_size_prefix_allocates_only_what_arrives() {
    // 100 MB announced, 10 bytes sent: the reader holds a read-ahead buffer's worth at most.
    let mut prefix = (100_000_000i32).to_be_bytes().to_vec();
    prefix.extend_from_slice(&[0u8; 10]);
    let mut socket = Socket::new([prefix], false);
    let mut reader = FrameReader::new(100 << 20);
    let mut next = Box::pin(reader.next_frame(&mut socket));
    assert!(block_on(poll_once(&mut next)).is_none());
    drop(next);
    assert!(reader.buffered_capacity() <= READ_AHEAD_BYTES + 10);
}

#[test]
fn large_frames_reserve_their_size_and_wait_while_the_budget_is_spent() {
    let budget = MemoryBudget::new(300_000);
    let payload = vec![5u8; 200_000];
    let mut first_socket = Socket::new([framed(&[&payload])], true);
    let mut first = FrameReader::new(1 << 20).with_budget(budget.clone());
    block_on(async {
        first.next_frame(&mut first_socket).await.unwrap().unwrap();
    });
    let held = first.take_reservation().expect("a large frame reserves");
    assert_eq!((held.bytes(), budget.in_use()), (200_004, 200_004));
    // A second large frame does not fit: its reader waits without reading the body.
    let mut second_socket = Socket::new([framed(&[&payload])], true);
    let second_state = second_socket.state.clone();
    let reads_of =
        |state: &std::rc::Rc<std::cell::RefCell<SocketState>>| state.borrow().reads.clone();
    let mut second = FrameReader::new(1 << 20).with_budget(budget.clone());
    {
        let mut next = Box::pin(second.next_frame(&mut second_socket));
        assert!(block_on(poll_once(&mut next)).is_none());
        assert!(block_on(poll_once(&mut next)).is_none());
        // Only the read-ahead buffer's worth came in before the reservation.
        assert_eq!(reads_of(&second_state), [READ_AHEAD_BYTES]);
        drop(held); // the first request is answered
        let frame = block_on(next).unwrap().unwrap();
        assert_eq!(frame.len(), payload.len());
    }
    assert_eq!(budget.waited(), 1);
    drop(second.take_reservation());
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_large_frame_that_does_not_arrive_in_time_times_out() {
    let mut socket = Socket::new([(200_000i32).to_be_bytes().to_vec(), vec![0; 100]], false);
    // A clock whose sleeps are already over.
    let sleep: Sleep = Rc::new(|_| Box::pin(std::future::ready(())));
    let mut reader = FrameReader::new(1 << 20).with_receive_timeout(Duration::from_secs(30), sleep);
    let error = block_on(reader.next_frame(&mut socket)).unwrap_err();
    assert!(matches!(error, FrameError::TimedOut(timeout) if timeout == Duration::from_secs(30)));
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
        let Some(NextFrame::Whole(fetch_frame)) = reader.next(&mut socket).await.unwrap() else {
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
            let mut payload = request((index % 2) as i16, size.max(3));
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
