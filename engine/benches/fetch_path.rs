//! The fetch path's alternatives, on the same file, cold (page cache dropped) and warm:
//!
//! - `odirect-copy`: O_DIRECT read into an aligned buffer, copy into the response, write
//!   (what Spate did before the tail cache);
//! - `odirect-write`: O_DIRECT read, write straight from the aligned buffer (no copy);
//! - `odirect-write-ahead`: the same with the next read in flight while writing;
//! - `buffered-read-write`: read(2) through the page cache into a buffer, write;
//! - `sendfile-blocking`: a buffered read-only fd, `sendfile(2)` to a blocking socket (on a
//!   shard this stalls the executor for every disk read);
//! - `splice-uring`: a buffered read-only fd, file → pipe → socket with IORING_OP_SPLICE
//!   ([`spate_engine::splice::Splicer`]), awaited without blocking the executor.
//!
//! Each "fetch" moves `FETCH_BYTES` (1 MiB, a consumer's default `max.partition.fetch.bytes`)
//! to a loopback TCP socket; a receiver thread on the other CPU drains it. Methods are
//! interleaved round by round so that noise from other processes spreads over all of them.
//! Reports the median MB/s and the sending side's CPU-seconds per GiB (process CPU time minus
//! the receiver thread's, so it includes io_uring's kernel workers).
//!
//! Environment: `FETCH_BENCH_MIB` (file size, default 512), `FETCH_BENCH_ROUNDS` (default 3),
//! `FETCH_BENCH_DIR` (default `target/fetch-bench`), `FETCH_BENCH_METHODS` (comma-separated
//! subset). Cold trials write to `/proc/sys/vm/drop_caches`, so run as root.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::io::{BufferedFile, DmaFile};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};
use spate_engine::splice::Splicer;

const FETCH_BYTES: usize = 1024 * 1024;
const METHODS: &[&str] = &[
    "odirect-copy",
    "odirect-write",
    "odirect-write-ahead",
    "buffered-read-write",
    "sendfile-blocking",
    "splice-uring",
];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds(who: i32) -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, applied to this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn drop_caches() {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    if let Err(error) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        panic!("cannot drop the page cache (run as root): {error}");
    }
}

fn warm(path: &Path) {
    let mut file = std::fs::File::open(path).expect("open data file");
    let mut buffer = vec![0u8; 4 * FETCH_BYTES];
    while file.read(&mut buffer).expect("read data file") > 0 {}
}

fn make_file(path: &Path, bytes: usize) {
    if std::fs::metadata(path).is_ok_and(|meta| meta.len() as usize == bytes) {
        return;
    }
    let mut file = std::fs::File::create(path).expect("create data file");
    let mut chunk = vec![0u8; FETCH_BYTES];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..bytes / FETCH_BYTES {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        file.write_all(&chunk).expect("write data file");
    }
    file.sync_all().expect("sync data file");
}

/// Accepts one connection per trial, drains it, and reports bytes and its own CPU time.
fn receiver(listener: TcpListener, results: mpsc::Sender<(usize, f64)>) {
    pin_to_cpu(1);
    let mut buffer = vec![0u8; 4 * FETCH_BYTES];
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let start_cpu = cpu_seconds(libc::RUSAGE_THREAD);
        let mut received = 0;
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(bytes) => received += bytes,
            }
        }
        if results
            .send((received, cpu_seconds(libc::RUSAGE_THREAD) - start_cpu))
            .is_err()
        {
            return;
        }
    }
}

