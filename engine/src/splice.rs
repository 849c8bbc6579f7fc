//! Zero-copy sends: a file range goes to a socket through a pipe with `IORING_OP_SPLICE`,
//! without passing through user space and without blocking the shard.
//!
//! glommio 0.9 has no splice or sendfile operation, so a [`Splicer`] drives its own small
//! io_uring (the `io-uring` crate). The kernel runs a splice that cannot finish at once (the
//! file's pages are not in the page cache yet, or the socket's send buffer is full) in its
//! io-wq worker threads, never on the shard's thread. The ring signals completions on an
//! eventfd, and the shard awaits that eventfd with an ordinary glommio read, so the executor
//! keeps running other tasks meanwhile. A plain `sendfile(2)` would instead stall the whole
//! shard for as long as the disk takes to read the range (measured in BENCHMARKS.md,
//! "Fetch path").
//!
//! Each round moves at most one pipe's worth (1 MiB): a splice from the file into the pipe,
//! linked to a splice from the pipe into the socket. A short first step breaks the link; what
//! is left in the pipe is then drained on its own.
//!
//! Concurrency contract: a `Splicer` belongs to one task of one shard (a connection's writer):
//! it is `!Send` and runs one send at a time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use glommio::io::BufferedFile;
use io_uring::{opcode, squeue, types, IoUring};

/// Bytes a pipe holds (the default `/proc/sys/fs/pipe-max-size`); one splice round moves at
/// most this much.
pub const PIPE_BYTES: usize = 1024 * 1024;

const FILL: u64 = 1;
const DRAIN: u64 = 2;

/// A private io_uring, a pipe and an eventfd, for splicing file ranges into sockets.
pub struct Splicer {
    ring: IoUring,
    pipe_read: OwnedFd,
    pipe_write: OwnedFd,
    /// The ring's completion eventfd, read through glommio so that waiting is asynchronous.
    eventfd: BufferedFile,
    /// Bytes sitting in the pipe, spliced in but not yet out (after a send failed midway).
    in_pipe: usize,
    /// Entries submitted whose completions have not been reaped.
    in_flight: usize,
}

impl Splicer {
    /// A ring with room for one round, a 1 MiB pipe, and the eventfd. Must be called on a
    /// glommio executor.
    pub fn new() -> io::Result<Splicer> {
        let ring = IoUring::new(4)?;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded; we own both descriptors.
        let (pipe_read, pipe_write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A smaller pipe only means more rounds; do not fail over it.
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        unsafe {
            libc::fcntl(
                pipe_write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as i32,
            )
        };
        // SAFETY: plain eventfd creation.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh eventfd that only this BufferedFile owns.
        let eventfd = unsafe { BufferedFile::from_raw_fd(eventfd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Splicer {
            ring,
            pipe_read,
            pipe_write,
            eventfd,
            in_pipe: 0,
            in_flight: 0,
        })
    }

    /// Sends `length` bytes of `file` from `position` into `socket`. Returns when every byte
    /// is in the socket's send buffer. An error leaves the socket in an unknown state: the
    /// caller closes the connection.
    pub async fn send_file(
        &mut self,
        socket: RawFd,
        file: RawFd,
        position: u64,
        length: usize,
    ) -> io::Result<()> {
        if self.in_pipe != 0 {
            return Err(io::Error::other(
                "splice pipe holds bytes of an earlier failed send",
            ));
        }
        let mut file_position = position;
        let mut left_in_file = length;
        let mut sent = 0usize;
        while sent < length {
            let fill = if self.in_pipe == 0 {
                left_in_file.min(PIPE_BYTES)
            } else {
                0
            };
            let drain = if fill > 0 { fill } else { self.in_pipe };
            self.submit_round(socket, file, file_position, fill, drain)?;
            let (filled, drained) = self.complete_round(fill > 0).await?;
            match filled {
                Some(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before position {file_position}"),
                    ))
                }
                Some(bytes) if bytes < 0 => return Err(io::Error::from_raw_os_error(-bytes)),
                Some(bytes) => {
                    file_position += bytes as u64;
                    left_in_file -= bytes as usize;
                    self.in_pipe += bytes as usize;
                }
                None => {}
            }
            match drained {
                // Canceled: the fill was short and broke the link; drain on its own next.
                bytes if bytes == -libc::ECANCELED => {}
                bytes if bytes < 0 => return Err(io::Error::from_raw_os_error(-bytes)),
                0 if self.in_pipe > 0 => return Err(io::ErrorKind::WriteZero.into()),
                bytes => {
                    self.in_pipe -= bytes as usize;
                    sent += bytes as usize;
                }
            }
        }
        Ok(())
    }

