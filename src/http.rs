//! The one place HTTP clients are made: registries, Debian archives, package indexes and conda
//! channels all get theirs from [`builder`], so that no server can hold a build forever.
//!
//! Every client has a connect timeout and, for downloads, an idle timeout: a server that sends
//! nothing for that long (before the response head, or between two pieces of a body) is given
//! up on, and the caller treats that like a broken connection. There is no deadline on a whole
//! download: a large layer on a slow link may stream for an hour as long as bytes keep coming.
//! Uploads get a deadline per request instead (see [`Transfer::Upload`]).
//!
//! Downloads of archives, channels and indexes go through [`retry`]: a try that failed in the
//! connection (refused, broken off, stalled, a 5xx answer) is made again from the start, a few
//! times with growing pauses; one that failed in what the server sent (4xx, too large, wrong
//! hash) is final. The registry client has its own loop, for its authentication and
//! `Retry-After`.
//!
//! This module uses nothing else of the crate.

use std::fmt::Display;
use std::io::{self, Read};
use std::time::Duration;

/// Seconds without a byte from the server after which a connection is given up.
pub(crate) const IDLE_TIMEOUT_ENV: &str = "OCI_BUILD_HTTP_IDLE_TIMEOUT";

/// Long enough for a registry assembling a large manifest list or a caching proxy fetching a
/// file before it answers; short enough that a dead server ends a build within minutes.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A server that does not accept a connection in this time is taken to be unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries per download in [`retry`], the first included.
pub(crate) const ATTEMPTS: u32 = 4;

/// The pause after the first failed try; doubled after each further one, up to
/// [`MAX_BACKOFF`]. Enough for a mirror restarting or a load balancer moving on.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

const MAX_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{IDLE_TIMEOUT_ENV}=`{0}` is not a whole number of seconds above 0")]
    BadIdleTimeout(String),
    #[error("cannot make an HTTP client")]
    Client(#[source] reqwest::Error),
}

/// What a client is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Requests without a large body: the idle timeout bounds the wait for the response head
    /// and each read of the body.
    Download,
    /// Requests sending a large body. The wait for the response head includes sending the
    /// body, so the idle timeout would cut off a large upload on a slow link: the client has
    /// none, and the caller must set a deadline per request sized to the body.
    Upload,
}

/// The idle timeout: `OCI_BUILD_HTTP_IDLE_TIMEOUT` seconds, else [`DEFAULT_IDLE_TIMEOUT`].
pub(crate) fn idle_timeout() -> Result<Duration, HttpError> {
    parse_idle_timeout(std::env::var(IDLE_TIMEOUT_ENV).ok())
}

fn parse_idle_timeout(text: Option<String>) -> Result<Duration, HttpError> {
    match text {
        Some(text) if !text.trim().is_empty() => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(HttpError::BadIdleTimeout(text)),
        },
        _ => Ok(DEFAULT_IDLE_TIMEOUT),
    }
}

/// A blocking client builder with the connect and idle timeouts and this program's user agent;
/// callers add what is theirs (CA certificates) and build it.
pub(crate) fn builder(transfer: Transfer) -> Result<reqwest::blocking::ClientBuilder, HttpError> {
    let idle = match transfer {
        Transfer::Download => Some(idle_timeout()?),
        Transfer::Upload => None,
    };
    Ok(builder_with(idle))
}

/// A download client with nothing added: what archives, package indexes and channels use.
pub(crate) fn download_client() -> Result<reqwest::blocking::Client, HttpError> {
    builder(Transfer::Download)?
        .build()
        .map_err(HttpError::Client)
}

/// reqwest 0.13's blocking client applies a client-wide timeout to each wait separately: the
/// request up to the response head, then every read of the body. That is an idle timeout, and
/// the unit tests below hold it to that. (The async builder's `read_timeout` cannot serve: its
/// body timer must be made inside the runtime, and blocking reads happen outside it.) A
/// timeout set on one request is different: a deadline on the whole transfer.
fn builder_with(idle: Option<Duration>) -> reqwest::blocking::ClientBuilder {
    install_crypto_provider();
    reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(idle)
        .user_agent(concat!("oci-build/", env!("CARGO_PKG_VERSION")))
}

/// rustls's cryptography is ring (see Cargo.toml); reqwest takes the process default, which is
/// set once. A provider already installed (by a test, say) is kept.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A transport failure in words for a message, without the URL (the caller names it, redacted;
/// an upload URL's query carries session state). A stall says so and how to wait longer.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return stalled();
    }
    let mut message = if error.is_connect() {
        "the connection was refused or could not be made".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message} ({cause})");
        source = cause.source();
    }
    message
}

/// A failure while reading a body, in words: reqwest's own errors as [`describe`] puts them.
pub(crate) fn describe_io(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
    {
        Some(inner) => describe(inner),
        None if error.kind() == io::ErrorKind::TimedOut => stalled(),
        None => error.to_string(),
    }
}

