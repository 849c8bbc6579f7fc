//! `spate-bench`: load and latency measurement against any Kafka-compatible broker, beside
//! the machine's own limits.
//!
//! A tour. The load commands (`produce`, `consume`, `e2e`, `soak`) take their flags from
//! [`args`] and are run by [`run`], which starts the actors: [`produce`] (generator threads,
//! each a glommio executor with one task per connection, a bounded window of pre-encoded
//! requests from [`workload`] per connection, sent on a [`schedule`]) and [`consume`]
//! (one connection, Fetch v11, batches walked in place by [`records`]). Actors report to
//! [`progress`] (the line on stderr) and return HdrHistograms that [`report`] turns into the
//! JSON result; [`svg`] draws it. [`admin`] creates topics and finds leaders, [`cpu`] reads
//! the broker's CPU time; [`intervals`] keeps percentiles per minute for a soak, and
//! [`catchup`] writes, drops from the page cache and reads back a large backlog. [`wire`]
//! frames Kafka requests on the sockets. [`limits`] measures the disk and loopback TCP, [`sink`] is a
//! broker that discards (the generator's own ceiling), [`compare`] puts two results side by
//! side, and [`suite`] runs the standard scenarios and writes a summary.

mod admin;
mod args;
mod catchup;
mod compare;
mod connect;
mod consume;
mod cpu;
mod intervals;
mod limits;
mod produce;
mod progress;
mod records;
mod report;
mod run;
mod schedule;
mod secure;
mod sink;
mod suite;
mod svg;
mod totals;
mod wire;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use report::RunResult;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Throughput and latency harness for Kafka-compatible brokers.
#[derive(Parser)]
#[command(name = "spate-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce as fast as possible, or at a fixed rate, and measure acknowledge latency.
    Produce(args::ProduceCommand),
    /// Read a topic as fast as the broker serves it and measure fetch latency.
    Consume(args::ConsumeCommand),
    /// Produce and consume at once and measure produce-to-consume latency.
    E2e(args::EndToEndCommand),
    /// A long produce run with latency percentiles per interval: `produce` with
    /// `--interval-percentiles 60` unless given.
    Soak(args::ProduceCommand),
    /// Write a large backlog, drop the page cache, read it all from offset 0, delete it.
    Catchup(catchup::CatchupArgs),
    /// Open connections one after another and measure the time until each is served
    /// (TCP, TLS and SASL as the client properties say).
    Connect(connect::ConnectArgs),
    /// Measure the machine's limits: O_DIRECT disk bandwidth and loopback TCP.
    Limits(limits::LimitsArgs),
    /// Print two JSON results side by side, with ratios B/A.
    Compare {
        /// The reference result.
        a: PathBuf,
        /// The result compared with it.
        b: PathBuf,
        /// Also draw both runs in one picture here (SVG).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Names of A and B in the table and picture (default: the file names).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
    },
    /// Run the standard scenarios and write one JSON and one SVG per run plus summary.md.
    Suite(suite::SuiteArgs),
    /// A broker that acknowledges produce requests and discards them: the generator's
    /// own ceiling.
    Sink(sink::SinkArgs),
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Produce(command) => {
            run::run_produce(&command).and_then(|result| emit(&result, &command.common))
        }
        Command::Consume(command) => {
            run::run_consume(&command).and_then(|result| emit(&result, &command.common))
        }
        Command::E2e(command) => {
            run::run_e2e(&command).and_then(|result| emit(&result, &command.common))
        }
        Command::Soak(mut command) => {
            command.common.interval_percentiles =
                command.common.interval_percentiles.or(Some(60.0));
            run::run_produce(&command).and_then(|result| emit(&result, &command.common))
        }
        Command::Catchup(args) => catchup::run(&args).map(|_| ()),
        Command::Connect(args) => connect::run(&args).map(|_| ()),
        Command::Limits(args) => limits::run(&args).map(|_| ()),
        Command::Compare { a, b, svg, labels } => compare::run(&a, &b, svg.as_deref(), &labels),
        Command::Suite(args) => suite::run(&args),
        Command::Sink(args) => sink::run(&args),
    };
    if let Err(error) = outcome {
        eprintln!("spate-bench: {error:#}");
        std::process::exit(1);
    }
}

/// Prints the summary and writes the JSON and SVG the flags ask for.
fn emit(result: &RunResult, common: &args::CommonArgs) -> anyhow::Result<()> {
    println!("{}", result.summary());
    if let Some(path) = &common.json {
        result.write_json(path)?;
    }
    if let Some(path) = &common.svg {
        svg::write(result, path)?;
    }
    Ok(())
}
