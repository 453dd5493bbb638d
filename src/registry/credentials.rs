//! Where registry credentials come from. `login` writes one file, and lookup reads that file
//! first, so the credential `login` just stored is the one the next command uses (a stale
//! podman login cannot shadow it):
//!
//! 1. the login file: `$REGISTRY_AUTH_FILE` where set (as podman and skopeo write and read it),
//!    else docker's `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (as docker and
//!    crane do);
//! 2. then docker's config where `$REGISTRY_AUTH_FILE` took its place, else the containers
//!    auth files podman's own login writes: `$XDG_RUNTIME_DIR/containers/auth.json`, then
//!    `~/.config/containers/auth.json`.
//!
//! In each file: `credHelpers[host]`, then `auths[host]` (`auth` = base64 `user:password`, or
//! `identitytoken`), then `credsStore`, through the `docker-credential-<name> get` helper
//! protocol; the first file that has the registry answers.
//!
//! A [`Credential`] never shows its secret in `Debug` or `Display`; errors name only the
//! source it came from.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reference::DOCKER_HUB;

/// The key docker itself uses for Docker Hub in config.json.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone)]
pub struct Credential {
    pub username: String,
    secret: String,
    /// An OAuth2 refresh token (docker's `identitytoken`) rather than a password.
    pub identity_token: bool,
    /// Where it was found, for messages: `~/.docker/config.json (auths)`.
    pub source: String,
}

impl Credential {
    pub fn new(username: &str, secret: &str, source: &str) -> Credential {
        Credential {
            username: username.to_owned(),
            secret: secret.to_owned(),
            identity_token: false,
            source: source.to_owned(),
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `Basic <base64(user:secret)>`.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.secret))
        )
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credential({} from {}, secret redacted)",
            self.username, self.source
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("`{path}` is not valid JSON of docker's config format")]
    BadFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{path}` has an `auth` for {host} that is not base64 of `user:password`")]
    BadAuth { path: PathBuf, host: String },
    #[error("credential helper `docker-credential-{helper}` failed for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
    #[error("cannot {action} credential helper `docker-credential-{helper}` for {host}")]
    HelperIo {
        helper: String,
        host: String,
        /// What was being done: "run", "write to", "read the answer of".
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: Map<String, Value>,
    #[serde(default)]
    cred_helpers: Map<String, Value>,
    creds_store: Option<String>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The files credentials are looked up in, in order; the first is the one `login` writes.
fn lookup_files() -> Vec<PathBuf> {
    let mut files = vec![login_file()];
    if std::env::var_os("REGISTRY_AUTH_FILE").is_some() {
        files.push(docker_config_path());
    } else {
        if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(PathBuf::from(runtime).join("containers/auth.json"));
        }
        if let Some(home) = home() {
            files.push(home.join(".config/containers/auth.json"));
        }
    }
    files.dedup();
    files
}

/// The file `oci-build login` writes: `$REGISTRY_AUTH_FILE` where the user named one, else
/// docker's config.json.
pub fn login_file() -> PathBuf {
    match std::env::var_os("REGISTRY_AUTH_FILE") {
        Some(path) => PathBuf::from(path),
        None => docker_config_path(),
    }
}

/// Docker's config.json.
fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => home()
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".docker/config.json"),
    }
}

fn shown(path: &Path) -> String {
    match home() {
        Some(home) => match path.strip_prefix(&home) {
            Ok(rest) => format!("~/{}", rest.display()),
            Err(_) => path.display().to_string(),
        },
        None => path.display().to_string(),
    }
}

/// Whether a config key (`host`, `https://host`, `https://host/v1/`) names `registry`.
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    host == registry
        || (registry == DOCKER_HUB
            && matches!(
                host,
                "index.docker.io" | "registry-1.docker.io" | "docker.io"
            ))
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, CredentialError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CredentialError::BadFile {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(_) => Ok(None),
    }
}

/// The credential for `registry` (as in a reference: `docker.io`, `localhost:5000`), if any.
pub fn find(registry: &str) -> Result<Option<Credential>, CredentialError> {
    for path in lookup_files() {
        if let Some(config) = read_config(&path)?
            && let Some(credential) = from_file(&config, &path, registry)?
        {
            return Ok(Some(credential));
        }
    }
    Ok(None)
}

/// The credential one file gives for `registry`: its helper for the registry, its `auths`
/// entry, else its default helper.
fn from_file(
    config: &ConfigFile,
    path: &Path,
    registry: &str,
) -> Result<Option<Credential>, CredentialError> {
    if let Some((_, helper)) = config
        .cred_helpers
        .iter()
        .find(|(key, _)| key_matches(key, registry))
        && let Some(helper) = helper.as_str()
    {
        return run_helper(helper, registry);
    }
    if let Some(credential) = from_auths(config, path, registry)? {
        return Ok(Some(credential));
    }
    if let Some(store) = &config.creds_store {
        return run_helper(store, registry);
    }
    Ok(None)
}

fn from_auths(
    config: &ConfigFile,
    path: &Path,
    registry: &str,
) -> Result<Option<Credential>, CredentialError> {
    let Some((_, entry)) = config
        .auths
        .iter()
        .find(|(key, _)| key_matches(key, registry))
    else {
        return Ok(None);
    };
    let source = format!("{} (auths)", shown(path));
    if let Some(token) = entry.get("identitytoken").and_then(Value::as_str)
        && !token.is_empty()
    {
        let username = entry.get("username").and_then(Value::as_str).unwrap_or("");
        let mut credential = Credential::new(username, token, &source);
        credential.identity_token = true;
        return Ok(Some(credential));
    }
    let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let bad = || CredentialError::BadAuth {
        path: path.to_owned(),
        host: registry.to_owned(),
    };
    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credential::new(user, password, &source)))
}

