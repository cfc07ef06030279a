//! `dime`: the broker server, and the file-transfer commands.
//!
//! `dime` with no command (or `dime serve`) runs the broker; `dime files
//! serve`, `dime get` and `dime put` serve and move files through one.
//! Each command's arguments and code live in `src/cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A DiME2-compatible message broker for MATLAB, Python, C and JavaScript.
#[derive(Parser, Debug)]
#[command(name = "dime", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Args {
    /// The broker's options, for `dime` with no command.
    #[command(flatten)]
    broker: cli::broker::BrokerArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (what `dime` with no command does).
    Serve(cli::broker::BrokerArgs),
    /// Serve a directory tree to `dime get` / `dime put` through a broker.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Download files from a file server: dime get NAME:PATTERN… DEST.
    Get(cli::files::GetArgs),
    /// Upload files to a file server: dime put SRC… NAME:DESTDIR.
    Put(cli::files::PutArgs),
    /// List what the broker holds: clients, groups, shares, tuple spaces, functions.
    Ls(cli::inspect::LsArgs),
    /// Show the broker's counters.
    Stats(cli::inspect::StatsArgs),
    /// Print every message as it passes (optionally recording it).
    Monitor(cli::inspect::MonitorArgs),
    /// Send the messages of a `dime monitor --record` file again.
    Replay(cli::inspect::ReplayArgs),
    /// Send a value (JSON or .npy) to a group.
    Send(cli::inspect::SendArgs),
    /// Wait for and print the next message(s).
    Recv(cli::inspect::RecvArgs),
}

#[derive(Subcommand, Debug)]
enum FilesCommand {
    /// Serve ROOT as file server NAME (read-only unless --writable).
    Serve(cli::files::ServeArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        None => cli::broker::run(args.broker),
        Some(Command::Serve(b)) => cli::broker::run(b),
        Some(Command::Files(FilesCommand::Serve(a))) => cli::files::serve(a),
        Some(Command::Get(a)) => cli::files::get(a),
        Some(Command::Put(a)) => cli::files::put(a),
        Some(Command::Ls(a)) => cli::inspect::ls(a),
        Some(Command::Stats(a)) => cli::inspect::stats(a),
        Some(Command::Monitor(a)) => cli::inspect::monitor(a),
        Some(Command::Replay(a)) => cli::inspect::replay(a),
        Some(Command::Send(a)) => cli::inspect::send(a),
        Some(Command::Recv(a)) => cli::inspect::recv(a),
    }
}