async fn send(method: &str, path: &Path, address: std::net::SocketAddr, bytes: usize) {
    let fetches = bytes / FETCH_BYTES;
    match method {
        "odirect-copy" | "odirect-write" => {
            let file = DmaFile::open(path).await.expect("open O_DIRECT");
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let copy = method == "odirect-copy";
            for fetch in 0..fetches {
                let data = file
                    .read_at((fetch * FETCH_BYTES) as u64, FETCH_BYTES)
                    .await
                    .expect("read");
                if copy {
                    let mut response = BytesMut::with_capacity(FETCH_BYTES);
                    response.extend_from_slice(&data);
                    stream.write_all(&response).await.expect("write");
                } else {
                    stream.write_all(&data).await.expect("write");
                }
            }
            file.close().await.expect("close");
            stream.close().await.expect("close socket");
        }
        "odirect-write-ahead" => {
            let file = std::rc::Rc::new(DmaFile::open(path).await.expect("open O_DIRECT"));
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let read = |fetch: usize| {
                let file = file.clone();
                glommio::spawn_local(async move {
                    file.read_at((fetch * FETCH_BYTES) as u64, FETCH_BYTES)
                        .await
                        .expect("read")
                })
                .detach()
            };
            let mut next = Some(read(0));
            for fetch in 0..fetches {
                let data = next.take().expect("a read in flight").await.expect("task");
                if fetch + 1 < fetches {
                    next = Some(read(fetch + 1));
                }
                stream.write_all(&data).await.expect("write");
            }
            stream.close().await.expect("close socket");
        }
        "buffered-read-write" => {
            let file = BufferedFile::open(path).await.expect("open buffered");
            let mut stream = TcpStream::connect(address).await.expect("connect");
            for fetch in 0..fetches {
                let data = file
                    .read_at((fetch * FETCH_BYTES) as u64, FETCH_BYTES)
                    .await
                    .expect("read");
                stream.write_all(&data).await.expect("write");
            }
            file.close().await.expect("close");
            stream.close().await.expect("close socket");
        }
        "sendfile-blocking" => {
            let file = std::fs::File::open(path).expect("open buffered");
            let stream = StdTcpStream::connect(address).expect("connect");
            for fetch in 0..fetches {
                let mut offset = (fetch * FETCH_BYTES) as libc::off_t;
                let mut left = FETCH_BYTES;
                while left > 0 {
                    // SAFETY: both descriptors are open; `offset` is ours.
                    let sent = unsafe {
                        libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, left)
                    };
                    assert!(sent > 0, "sendfile: {}", std::io::Error::last_os_error());
                    left -= sent as usize;
                }
            }
        }
        "splice-uring" => {
            let file = std::fs::File::open(path).expect("open buffered");
            let stream = TcpStream::connect(address).await.expect("connect");
            let mut splicer = Splicer::new().expect("splicer");
            for fetch in 0..fetches {
                splicer
                    .send_file(
                        stream.as_raw_fd(),
                        file.as_raw_fd(),
                        (fetch * FETCH_BYTES) as u64,
                        FETCH_BYTES,
                    )
                    .await
                    .expect("splice");
            }
            drop(splicer);
            let mut stream = stream;
            stream.close().await.expect("close socket");
        }
        other => panic!("unknown method {other}"),
    }
}

struct Trial {
    method: String,
    cold: bool,
    megabytes_per_second: f64,
    cpu_seconds_per_gib: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|arg| arg == "--list" || arg == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run quickly
    }
    let file_bytes = env_or("FETCH_BENCH_MIB", 512) * 1024 * 1024;
    let rounds = env_or("FETCH_BENCH_ROUNDS", 3);
    let dir = PathBuf::from(
        std::env::var("FETCH_BENCH_DIR").unwrap_or_else(|_| "target/fetch-bench".into()),
    );
    let methods: Vec<String> = match std::env::var("FETCH_BENCH_METHODS") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => METHODS.iter().map(|name| name.to_string()).collect(),
    };
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("segment.log");
    make_file(&path, file_bytes);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (results_sender, results) = mpsc::channel();
    std::thread::spawn(move || receiver(listener, results_sender));

    let trials = LocalExecutorBuilder::new(Placement::Fixed(0))
        .spawn(move || async move {
            let mut trials = Vec::new();
            for round in 0..rounds {
                for cold in [true, false] {
                    for method in &methods {
                        if cold {
                            drop_caches();
                        } else {
                            warm(&path);
                        }
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                        let start_cpu = cpu_seconds(libc::RUSAGE_SELF);
                        let start = Instant::now();
                        send(method, &path, address, file_bytes).await;
                        let (received, receiver_cpu) = results.recv().expect("receiver");
                        let elapsed = start.elapsed().as_secs_f64();
                        let sender_cpu = cpu_seconds(libc::RUSAGE_SELF) - start_cpu - receiver_cpu;
                        assert_eq!(received, file_bytes, "{method}: bytes received");
                        let gib = received as f64 / (1u64 << 30) as f64;
                        let trial = Trial {
                            method: method.clone(),
                            cold,
                            megabytes_per_second: received as f64 / elapsed / 1e6,
                            cpu_seconds_per_gib: sender_cpu / gib,
                        };
                        eprintln!(
                            "round {round} {:5} {:22} {:7.0} MB/s {:5.2} CPU-s/GiB",
                            if cold { "cold" } else { "warm" },
                            trial.method,
                            trial.megabytes_per_second,
                            trial.cpu_seconds_per_gib
                        );
                        trials.push(trial);
                    }
                }
            }
            trials
        })
        .expect("executor")
        .join()
        .expect("bench thread");

    println!(
        "\nfetch path, {} MiB file, {} KiB per fetch, median of {rounds} rounds",
        file_bytes >> 20,
        FETCH_BYTES >> 10
    );
    println!("| method | cold MB/s | cold CPU-s/GiB | warm MB/s | warm CPU-s/GiB |");
    println!("|---|---|---|---|---|");
    let mut names: Vec<&String> = trials.iter().map(|trial| &trial.method).collect();
    names.dedup();
    names.truncate(trials.len() / rounds / 2);
    for name in names {
        let pick = |cold: bool, field: fn(&Trial) -> f64| {
            median(
                trials
                    .iter()
                    .filter(|trial| &trial.method == name && trial.cold == cold)
                    .map(field)
                    .collect(),
            )
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} | {:.2} |",
            pick(true, |trial| trial.megabytes_per_second),
            pick(true, |trial| trial.cpu_seconds_per_gib),
            pick(false, |trial| trial.megabytes_per_second),
            pick(false, |trial| trial.cpu_seconds_per_gib),
        );
    }
}
