//! `oci-build`: parses the command line, runs one command, maps the outcome to an exit code.

mod cli;

use clap::Parser;

fn main() {
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
