//! `oci-build`: parses the command line, runs one command, maps the outcome to an exit code.

mod cli;

use std::io::IsTerminal;

use clap::Parser;

fn main() {
    // Diagnostics for whoever debugs a build: OCI_BUILD_LOG=debug (tracing's filter syntax).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCI_BUILD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("oci_build=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    let cli = cli::Cli::parse();
    if let Err(error) = cli::run(cli) {
        // One line: the error and each cause after it.
        let mut message = error.to_string();
        for cause in error.chain().skip(1) {
            message.push_str(": ");
            message.push_str(&cause.to_string());
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
