//! `login`: checks credentials against a registry and stores them in the file lookup reads
//! first (`credentials::login_file`).

use anyhow::bail;

use oci_build::registry::credentials::{Credential, Stored};

use super::args::{Cli, LoginArgs};

pub(super) fn login(cli: &Cli, args: &LoginArgs) -> anyhow::Result<()> {
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => password.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, false) => bail!("give the password with --password-stdin (or --password)"),
    };
    let registry = args
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let registry = if matches!(registry, "index.docker.io" | "registry-1.docker.io") {
        oci_build::reference::DOCKER_HUB
    } else {
        registry
    };
    let credential = Credential::new(&args.username, &password, "the command line");
    let stored = oci_build::registry::login(registry, &cli.client_options(), credential)?;
    if !cli.quiet {
        let place = match stored {
            Stored::File(path) => path.display().to_string(),
            Stored::Helper(program) => format!("the credential store of {program}"),
        };
        eprintln!("Login to {registry} succeeded; credentials stored in {place}");
    }
    Ok(())
}
