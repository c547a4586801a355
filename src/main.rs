use std::process::ExitCode;

use clap::Parser;
use offergate::cli::{Cli, run};

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
