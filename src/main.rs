//! The `herald` command line: `serve`, `topic`, `produce`, `consume`, `bench`.
//!
//! Every command but `serve` is a client of a running broker (`--broker`,
//! default 127.0.0.1:9092). Errors print as one line; the exit status says
//! which kind (see [`cli::exit_status`]): 1 the broker refused or something
//! failed, 2 a usage error, 3 the broker could not be reached.

mod cli;

use std::io::Write;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(err) = cli::run(args) {
        // Not `eprintln!`: it panics when stderr is closed, and the exit
        // status must say "error" (1), not "panic" (101).
        let _ = writeln!(std::io::stderr(), "error: {err:#}");
        std::process::exit(cli::exit_status(err.as_ref()));
    }
}