    fn submit_round(
        &mut self,
        socket: RawFd,
        file: RawFd,
        file_position: u64,
        fill: usize,
        drain: usize,
    ) -> io::Result<()> {
        let pipe_write = types::Fd(self.pipe_write.as_raw_fd());
        let pipe_read = types::Fd(self.pipe_read.as_raw_fd());
        let drain_entry = opcode::Splice::new(pipe_read, -1, types::Fd(socket), -1, drain as u32)
            .flags(libc::SPLICE_F_MOVE)
            .build()
            .user_data(DRAIN);
        let mut queue = self.ring.submission();
        // SAFETY: the entries reference only descriptors that outlive the round (the caller's
        // file and socket are borrowed for the whole send; the pipe is ours), and no buffers.
        unsafe {
            if fill > 0 {
                let fill_entry = opcode::Splice::new(
                    types::Fd(file),
                    file_position as i64,
                    pipe_write,
                    -1,
                    fill as u32,
                )
                .flags(libc::SPLICE_F_MOVE)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(FILL);
                queue
                    .push(&fill_entry)
                    .map_err(|_| io::Error::other("splice ring full"))?;
            }
            queue
                .push(&drain_entry)
                .map_err(|_| io::Error::other("splice ring full"))?;
        }
        drop(queue);
        self.in_flight += if fill > 0 { 2 } else { 1 };
        self.ring.submit()?;
        Ok(())
    }

    /// Awaits the round's completions: the fill's result (if there was a fill) and the
    /// drain's. Waiting reads the eventfd through glommio, so the shard keeps running.
    async fn complete_round(&mut self, with_fill: bool) -> io::Result<(Option<i32>, i32)> {
        let mut filled: Option<i32> = None;
        let mut drained: Option<i32> = None;
        loop {
            for entry in self.ring.completion() {
                self.in_flight -= 1;
                match entry.user_data() {
                    FILL => filled = Some(entry.result()),
                    DRAIN => drained = Some(entry.result()),
                    _ => {} // a cancel's own completion
                }
            }
            if let Some(drained) = drained {
                if filled.is_some() || !with_fill {
                    return Ok((filled, drained));
                }
            }
            // The counter may be stale (a completion already reaped); then the loop just
            // looks at the queue once more.
            self.eventfd.read_at(0, 8).await?;
        }
    }
}

impl Drop for Splicer {
    /// A send abandoned midway (its connection closed) may leave splices in the kernel that
    /// name the caller's socket and file descriptors: cancel them and wait, so that they never
    /// run against a descriptor number reused after the caller closes it.
    fn drop(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        let mut queue = self.ring.submission();
        for target in [FILL, DRAIN] {
            let cancel = opcode::AsyncCancel::new(target).build().user_data(0);
            // SAFETY: a cancel entry references no memory.
            let _ = unsafe { queue.push(&cancel) };
        }
        drop(queue);
        let _ = self.ring.submit_and_wait(self.in_flight + 2);
    }
}

/// A file of `length` patterned bytes (no run repeats at a pipe's or a page's period) in
/// `dir`, and its bytes: what the tests of sending file ranges send.
#[cfg(test)]
pub(crate) fn patterned_file(
    dir: &std::path::Path,
    length: usize,
) -> (std::path::PathBuf, Vec<u8>) {
    use std::io::Write;
    let path = dir.join("data");
    let data: Vec<u8> = (0..length)
        .map(|number| (number * 7 + number / 4096) as u8)
        .collect();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    (path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn splices_a_file_range_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = patterned_file(dir.path(), 3 * PIPE_BYTES + 12_345);
        let (sender, mut receiver) = std::os::unix::net::UnixStream::pair().unwrap();
        let (start, length) = (1_000usize, data.len() - 5_000);
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            receiver.read_to_end(&mut received).unwrap();
            received
        });
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(spate_storage::wakeup::guarded(async move {
                let file = std::fs::File::open(&path).unwrap();
                let mut splicer = Splicer::new().unwrap();
                splicer
                    .send_file(sender.as_raw_fd(), file.as_raw_fd(), start as u64, length)
                    .await
                    .unwrap();
                drop(sender);
            }));
        assert!(reader.join().unwrap() == data[start..start + length]);
    }
}
