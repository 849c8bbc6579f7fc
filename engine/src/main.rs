//! The `spate` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spate_engine::config::ServeArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spate: a Kafka-compatible streaming broker, thread-per-core on io_uring.
#[derive(Parser)]
#[command(name = "spate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: single node, data in ./spate-data, listening on
    /// 127.0.0.1:9092 (shard s on port 9092+s), one shard per CPU.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.resolve().and_then(spate_engine::node::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