/// Makes an I/O failure of talking to `docker-credential-{helper}` into the error naming it.
fn helper_io(
    helper: &str,
    registry: &str,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> CredentialError {
    let (helper, host) = (helper.to_owned(), registry.to_owned());
    move |source| CredentialError::HelperIo {
        helper,
        host,
        action,
        source,
    }
}

/// docker-credential-helpers protocol: `get` with the server URL on stdin, JSON on stdout.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>, CredentialError> {
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_owned()
    } else {
        registry.to_owned()
    };
    let fail = |message: String| CredentialError::Helper {
        helper: helper.to_owned(),
        host: registry.to_owned(),
        message,
    };
    let output = call_helper(helper, "get", registry, server.as_bytes())?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // The helpers' own wording for "nothing stored for this server".
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("it exited with {}", output.status)));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperAnswer {
        username: String,
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| fail("its answer is not the expected JSON".to_owned()))?;
    let source = format!("credential helper docker-credential-{helper}");
    let mut credential = Credential::new(&answer.username, &answer.secret, &source);
    // By the protocol's convention, this user name marks an identity token.
    credential.identity_token = answer.username == "<token>";
    Ok(Some(credential))
}

/// Where `store` put a credential.
#[derive(Debug)]
pub enum Stored {
    /// In the login file, as base64 `user:password`.
    File(PathBuf),
    /// Through `docker-credential-<helper> store` (config.json's `credsStore` or
    /// `credHelpers`), as docker does: the file then lists the registry with no secret.
    Helper(String),
}

/// Stores `user:password` for `registry` in the [`login_file`] as docker would: through the
/// credential helper the file names for it (`credHelpers`, else `credsStore`), else in the
/// file itself. The file keeps everything else; it is written to a temporary file readable
/// only by its owner, then renamed.
pub fn store(registry: &str, credential: &Credential) -> Result<Stored, CredentialError> {
    let path = login_file();
    let write_err = |source| CredentialError::Write {
        path: path.clone(),
        source,
    };
    let mut root: Map<String, Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CredentialError::BadFile {
            path: path.clone(),
            source,
        })?,
        Err(_) => Map::new(),
    };
    let key = if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY
    } else {
        registry
    };
    let helper = root
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| helpers.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, helper)| helper.as_str())
        .or_else(|| root.get("credsStore").and_then(Value::as_str))
        .filter(|helper| !helper.is_empty())
        .map(str::to_owned);
    if let Some(helper) = &helper {
        store_with_helper(helper, key, registry, credential)?;
    }
    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    // With a helper, docker lists the registry with an empty entry: the secret is in the
    // helper's store, and an old plain-text `auth` must not shadow it.
    let entry = match &helper {
        Some(_) => serde_json::json!({}),
        None => serde_json::json!({
            "auth": STANDARD.encode(format!("{}:{}", credential.username, credential.secret))
        }),
    };
    auths
        .as_object_mut()
        .expect("made an object above")
        .insert(key.to_owned(), entry);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    // Private: the file is 0600 from creation on, so the secret is never readable by others.
    let mut bytes = serde_json::to_vec_pretty(&root).expect("JSON values serialise");
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&path, &bytes, crate::fsutil::Publish::PRIVATE)
        .map_err(write_err)?;
    Ok(match helper {
        Some(helper) => Stored::Helper(format!("docker-credential-{helper}")),
        None => Stored::File(path),
    })
}

/// Runs `docker-credential-HELPER ACTION` with `request` on its stdin (never its arguments or
/// environment: it may hold a secret) and returns what it answered.
fn call_helper(
    helper: &str,
    action: &str,
    registry: &str,
    request: &[u8],
) -> Result<std::process::Output, CredentialError> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(helper_io(helper, registry, "run"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request)
        .map_err(helper_io(helper, registry, "write to"))?;
    child
        .wait_with_output()
        .map_err(helper_io(helper, registry, "read the answer of"))
}

/// docker-credential-helpers protocol: `store` with `{ServerURL, Username, Secret}` on stdin.
/// The secret goes through the pipe only, never the command line or the environment.
fn store_with_helper(
    helper: &str,
    server: &str,
    registry: &str,
    credential: &Credential,
) -> Result<(), CredentialError> {
    let fail = |message: String| CredentialError::Helper {
        helper: helper.to_owned(),
        host: registry.to_owned(),
        message,
    };
    let request = serde_json::json!({
        "ServerURL": server,
        "Username": credential.username,
        "Secret": credential.secret,
    });
    let output = call_helper(helper, "store", registry, request.to_string().as_bytes())?;
    if !output.status.success() {
        return Err(fail(format!("`store` exited with {}", output.status)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_match_docker_hub_aliases_and_urls() {
        assert!(key_matches("https://index.docker.io/v1/", "docker.io"));
        assert!(key_matches("localhost:5000", "localhost:5000"));
        assert!(key_matches("https://quay.io", "quay.io"));
        assert!(!key_matches("quay.io", "docker.io"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credential::new("me", "hunter2", "test");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
