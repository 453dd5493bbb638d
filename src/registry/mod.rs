//! Registries: pull bases, push images, without a daemon.
//!
//! A thin client of our own over reqwest (see docs/decisions.md for why not oci-client):
//! [`client`] speaks HTTP with authentication and retries, [`credentials`] finds what docker
//! and podman users have configured, [`push`] and [`pull`] move images, [`mirror`] copies
//! images between registries and bundles. Blobs stream between
//! disk and network in both directions; only manifests and configs (at most 4 MiB and 8 MiB)
//! are held in memory.

pub mod cache_repo;
pub mod client;
pub mod credentials;
pub mod mirror;
pub mod pull;
pub mod push;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::blocking::Response;

pub use client::{ClientOptions, Registry};
use credentials::CredentialError;

use crate::digest::Digest;
use crate::layer::cache::CacheError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Worker(#[from] crate::workers::WorkerPanicked),
    #[error("`{registry}` is not a registry host name")]
    BadRegistryName { registry: String },
    #[error("cannot read CA certificate file `{path}`")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA certificate file `{path}` holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot set up TLS for registry {registry}")]
    Tls {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "cannot set up TLS for registry {registry}: its certificate is not trusted; add its CA with --ca-cert FILE or under /etc/docker/certs.d/{registry}/"
    )]
    Untrusted {
        registry: String,
        #[source]
        source: crate::http::TransferError,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(
        "cannot reach registry {registry}: {during}; check that it runs and that the name and port are right"
    )]
    Unreachable {
        registry: String,
        /// What was being done: `GET /v2/…`, reading a manifest from a path.
        during: String,
        #[source]
        source: crate::http::TransferError,
    },
    #[error("registry {registry} refused {}; log in with `oci-build login {registry}`", match credential_source { Some(source) => format!("the credentials from {source}"), None => "anonymous access".to_owned() })]
    Unauthorized {
        registry: String,
        credential_source: Option<String>,
    },
    #[error("registry {registry} denied {action} access to {repository}{}; the account needs that permission", match credential_source { Some(source) => format!(" for the credentials from {source}"), None => " without credentials".to_owned() })]
    Denied {
        registry: String,
        repository: String,
        action: &'static str,
        credential_source: Option<String>,
    },
    #[error("registry {registry} has no {what}")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} answered {status} to {action}{detail}")]
    Status {
        registry: String,
        action: String,
        status: StatusCode,
        detail: String,
    },
    #[error("registry {registry}: {message}")]
    Protocol { registry: String, message: String },
    #[error("registry {registry}: its {what} is not valid JSON of that kind")]
    BadJson {
        registry: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "registry {registry} sent {what} that does not match its digest {expected} (got {found})"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error("registry {registry}: {what} is at least {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        registry: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("cannot read a blob to send to registry {registry}")]
    ReadBlob {
        registry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send a manifest to registry {registry}: its bytes are not in memory")]
    ManifestNotInMemory { registry: String },
    #[error("cannot reopen `{path}` to download a blob from registry {registry}")]
    TempFile {
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{reference} has no image for {platform} (it has {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error(
        "registry {registry} sent {what} of {found} bytes or more, larger than the {expected} bytes its descriptor states; it was refused"
    )]
    LargerThanDescriptor {
        registry: String,
        what: String,
        expected: u64,
        found: u64,
    },
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Registry connections of one run, one per registry host, made on first use.
pub struct Registries {
    options: ClientOptions,
    open: Mutex<HashMap<String, Arc<Registry>>>,
}

impl Registries {
    pub fn new(options: ClientOptions) -> Registries {
        Registries {
            options,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, host: &str) -> Result<Arc<Registry>, RegistryError> {
        let mut open = self.open.lock().expect("registries lock");
        if let Some(registry) = open.get(host) {
            return Ok(Arc::clone(registry));
        }
        let registry = Arc::new(Registry::connect(host, &self.options)?);
        open.insert(host.to_owned(), Arc::clone(&registry));
        Ok(registry)
    }
}

/// Checks `credential` against `host` (the `/v2/` endpoint, through a token if the registry
/// asks for one) and stores it in docker's config.json. Returns the file written.
pub fn login(
    host: &str,
    options: &ClientOptions,
    credential: credentials::Credential,
) -> Result<credentials::Stored, RegistryError> {
    let registry = Registry::connect_as(host, options, Some(credential.clone()))?;
    let response = registry.send(&client::Request {
        method: reqwest::Method::GET,
        url: registry.url(""),
        scopes: &[],
        headers: Vec::new(),
        body: client::Body::Empty,
        retry: true,
    })?;
    if response.status() == StatusCode::UNAUTHORIZED || response.status() == StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            registry: host.to_owned(),
            credential_source: Some("the command line".to_owned()),
        });
    }
    check(&registry, response, "", "pull", || {
        "API endpoint /v2/".to_owned()
    })?;
    Ok(credentials::store(host, &credential)?)
}

/// `repository:<name>:<actions>`, the scope a token must grant.
pub fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// A request for the blob `digest` of `repository`: GET to fetch it, HEAD to ask if it is there.
fn blob_request<'a>(
    registry: &Registry,
    method: reqwest::Method,
    repository: &str,
    digest: &Digest,
    scopes: &'a [String],
) -> client::Request<'a> {
    client::Request {
        method,
        url: registry.url(&format!("{repository}/blobs/{digest}")),
        scopes,
        headers: Vec::new(),
        body: client::Body::Empty,
        retry: true,
    }
}

/// Turns a response that is not a success into the error a user can act on.
fn check(
    registry: &Registry,
    response: Response,
    repository: &str,
    action: &'static str,
    what: impl FnOnce() -> String,
) -> Result<Response, RegistryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let credential_source = registry.credential_source().map(str::to_owned);
    Err(match status {
        StatusCode::UNAUTHORIZED if registry.uses_basic_auth() => RegistryError::Unauthorized {
            registry: registry.host.clone(),
            credential_source,
        },
        StatusCode::UNAUTHORIZED if credential_source.is_some() => RegistryError::Denied {
            registry: registry.host.clone(),
            repository: repository.to_owned(),
            action,
            credential_source,
        },
        StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
            registry: registry.host.clone(),
            credential_source,
        },
        StatusCode::FORBIDDEN => RegistryError::Denied {
            registry: registry.host.clone(),
            repository: repository.to_owned(),
            action,
            credential_source,
        },
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            registry: registry.host.clone(),
            what: what(),
        },
        _ => RegistryError::Status {
            registry: registry.host.clone(),
            action: what(),
            status,
            detail: error_detail(response),
        },
    })
}

/// The first `errors[].message` of a registry's JSON error body, if it sent one.
fn error_detail(response: Response) -> String {
    let mut body = Vec::new();
    let _ = response.take(64 << 10).read_to_end(&mut body);
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            let code = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(format!(" ({code}: {message})"))
        })
        .unwrap_or_default()
}

/// Reads a small response body, refusing more than `limit` bytes.
fn read_limited(
    registry: &Registry,
    response: Response,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let path = response.url().path().to_owned();
    let content_length = response.content_length();
    crate::http::read_capped(response, limit)
        .map_err(|e| RegistryError::Unreachable {
            registry: registry.host.clone(),
            during: format!("reading {what} from {path}"),
            source: crate::http::TransferError::Read(e),
        })?
        .ok_or_else(|| RegistryError::TooLarge {
            registry: registry.host.clone(),
            what: what.to_owned(),
            size: content_length.unwrap_or(0).max(limit + 1),
            limit,
        })
}
