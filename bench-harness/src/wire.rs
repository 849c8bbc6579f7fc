//! Kafka framing on the harness's sockets: a size prefix (i32, big-endian) and a body. The
//! blocking reader serves the consumer threads; [`FrameBuffer`] serves the event-driven
//! producers and the sink, where one `recv` may carry several small responses.

use std::io::Read;

use anyhow::{bail, Context};
use bytes::Buf;
use futures_lite::{AsyncRead, AsyncReadExt};

/// Largest frame accepted (a Fetch response of 64 MiB plus headers fits).
pub const FRAME_BYTES_MAX: usize = 1 << 28;

/// Reads one size-prefixed frame into `frame` (without the prefix).
pub fn read_frame<R: Read + ?Sized>(reader: &mut R, frame: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut prefix = [0u8; 4];
    reader
        .read_exact(&mut prefix)
        .context("the broker closed the connection")?;
    let size = frame_size(prefix)?;
    frame.resize(size, 0);
    reader.read_exact(frame)?;
    Ok(())
}

fn frame_size(prefix: [u8; 4]) -> anyhow::Result<usize> {
    let size = (&prefix[..]).get_i32();
    match usize::try_from(size) {
        Ok(size) if size <= FRAME_BYTES_MAX => Ok(size),
        _ => bail!("frame of invalid size {size}"),
    }
}

/// A receive buffer that hands out whole frames from an async stream. It reads as much as
/// the socket has (up to the buffer's size) per call, so a connection with several
/// responses waiting costs one `recv`, not two per response.
pub struct FrameBuffer {
    bytes: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// End of the received bytes.
    end: usize,
}

impl FrameBuffer {
    /// A buffer of `capacity` bytes (grown when a frame is larger).
    pub fn new(capacity: usize) -> FrameBuffer {
        FrameBuffer {
            bytes: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// The next frame's body (without the size prefix), reading from `stream` as needed.
    /// Fails when the peer closes the connection, even between frames.
    pub async fn next_frame<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> anyhow::Result<&[u8]> {
        let size = loop {
            if let Some(size) = self.complete_frame()? {
                break size;
            }
            self.make_room();
            let read = stream.read(&mut self.bytes[self.end..]).await?;
            if read == 0 {
                bail!("the peer closed the connection");
            }
            self.end += read;
        };
        let body = self.start + 4..self.start + 4 + size;
        self.start = body.end;
        Ok(&self.bytes[body])
    }

    /// The size of the frame at `start` if all of it has arrived.
    fn complete_frame(&self) -> anyhow::Result<Option<usize>> {
        let available = self.end - self.start;
        if available < 4 {
            return Ok(None);
        }
        let prefix: [u8; 4] = self.bytes[self.start..self.start + 4]
            .try_into()
            .expect("4 bytes");
        let size = frame_size(prefix)?;
        Ok((available >= 4 + size).then_some(size))
    }

    /// Moves the unconsumed bytes to the front, and grows the buffer if the frame in
    /// progress cannot fit.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let needed = match self.bytes.get(..4).filter(|_| self.end >= 4) {
            Some(prefix) => 4 + frame_size(prefix.try_into().expect("4 bytes")).unwrap_or(0),
            None => 4,
        };
        if needed > self.bytes.len() {
            self.bytes.resize(needed, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for body in bodies {
            bytes.extend_from_slice(&(body.len() as i32).to_be_bytes());
            bytes.extend_from_slice(body);
        }
        bytes
    }

    /// A stream that returns at most `chunk` bytes per read, to split frames anywhere.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buffer: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let count = self.chunk.min(buffer.len()).min(self.bytes.len() - self.at);
            let at = self.at;
            buffer[..count].copy_from_slice(&self.bytes[at..at + count]);
            self.at += count;
            std::task::Poll::Ready(Ok(count))
        }
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let big = vec![7u8; 300];
        let bodies: [&[u8]; 4] = [b"one", b"", &big, b"last"];
        for chunk in [1, 3, 5, 64, 1000] {
            let mut stream = Trickle {
                bytes: framed(&bodies),
                at: 0,
                chunk,
            };
            let mut buffer = FrameBuffer::new(64);
            futures_lite::future::block_on(async {
                for body in bodies {
                    assert_eq!(buffer.next_frame(&mut stream).await.unwrap(), body);
                }
                // The stream is exhausted: end of stream is an error, not a hang.
                assert!(buffer.next_frame(&mut stream).await.is_err());
            });
        }
    }

    #[test]
    fn a_negative_size_is_refused() {
        let mut stream = Trickle {
            bytes: (-5i32).to_be_bytes().to_vec(),
            at: 0,
            chunk: 10,
        };
        let mut buffer = FrameBuffer::new(64);
        let outcome = futures_lite::future::block_on(buffer.next_frame(&mut stream));
        assert!(outcome.is_err());
    }
}
