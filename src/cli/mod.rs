//! The command line: each subcommand handed to one function; `main` maps the outcome to an
//! exit code.
//!
//! - [`args`]: what the command line says (clap), parsed into typed values;
//! - [`build`]: `build`, `lock` and `fetch`, which drive a builder;
//! - [`copy`]: `push`, `mirror` and `verify`, which move finished images and check copies;
//! - [`login`]: storing registry credentials;
//! - [`show`]: `inspect`, `targets` and `resolve`, which only read and print;
//! - [`report`]: progress and result lines on the terminal, kept apart from the commands.

mod args;
mod build;
mod copy;
mod login;
mod report;
mod show;

pub(crate) use args::Cli;
use args::Command;

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Build(args) => build::build(&cli, args),
        Command::Inspect(args) => show::inspect(args),
        Command::Targets(args) => show::targets(&cli, args),
        Command::Push(args) => copy::push(&cli, args),
        Command::Login(args) => login::login(&cli, args),
        Command::Lock(args) => build::lock(&cli, args),
        Command::Mirror(args) => copy::mirror(&cli, args),
        Command::Verify(args) => copy::verify(args),
        Command::Resolve(args) => show::resolve(&cli, args),
        Command::Fetch(args) => build::fetch(&cli, args),
        Command::Sbom(args) => show::sbom(&cli, args),
    }
}
