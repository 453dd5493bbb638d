//! HTTP to one registry: authentication challenges, tokens per scope, retries.
//!
//! Spec: <https://github.com/opencontainers/distribution-spec/blob/main/spec.md>; the token
//! flow is docker's (<https://distribution.github.io/distribution/spec/auth/token/>).
//!
//! A request is sent; a 401 names the scheme. Basic: the request is repeated with the
//! credential. Bearer: a token for the request's scopes is fetched from the realm (with the
//! credential, or anonymously), cached until it expires, and the request repeated. Connection
//! errors, 5xx and 429 are retried with exponential backoff (honouring Retry-After) when the
//! request is safe to repeat; so are stalls, a server that sends nothing for the idle timeout
//! of [`crate::http`]. No header, token or credential ever reaches a message.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::RegistryError;
use super::credentials::{self, Credential};
use crate::http::{self, Transfer};
use crate::reference::DOCKER_HUB;

/// Token service answers larger than this are refused: a token is a few KiB of JWT, and the
/// answer is held in memory.
const MAX_TOKEN_ANSWER_SIZE: u64 = 1 << 20;

/// How the client reaches registries; the same for every registry of a run.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Registries reached over plain HTTP. Loopback addresses always are, as with docker.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM) trusted besides the platform's store.
    pub ca_certs: Vec<PathBuf>,
    /// Tries per request, the first included.
    pub attempts: u32,
    /// First backoff delay; doubled after each failed try.
    pub backoff: Duration,
    /// Blobs transferred at the same time.
    pub concurrency: usize,
    /// Blobs larger than this are uploaded in PATCH chunks of this size.
    pub chunk_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
            attempts: 5,
            backoff: Duration::from_millis(500),
            concurrency: 4,
            chunk_size: 64 << 20,
        }
    }
}

/// A request body that can be produced again for a retry.
#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Bytes(Arc<[u8]>),
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    fn to_reqwest(&self) -> std::io::Result<reqwest::blocking::Body> {
        Ok(match self {
            Body::Empty => reqwest::blocking::Body::from(Vec::new()),
            Body::Bytes(b) => reqwest::blocking::Body::from(b.to_vec()),
            Body::File { path, offset, len } => {
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                reqwest::blocking::Body::sized(file.take(*len), *len)
            }
        })
    }
}

#[derive(Clone, Debug)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<String, Token>,
}

/// The connection to one registry.
pub struct Registry {
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub host: String,
    base: Url,
    /// For requests without a body, bounded by the idle timeout.
    http: Client,
    /// For requests with a body, bounded by a deadline per request instead.
    upload_http: Client,
    credential: Option<Credential>,
    auth: Mutex<AuthState>,
    pub(super) options: ClientOptions,
}

/// One request: what to send, which repository scopes it needs, whether it may be repeated.
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub scopes: &'a [String],
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// Repeat on connection errors, 5xx and 429. Off for upload data, whose session state is
    /// unknown after a failure; the blob upload then starts over as a whole.
    pub retry: bool,
}

