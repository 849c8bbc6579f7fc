//! The `spate-tune` command line: check, apply, restore, iotune, list.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use spate_tune::apply::{self, describe_restore, describe_writes};
use spate_tune::cpus::CpuSet;
use spate_tune::host::Host;
use spate_tune::iotune::{self, IotuneOptions};
use spate_tune::report::Report;
use spate_tune::tuners::{self, check_all, Context};
use spate_tune::TuneError;

/// Checks and tunes a Linux host for the Spate broker, and measures its disk.
#[derive(Parser)]
#[command(name = "spate-tune", version)]
struct Cli {
    /// Read and write /proc, /sys and /etc under this directory instead of /
    /// (a fake tree for tests, or a chroot).
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One line per tuner: status, current and recommended value, and why. Exits 0.
    Check {
        #[command(flatten)]
        target: Target,
        /// Print the stable JSON document instead (see tuning/README.md).
        #[arg(long)]
        json: bool,
        /// Exit 1 if any tuner would change.
        #[arg(long)]
        strict: bool,
    },
    /// Make the changes `check` recommends, recording previous values for `restore`.
    Apply {
        #[command(flatten)]
        target: Target,
        /// Print exactly the writes that would be made, and make none.
        #[arg(long)]
        dry_run: bool,
        /// Only these tuners (names as in `check`; repeat or separate with commas).
        #[arg(long, value_name = "NAME", num_args = 1.., value_delimiter = ',')]
        only: Vec<String>,
        /// State file [default: ROOT/var/lib/spate-tune/state.json].
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Put back every value `apply` changed, newest first.
    Restore {
        /// Print what would be put back, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// State file [default: ROOT/var/lib/spate-tune/state.json].
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Measure the data directory's disk and write an io-properties file.
    Iotune {
        /// The directory to measure (the broker's data directory); must exist.
        #[arg(long, value_name = "PATH")]
        dir: PathBuf,
        /// Seconds of I/O to spend, split over all measured points.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        duration: u64,
        /// Where to write the io-properties file.
        #[arg(long, value_name = "FILE", default_value = "io-properties.toml")]
        out: PathBuf,
        /// Do not print each point as it is measured.
        #[arg(long)]
        quiet: bool,
    },
    /// List the tuners' names and what each looks at.
    List,
}

/// What the broker will use: its CPUs and its data directory.
#[derive(Args)]
struct Target {
    /// CPUs the broker's shards will run on, e.g. `1-3` [default: all online CPUs].
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// The broker's data directory (need not exist yet).
    #[arg(long, value_name = "PATH", default_value = "spate-data")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spate-tune: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, TuneError> {
    match cli.command {
        Command::Check {
            target,
            json,
            strict,
        } => check(&cli.root, target, json, strict),
        Command::Apply {
            target,
            dry_run,
            only,
            state,
        } => apply_command(&cli.root, target, dry_run, &only, state),
        Command::Restore { dry_run, state } => restore_command(&cli.root, dry_run, state),
        Command::Iotune {
            dir,
            duration,
            out,
            quiet,
        } => iotune_command(dir, duration, &out, quiet),
        Command::List => {
            for tuner in tuners::TUNERS {
                println!("{:<22} {}", tuner.name, tuner.summary);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn context(root: &Path, target: Target) -> Result<Context, TuneError> {
    let cpus = target.cpus.as_deref().map(CpuSet::parse).transpose()?;
    let data_dir = if target.data_dir.is_absolute() {
        target.data_dir
    } else {
        let current = std::env::current_dir()
            .map_err(|error| TuneError::Usage(format!("current directory: {error}")))?;
        current.join(target.data_dir)
    };
    Context::new(Host::new(root), cpus, data_dir)
}

fn check(root: &Path, target: Target, json: bool, strict: bool) -> Result<ExitCode, TuneError> {
    let context = context(root, target)?;
    let findings = check_all(&context);
    let report = Report::new(&context, &findings);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if strict && report.any_would_change() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_command(
    root: &Path,
    target: Target,
    dry_run: bool,
    only: &[String],
    state: Option<PathBuf>,
) -> Result<ExitCode, TuneError> {
    let context = context(root, target)?;
    let findings = check_all(&context);
    let manual: Vec<&str> = findings
        .iter()
        .filter(|finding| {
            finding.writes.is_empty() && finding.status == spate_tune::finding::Status::WouldChange
        })
        .filter(|finding| only.is_empty() || only.iter().any(|name| name == finding.name))
        .map(|finding| finding.name)
        .collect();
    let plan = apply::plan(findings, only)?;
    if !manual.is_empty() {
        eprintln!(
            "not changed by apply (see `spate-tune check` for what to do by hand): {}",
            manual.join(", ")
        );
    }
    if dry_run {
        for line in describe_writes(&plan) {
            println!("{line}");
        }
        if plan.is_empty() {
            eprintln!("nothing to write");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let state_path = apply::state_path(&context.host, state);
    let outcomes = apply::apply(&context.host, &plan, &state_path)?;
    let mut failed = false;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(writes) => println!("{}: applied ({writes} write(s))", outcome.tuner),
            Err(error) => {
                failed = true;
                println!(
                    "{}: failed: {error}{}",
                    outcome.tuner,
                    root_hint(&context.host)
                );
            }
        }
    }
    if outcomes.is_empty() {
        println!("nothing to apply");
    } else if state_path.exists() {
        println!(
            "previous values recorded in {}; `spate-tune restore` puts them back",
            state_path.display()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn root_hint(host: &Host) -> &'static str {
    if host.system().effective_uid() != 0 {
        " (not root)"
    } else {
        ""
    }
}

fn restore_command(
    root: &Path,
    dry_run: bool,
    state: Option<PathBuf>,
) -> Result<ExitCode, TuneError> {
    let host = Host::new(root);
    let state_path = apply::state_path(&host, state);
    if dry_run {
        let state = apply::read_state_for_restore(&state_path)?;
        for line in describe_restore(&state) {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcomes = apply::restore(&host, &state_path)?;
    let mut failed = false;
    for outcome in &outcomes {
        let change = &outcome.change;
        match &outcome.result {
            Ok(()) => println!("{}: restored {}", change.tuner, change.path),
            Err(error) => {
                failed = true;
                println!("{}: failed: {error}{}", change.tuner, root_hint(&host));
            }
        }
    }
    if failed {
        println!(
            "the changes not restored stay recorded in {}",
            state_path.display()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn iotune_command(
    dir: PathBuf,
    duration_s: u64,
    out: &Path,
    quiet: bool,
) -> Result<ExitCode, TuneError> {
    if duration_s == 0 {
        return Err(TuneError::Usage(
            "--duration must be at least 1 second".into(),
        ));
    }
    let options = IotuneOptions {
        dir,
        duration: Duration::from_secs(duration_s),
        progress: !quiet,
    };
    let properties = iotune::run(&options)?;
    properties.write(out)?;
    let disk = &properties.disk;
    println!(
        "wrote {}: write {:.0} MB/s (knee {} x QD{}), write+fdatasync {:.0} MB/s, read {:.0} MB/s, 4 KiB random read {} IOPS, in {:.1} s",
        out.display(),
        disk.write_bw_bytes_per_s as f64 / 1e6,
        tuners::format_bytes(disk.best_write_block_bytes),
        disk.best_write_queue_depth,
        disk.write_sync_bw_bytes_per_s as f64 / 1e6,
        disk.read_bw_bytes_per_s as f64 / 1e6,
        disk.random_read_iops,
        properties.duration_s,
    );
    Ok(ExitCode::SUCCESS)
}