/// Whether a read failed in the connection (broken off, stalled) rather than in what was read.
pub(crate) fn is_transport(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<reqwest::Error>())
}

fn stalled() -> String {
    let seconds = idle_timeout().unwrap_or(DEFAULT_IDLE_TIMEOUT).as_secs();
    format!("the server sent nothing for {seconds} s (set {IDLE_TIMEOUT_ENV} to wait longer)")
}

/// A failed request or body read, kept as it came so that callers can keep it as the cause of
/// their own error. Its message is [`describe`]'s: the whole cause chain in words, without the
/// URL (the caller names it, redacted). Having put the chain into words, it reports no
/// `source` of its own: main prints every source after the message and would repeat them.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The server answered, with a status the caller did not want.
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    /// Sending the request failed.
    #[error("{}", describe(.0))]
    Send(reqwest::Error),
    /// Reading the body failed.
    #[error("{}", describe_io(.0))]
    Read(io::Error),
}

/// Why one try of a download failed, as the caller judges it.
#[derive(Debug)]
pub(crate) enum Failed<E> {
    /// In the connection (refused, broken off, stalled) or the server (5xx): worth another try.
    Transient(E),
    /// In what was asked or sent (4xx, too large, wrong hash) or on this machine: final.
    Permanent(E),
}

impl<E> Failed<E> {
    /// The same judgement of another error, such as a [`TransferError`] made into the caller's.
    pub(crate) fn map<F>(self, f: impl FnOnce(E) -> F) -> Failed<F> {
        match self {
            Failed::Transient(e) => Failed::Transient(f(e)),
            Failed::Permanent(e) => Failed::Permanent(f(e)),
        }
    }

    pub(crate) fn into_inner(self) -> E {
        match self {
            Failed::Transient(e) | Failed::Permanent(e) => e,
        }
    }
}

/// Runs `attempt` (given its number, from 1) until it succeeds, fails for good, or has been
/// tried `attempts` times; then the last error. Each try must start over (a fresh request, a
/// fresh temporary file): what a failed one got is not to be trusted or continued.
pub(crate) fn retry<T, E: Display>(
    url: &str,
    attempts: u32,
    attempt: impl FnMut(u32) -> Result<T, Failed<E>>,
) -> Result<T, E> {
    retry_with(url, attempts, FIRST_BACKOFF, attempt)
}

fn retry_with<T, E: Display>(
    url: &str,
    attempts: u32,
    first_backoff: Duration,
    mut attempt: impl FnMut(u32) -> Result<T, Failed<E>>,
) -> Result<T, E> {
    let mut tried = 1;
    loop {
        match attempt(tried) {
            Ok(done) => return Ok(done),
            Err(Failed::Transient(error)) if tried < attempts => {
                let pause = backoff(first_backoff, tried);
                tracing::debug!(url = %redact(url), attempt = tried, %error, ?pause, "retrying");
                std::thread::sleep(pause);
                tried += 1;
            }
            Err(failed) => return Err(failed.into_inner()),
        }
    }
}

