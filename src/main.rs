use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use offergate::cli::{Cli, run};

// Requests allocate many small, short-lived buffers; mimalloc serves them
// with less contention than the system allocator.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("offergate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