/// Whether a registry host (`name`, `name:port`, `[v6]:port`) is this machine: `localhost` or a
/// loopback address. A name that merely starts like one (`127.evil.example`) is not.
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]` alone ends in `]`, so its last `:` is inside the brackets.
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// Connects with the credential configured for `host`, if any.
    pub fn connect(host: &str, options: &ClientOptions) -> Result<Registry, RegistryError> {
        Registry::connect_as(host, options, credentials::find(host)?)
    }

    pub fn connect_as(
        host: &str,
        options: &ClientOptions,
        credential: Option<Credential>,
    ) -> Result<Registry, RegistryError> {
        let insecure = is_loopback(host) || options.insecure_registries.iter().any(|h| h == host);
        // Docker Hub's API is served from its own host name; references keep docker.io.
        let api_host = if host == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            host
        };
        let https = Url::parse(&format!("https://{api_host}/")).map_err(|_| {
            RegistryError::BadRegistryName {
                registry: host.to_owned(),
            }
        })?;
        let mut certs = Vec::new();
        let mut ca_files = options.ca_certs.clone();
        // docker's and podman's per-registry CA directories.
        for dir in ["/etc/docker/certs.d", "/etc/containers/certs.d"] {
            if let Ok(entries) = std::fs::read_dir(PathBuf::from(dir).join(host)) {
                ca_files.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "crt")),
                );
            }
        }
        for file in &ca_files {
            let pem = std::fs::read(file).map_err(|source| RegistryError::CaFile {
                path: file.clone(),
                source,
            })?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| RegistryError::NoCertificate { path: file.clone() })?;
            certs.extend(bundle);
        }
        let client = |transfer| {
            http::builder(transfer)?
                .tls_certs_merge(certs.clone())
                .build()
                .map_err(|source| RegistryError::Tls {
                    registry: host.to_owned(),
                    source,
                })
        };
        let http = client(Transfer::Download)?;
        let upload_http = client(Transfer::Upload)?;
        let base = if insecure {
            probe_scheme(&http, host, https)?
        } else {
            https
        };
        tracing::debug!(registry = host, %base, credential = ?credential, "registry client");
        Ok(Registry {
            host: host.to_owned(),
            base,
            http,
            upload_http,
            credential,
            auth: Mutex::new(AuthState::default()),
            options: options.clone(),
        })
    }

    /// `/v2/<path>` on this registry.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(&format!("v2/{path}"))
            .expect("registry paths are valid URL paths")
    }

    /// Resolves an upload `Location` against the URL it answered, refusing a move from HTTPS
    /// to plain HTTP (a registry may answer with relative or absolute locations).
    pub fn resolve_location(
        &self,
        request: &Url,
        response: &Response,
    ) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.host.clone(),
                message: format!(
                    "{} {} answered without a Location header",
                    response.status(),
                    request.path()
                ),
            })?;
        let url = request
            .join(location)
            .map_err(|_| RegistryError::Protocol {
                registry: self.host.clone(),
                message: format!("the upload location `{location}` is not a URL"),
            })?;
        if request.scheme() == "https" && url.scheme() != "https" {
            return Err(RegistryError::Protocol {
                registry: self.host.clone(),
                message: format!(
                    "it redirected an upload from HTTPS to `{}`; refusing to send data unencrypted",
                    url.scheme()
                ),
            });
        }
        Ok(url)
    }

    /// Whether the registry asked for Basic authentication, where a refusal with credentials
    /// means a wrong password rather than a missing permission.
    pub fn uses_basic_auth(&self) -> bool {
        matches!(
            self.auth.lock().expect("auth lock").challenge,
            Some(Challenge::Basic)
        )
    }

    pub fn credential_source(&self) -> Option<&str> {
        self.credential.as_ref().map(|c| c.source.as_str())
    }

    /// Sends `request`, answering authentication challenges and retrying what may be retried.
    /// Returns the last response, whatever its status: callers decide what a status means.
    pub fn send(&self, request: &Request<'_>) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        let mut challenged = false;
        loop {
            let len = request.body.len();
            let client = if len > 0 {
                &self.upload_http
            } else {
                &self.http
            };
            let mut builder = client.request(request.method.clone(), request.url.clone());
            for (name, value) in &request.headers {
                builder = builder.header(*name, value);
            }
            // Credentials go only to the registry itself, never to a host an upload Location
            // names (docker attaches them by host the same way).
            if request.url.origin() == self.base.origin()
                && let Some(header) = self.authorization(request.scopes)?
            {
                builder = builder.header(AUTHORIZATION, header);
            }
            if len > 0 {
                // The upload client has no idle timeout (see `Transfer::Upload`): a generous
                // limit that still ends a stalled upload, 2 minutes plus 64 KiB/s.
                builder = builder.timeout(Duration::from_secs(120 + len / (64 << 10)));
            }
            if !matches!(request.body, Body::Empty)
                || request.method == Method::PUT
                || request.method == Method::PATCH
            {
                let body = request
                    .body
                    .to_reqwest()
                    .map_err(|source| RegistryError::ReadBlob {
                        registry: self.host.clone(),
                        source,
                    })?;
                builder = builder.body(body);
            }
            let outcome = builder.send();
            let retry_delay = match &outcome {
                Err(error) => {
                    tracing::debug!(registry = %self.host, url = %request.url.path(), error = %error, attempt, "request failed");
                    Some(self.backoff(attempt))
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !challenged => {
                    challenged = true;
                    if self.learn_challenge(response.headers(), request.scopes) {
                        continue;
                    }
                    None
                }
                Ok(response)
                    if response.status().is_server_error()
                        || response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    tracing::debug!(registry = %self.host, url = %request.url.path(), status = %response.status(), attempt, "retryable status");
                    Some(retry_after(response.headers()).unwrap_or_else(|| self.backoff(attempt)))
                }
                Ok(_) => None,
            };
            match retry_delay {
                Some(delay) if request.retry && attempt < self.options.attempts => {
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                _ => {
                    return outcome.map_err(|error| RegistryError::Unreachable {
                        registry: self.host.clone(),
                        during: format!("{} {}", request.method, request.url.path()),
                        source: http::TransferError::Send(error),
                    });
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1)).min(64)
    }

    /// Records what a 401 asked for; false when there is nothing new to try.
    fn learn_challenge(&self, headers: &HeaderMap, scopes: &[String]) -> bool {
        let Some(challenge) = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)
        else {
            return false;
        };
        let mut state = self.auth.lock().expect("auth lock");
        if matches!(challenge, Challenge::Basic) && self.credential.is_none() {
            return false;
        }
        // A token that was refused (expired early, revoked) is dropped and fetched anew.
        state.tokens.remove(&scopes.join(" "));
        state.challenge = Some(challenge);
        true
    }

    fn authorization(&self, scopes: &[String]) -> Result<Option<String>, RegistryError> {
        let challenge = self.auth.lock().expect("auth lock").challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credential.as_ref().map(Credential::basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if let Some(token) = self.auth.lock().expect("auth lock").tokens.get(&key)
                    && token.expires > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", token.value)));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes)?;
                let header = format!("Bearer {}", token.value);
                self.auth
                    .lock()
                    .expect("auth lock")
                    .tokens
                    .insert(key, token);
                Ok(Some(header))
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, RegistryError> {
        let mut url = Url::parse(realm).map_err(|_| RegistryError::Protocol {
            registry: self.host.clone(),
            message: format!("its token realm `{realm}` is not a URL"),
        })?;
        if self.base.scheme() == "https" && url.scheme() != "https" {
            return Err(RegistryError::Protocol {
                registry: self.host.clone(),
                message: format!(
                    "its token realm `{realm}` is not HTTPS; refusing to send credentials unencrypted"
                ),
            });
        }
        let unauthorized = || RegistryError::Unauthorized {
            registry: self.host.clone(),
            credential_source: self.credential_source().map(str::to_owned),
        };
        let response = match &self.credential {
            Some(credential) if credential.identity_token => {
                // OAuth2 refresh-token grant, as docker does with an identity token.
                let mut form = Url::parse("http://form.invalid/").expect("static URL");
                {
                    let mut pairs = form.query_pairs_mut();
                    pairs.append_pair("grant_type", "refresh_token");
                    pairs.append_pair("refresh_token", credential.secret());
                    pairs.append_pair("client_id", "oci-build");
                    if let Some(service) = service {
                        pairs.append_pair("service", service);
                    }
                    pairs.append_pair("scope", &scopes.join(" "));
                }
                self.http
                    .post(url.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or("").to_owned())
                    .send()
            }
            credential => {
                {
                    let mut pairs = url.query_pairs_mut();
                    if let Some(service) = service {
                        pairs.append_pair("service", service);
                    }
                    for scope in scopes {
                        pairs.append_pair("scope", scope);
                    }
                }
                let mut builder = self.http.get(url.clone());
                if let Some(credential) = credential {
                    builder = builder.header(AUTHORIZATION, credential.basic_header());
                }
                builder.send()
            }
        }
        .map_err(|error| RegistryError::Unreachable {
            registry: url.host_str().unwrap_or(realm).to_owned(),
            during: format!("asking its token service for {}", self.host),
            source: http::TransferError::Send(error),
        })?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(unauthorized()),
            status => {
                return Err(RegistryError::Protocol {
                    registry: self.host.clone(),
                    message: format!("its token service answered {status}"),
                });
            }
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let not_a_token = || RegistryError::Protocol {
            registry: self.host.clone(),
            message: "its token service answered something other than a token".to_owned(),
        };
        let body = super::read_limited(self, response, "a token", MAX_TOKEN_ANSWER_SIZE)?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| not_a_token())?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?;
        // Tokens are renewed 10 seconds early; the spec's default lifetime is 60 seconds.
        let lifetime = answer.expires_in.unwrap_or(60).saturating_sub(10);
        Ok(Token {
            value,
            expires: Instant::now() + Duration::from_secs(lifetime),
        })
    }
}

/// For a registry that may speak plain HTTP: HTTPS when it answers over TLS (as docker tries
/// first), plain HTTP when it does not speak TLS at all. A TLS server whose certificate is not
/// trusted is an error, not a reason to send data unencrypted.
fn probe_scheme(http: &Client, host: &str, https: Url) -> Result<Url, RegistryError> {
    let probe = https.join("v2/").expect("static path");
    match http.get(probe).timeout(Duration::from_secs(10)).send() {
        Ok(_) => Ok(https),
        Err(error) => {
            let text = http::describe(&error);
            if text.contains("certificate") || text.contains("UnknownIssuer") {
                return Err(RegistryError::Untrusted {
                    registry: host.to_owned(),
                    source: http::TransferError::Send(error),
                });
            }
            let mut plain = https;
            plain.set_scheme("http").expect("http is a valid scheme");
            Ok(plain)
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            _ => {}
        }
        rest = remaining;
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate abc").is_none());
    }

    #[test]
    fn loopback_hosts_are_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:41234"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.1.2.3:80"));
        assert!(is_loopback("LOCALHOST"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("[::1]:5000"));
        // Names that only look like loopback addresses are remote hosts.
        assert!(!is_loopback("127.evil.example"));
        assert!(!is_loopback("127.evil.example:5000"));
        assert!(!is_loopback("127.0.0.1.evil.example:5000"));
        assert!(!is_loopback("localhost.evil.example"));
        assert!(!is_loopback("[::2]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