/// The pause after try `tried` failed.
fn backoff(first: Duration, tried: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(tried.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// GETs `url`. A connection that fails and a 5xx answer are transient failures; any other
/// answer is the caller's to judge.
pub(crate) fn get(
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<reqwest::blocking::Response, Failed<TransferError>> {
    let response = client.get(url).send().map_err(send_failure)?;
    if response.status().is_server_error() {
        return Err(Failed::Transient(TransferError::Status(response.status())));
    }
    Ok(response)
}

/// A failed send, judged: transient when the connection is to blame (not a malformed URL or
/// a redirect loop, which another try would repeat).
pub(crate) fn send_failure(error: reqwest::Error) -> Failed<TransferError> {
    let transient = error.is_connect() || error.is_timeout() || error.is_request();
    let error = TransferError::Send(error);
    if transient {
        Failed::Transient(error)
    } else {
        Failed::Permanent(error)
    }
}

/// Whether a failed read of a body is worth another try: the connection broke off or stalled.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    is_transport(error) || error.kind() == io::ErrorKind::TimedOut
}

/// A failed read of a body, judged by [`is_transient`].
pub(crate) fn read_failure(error: io::Error) -> Failed<TransferError> {
    let transient = is_transient(&error);
    let error = TransferError::Read(error);
    if transient {
        Failed::Transient(error)
    } else {
        Failed::Permanent(error)
    }
}

/// A URL with any user name or password replaced, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Reads at most `limit` bytes of `reader`; `Ok(None)` when it holds more (one byte more is
/// read to know). For bodies whose size is stated (a descriptor, an index entry) or capped.
pub(crate) fn read_capped(reader: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut body)?;
    Ok((body.len() as u64 <= limit).then_some(body))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// Serves one request on 127.0.0.1: a head promising `length` bytes, then `chunks` of the
    /// body `every` apart, then holds the connection until `hold` has passed.
    fn dribble(length: usize, chunks: usize, every: Duration, hold: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            stream.write_all(head.as_bytes()).unwrap();
            for _ in 0..chunks {
                std::thread::sleep(every);
                if stream
                    .write_all(b"x")
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
            std::thread::sleep(hold);
        });
        url
    }

    #[test]
    fn a_body_that_keeps_coming_outlasts_the_idle_timeout() {
        let client = builder_with(Some(Duration::from_secs(1))).build().unwrap();
        // Six bytes over three seconds: slower in all than the timeout, never idle that long.
        let url = dribble(6, 6, Duration::from_millis(500), Duration::ZERO);
        let response = client.get(&url).send().unwrap();
        let body = read_capped(response, 6).unwrap().unwrap();
        assert_eq!(body, b"xxxxxx");
    }

    #[test]
    fn a_body_that_stops_is_given_up_after_the_idle_timeout() {
        let client = builder_with(Some(Duration::from_secs(1))).build().unwrap();
        let url = dribble(6, 2, Duration::from_millis(100), Duration::from_secs(5));
        let started = Instant::now();
        let response = client.get(&url).send().unwrap();
        let error = read_capped(response, 6).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4), "{error}");
        assert!(is_transport(&error), "{error}");
        assert!(describe_io(&error).contains("sent nothing"), "{error}");
    }

    #[test]
    fn the_idle_timeout_is_whole_seconds_above_zero() {
        assert_eq!(parse_idle_timeout(None).unwrap(), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(
            parse_idle_timeout(Some(" ".into())).unwrap(),
            DEFAULT_IDLE_TIMEOUT
        );
        assert_eq!(
            parse_idle_timeout(Some("2".into())).unwrap(),
            Duration::from_secs(2)
        );
        for bad in ["0", "-1", "1.5", "soon"] {
            let error = parse_idle_timeout(Some(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(IDLE_TIMEOUT_ENV) && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn transient_failures_are_tried_again_up_to_the_bound() {
        let mut tries = Vec::new();
        let result: Result<(), String> = retry_with("http://x/f", 4, Duration::ZERO, |n| {
            tries.push(n);
            Err(Failed::Transient(format!("try {n}")))
        });
        assert_eq!(result.unwrap_err(), "try 4");
        assert_eq!(tries, [1, 2, 3, 4]);

        let result = retry_with("http://x/f", 4, Duration::ZERO, |n| {
            if n < 3 {
                Err(Failed::Transient("broken".to_owned()))
            } else {
                Ok(n)
            }
        });
        assert_eq!(result.unwrap(), 3);
    }

    #[test]
    fn permanent_failures_are_not_tried_again() {
        let mut tries = 0;
        let result: Result<(), String> = retry_with("http://x/f", 4, Duration::ZERO, |_| {
            tries += 1;
            Err(Failed::Permanent("404".to_owned()))
        });
        assert_eq!(result.unwrap_err(), "404");
        assert_eq!(tries, 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let first = Duration::from_millis(500);
        let pauses: Vec<u64> = (1..=7)
            .map(|n| backoff(first, n).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(first, u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_broken_off_body_is_transient_and_a_local_error_is_not() {
        let client = builder_with(Some(Duration::from_secs(1))).build().unwrap();
        // Two of six promised bytes, then the connection closes.
        let url = dribble(6, 2, Duration::from_millis(10), Duration::ZERO);
        let response = get(&client, &url).unwrap();
        let error = read_capped(response, 6).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(read_failure(error), Failed::Transient(_)),
            "{message}"
        );
        let local = io::Error::new(io::ErrorKind::PermissionDenied, "no");
        assert!(matches!(read_failure(local), Failed::Permanent(_)));
    }

    #[test]
    fn a_refused_connection_and_a_5xx_are_transient() {
        let client = builder_with(Some(Duration::from_secs(1))).build().unwrap();
        // A port just freed: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = get(&client, &format!("http://127.0.0.1:{port}/f")).unwrap_err();
        assert!(matches!(refused, Failed::Transient(_)), "{refused:?}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/f", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.read(&mut [0u8; 4096]);
            let _ =
                stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        });
        match get(&client, &url) {
            Err(Failed::Transient(error)) => {
                assert!(error.to_string().contains("503"), "{error}")
            }
            other => panic!("{:?}", other.map(|r| r.status())),
        }
    }

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(
            redact("https://user:secret@index.invalid/simple/"),
            "https://***@index.invalid/simple/"
        );
        assert_eq!(redact("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
    }

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_capped(&b"abcd"[..], 3).unwrap(), None);
        assert_eq!(read_capped(&b""[..], u64::MAX).unwrap(), Some(Vec::new()));
    }
}
