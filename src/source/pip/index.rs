//! Package indexes: PEP 691 JSON pages (PEP 503 HTML as a fallback), PEP 658/714 metadata
//! files, find-links directories and wheelhouses, and verified downloads into the cache.
//!
//! Pages and metadata files are read whole, up to a cap ([`MAX_PAGE_SIZE`],
//! [`MAX_METADATA_SIZE`]); one that breaks off or stalls is fetched again like a failed
//! connection.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use pep440_rs::{Version, VersionSpecifiers};

use super::metadata::{self, CoreMetadata};
use super::ranged;
use super::wheel::{self, WheelName};
use crate::digest::{Digest, HashingWriter};
use crate::http;
use crate::layer::cache::{Bucket, Cache};

pub(crate) use crate::http::redact;

/// Project pages larger than this are refused: a page is held in memory while it is parsed,
/// and the largest projects' pages on public indexes are tens of MiB.
pub(crate) const MAX_PAGE_SIZE: u64 = 256 << 20;

/// PEP 658 metadata files larger than this are refused; a METADATA with its long description
/// is rarely over 1 MiB.
pub(crate) const MAX_METADATA_SIZE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read {url}")]
    Fetch {
        url: String,
        #[source]
        source: http::TransferError,
    },
    #[error("cannot read {url}: this is an offline build, which sends no request")]
    Offline { url: String },
    #[error("cannot set up HTTP for the package index")]
    Http(#[source] http::HttpError),
    #[error("{url} is not a valid package index page: {reason}")]
    Page { url: String, reason: String },
    #[error("{url} is not a valid package index page")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url} is not a valid package index page: link `{href}`")]
    Link {
        url: String,
        href: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{url} is larger than {limit} bytes, the most {what} may be; it was refused")]
    TooLarge {
        url: String,
        limit: u64,
        what: &'static str,
    },
    #[error("{file} from {url} does not match its hash: expected sha256 {expected}, got {found}")]
    Checksum {
        file: String,
        url: String,
        expected: String,
        found: String,
    },
    #[error("metadata of {file}")]
    Metadata {
        file: String,
        #[source]
        source: metadata::MetadataError,
    },
    #[error(
        "metadata of {file}: a source distribution has to be built before its metadata is known"
    )]
    SdistMetadata { file: String },
    #[error("{url} answered a range request wrongly: {reason}")]
    Range { url: String, reason: String },
    #[error("cannot read `{path}`")]
    Local {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cache(#[from] crate::layer::cache::CacheError),
    #[error(transparent)]
    Wheel(#[from] wheel::WheelError),
}

/// Where package files come from: indexes (the first that knows a project wins, so a name
/// on a private index cannot be taken over from a public one) and find-links locations
/// (always merged in, as pip does).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    pub index_urls: Vec<String>,
    pub find_links: Vec<String>,
    /// An offline build (`build --offline`): no request is sent, no sdist is built; every file
    /// must already be in the cache.
    pub offline: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DistKind {
    Wheel(WheelName),
    Sdist,
}

/// One file of a project as an index lists it.
#[derive(Clone, Debug)]
pub(crate) struct DistFile {
    pub filename: String,
    /// An http(s) URL, or a local path for find-links directories.
    pub url: String,
    pub sha256: Option<Digest>,
    pub requires_python: Option<VersionSpecifiers>,
    pub yanked: bool,
    /// PEP 658/714: the index serves `<url>.metadata` (with its sha256 when given).
    pub metadata: Option<Option<Digest>>,
    pub version: Version,
    pub kind: DistKind,
}

/// A page or metadata file read whole.
struct Small {
    status: reqwest::StatusCode,
    /// Where it came from after redirects, the base of its relative links.
    url: reqwest::Url,
    json: bool,
    /// `None` when it was over the cap.
    body: Option<Vec<u8>>,
}

pub(crate) struct PackageIndex<'a> {
    http: reqwest::blocking::Client,
    sources: Sources,
    cache: &'a Cache,
    pages: Mutex<HashMap<String, Arc<Vec<DistFile>>>>,
}

impl<'a> PackageIndex<'a> {
    pub(crate) fn new(sources: Sources, cache: &'a Cache) -> Result<Self, IndexError> {
        let http = http::download_client().map_err(IndexError::Http)?;
        Ok(PackageIndex {
            http,
            sources,
            cache,
            pages: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn sources(&self) -> &Sources {
        &self.sources
    }

    pub(crate) fn cache(&self) -> &Cache {
        self.cache
    }

    /// Every file of a project (normalised name), from the first index that has it plus the
    /// find-links locations. Read once per run.
    pub(crate) fn files(&self, project: &str) -> Result<Arc<Vec<DistFile>>, IndexError> {
        if let Some(files) = self.pages.lock().expect("index pages").get(project) {
            return Ok(files.clone());
        }
        let files = Arc::new(self.read_files(project, &|_| true)?);
        self.pages
            .lock()
            .expect("index pages")
            .insert(project.to_owned(), files.clone());
        Ok(files)
    }

    /// The project's file named `filename`, as [`PackageIndex::files`] would list it, for a
    /// lock's pin: only that file of the page is kept, and the page is not kept for later,
    /// so installing from a lock holds no project's list of files (some list tens of
    /// thousands).
    pub(crate) fn file_named(
        &self,
        project: &str,
        filename: &str,
    ) -> Result<Option<DistFile>, IndexError> {
        let find = |files: &[DistFile]| files.iter().find(|f| f.filename == filename).cloned();
        if let Some(files) = self.pages.lock().expect("index pages").get(project) {
            return Ok(find(files));
        }
        Ok(find(&self.read_files(project, &|name| name == filename)?))
    }

    /// The files the indexes and find-links locations list for `project`, less those whose
    /// file name `keep` refuses.
    fn read_files(
        &self,
        project: &str,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<DistFile>, IndexError> {
        let mut files = Vec::new();
        for index in &self.sources.index_urls {
            let url = format!("{}/{project}/", index.trim_end_matches('/'));
            if let Some(found) = self.read_page(&url, project, keep)? {
                files = found;
                break;
            }
        }
        for location in &self.sources.find_links {
            if location.contains("://") {
                if let Some(found) = self.read_page(location, project, keep)? {
                    files.extend(found);
                }
            } else {
                let local = local_files(Path::new(location), project)?;
                files.extend(local.into_iter().filter(|f| keep(&f.filename)));
            }
        }
        Ok(files)
    }

    /// Reads one project page, keeping the links whose file name `keep` accepts; None when
    /// the index does not know the project.
    fn read_page(
        &self,
        url: &str,
        project: &str,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Vec<DistFile>>, IndexError> {
        let shown = redact(url);
        let started = std::time::Instant::now();
        let page = self.get_page(url)?;
        if page.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let base = page.url;
        let json = page.json;
        let body = page.body.unwrap_or_default();
        tracing::debug!(
            project,
            bytes = body.len(),
            ms = started.elapsed().as_millis() as u64,
            "project page read"
        );
        // Pages are UTF-8 (PEP 503, PEP 691); a stray byte is replaced rather than fatal. A
        // valid page is taken as it is, not copied: the largest are tens of MiB.
        let body = String::from_utf8(body)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
        let links = if json {
            parse_json_page_keeping(&body, keep).map_err(|source| IndexError::Json {
                url: shown.clone(),
                source,
            })?
        } else {
            let mut links = parse_html_page(&body);
            links.retain(|link| keep(&link.filename));
            links
        };
        drop(body);
        let mut files = Vec::new();
        for link in links {
            let absolute = base.join(&link.href).map_err(|source| IndexError::Link {
                url: shown.clone(),
                href: link.href.clone(),
                source,
            })?;
            let mut absolute_text = absolute.to_string();
            let mut sha256 = link.sha256;
            // PEP 503 puts the hash in the fragment.
            if let Some((without, fragment)) = absolute_text.clone().split_once('#') {
                if sha256.is_none()
                    && let Some(hex) = fragment.strip_prefix("sha256=")
                {
                    sha256 = Some(hex.to_owned());
                }
                absolute_text = without.to_owned();
            }
            // Hashes name cache files: only a parsed digest goes further.
            let checked = |hex: String, what: &str| {
                Digest::from_hex(&hex.to_ascii_lowercase()).map_err(|_| IndexError::Page {
                    url: shown.clone(),
                    reason: format!(
                        "the {what} of `{}` is `{}`, not a SHA256 (64 hex digits)",
                        link.filename.escape_debug(),
                        hex.escape_debug()
                    ),
                })
            };
            let sha256 = sha256.map(|hex| checked(hex, "hash")).transpose()?;
            let metadata = match link.metadata {
                Some(Some(hex)) => Some(Some(checked(hex, "metadata hash")?)),
                Some(None) => Some(None),
                None => None,
            };
            if let Some(file) = dist_file(
                &link.filename,
                absolute_text,
                sha256,
                link.requires_python.as_deref(),
                link.yanked,
                metadata,
                project,
            ) {
                files.push(file);
            }
        }
        Ok(Some(files))
    }

    /// A project page, through the page cache: within the max-age the index gave for it no
    /// request is sent, after it a conditional one (ETag, Last-Modified) that a 304 answers
    /// without the body, as pip's and uv's HTTP caches do. Pages without either validator or
    /// max-age, and pages from an address with credentials, are not kept.
    fn get_page(&self, url: &str) -> Result<Small, IndexError> {
        let path = self
            .cache
            .bucket(Bucket::PipPages)
            .join(Digest::of_bytes(url.as_bytes()).hex());
        let stored = read_stored_page(&path);
        let now = unix_now();
        let page_of = |meta: &StoredPage, body: Vec<u8>| {
            reqwest::Url::parse(&meta.url).ok().map(|url| Small {
                status: reqwest::StatusCode::OK,
                url,
                json: meta.json,
                body: Some(body),
            })
        };
        if let Some((meta, body)) = &stored
            && meta.fresh_until > now
            && let Some(page) = page_of(meta, body.clone())
        {
            return Ok(page);
        }
        let (small, fresh_for, etag, last_modified) = self.get_with_retries(
            url,
            |r| {
                let mut r = r.header(
                    reqwest::header::ACCEPT,
                    "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
                );
                if let Some((meta, _)) = &stored {
                    if let Some(etag) = &meta.etag {
                        r = r.header(reqwest::header::IF_NONE_MATCH, etag);
                    }
                    if let Some(date) = &meta.last_modified {
                        r = r.header(reqwest::header::IF_MODIFIED_SINCE, date);
                    }
                }
                r
            },
            |response| {
                let header = |name| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let etag = header(reqwest::header::ETAG);
                let last_modified = header(reqwest::header::LAST_MODIFIED);
                let fresh_for =
                    header(reqwest::header::CACHE_CONTROL).map_or(0, |value| max_age(&value));
                let json =
                    header(reqwest::header::CONTENT_TYPE).is_some_and(|v| v.contains("json"));
                let status = response.status();
                let url = response.url().clone();
                let body = if status.is_success() {
                    http::read_capped(response, MAX_PAGE_SIZE)?
                } else {
                    Some(Vec::new())
                };
                Ok((
                    Small {
                        status,
                        url,
                        json,
                        body,
                    },
                    fresh_for,
                    etag,
                    last_modified,
                ))
            },
        )?;
        if small.status == reqwest::StatusCode::NOT_MODIFIED
            && let Some((mut meta, body)) = stored
        {
            meta.fresh_until = now.saturating_add(fresh_for);
            let page = page_of(&meta, body.clone());
            // Failing to note the new freshness costs a request next time, nothing more.
            let _ = self.store_page(&path, &meta, &body);
            if let Some(page) = page {
                return Ok(page);
            }
        }
        if small.status != reqwest::StatusCode::NOT_FOUND && !small.status.is_success() {
            return Err(IndexError::Fetch {
                url: redact(url),
                source: http::TransferError::Status(small.status),
            });
        }
        let Some(body) = &small.body else {
            return Err(IndexError::TooLarge {
                url: redact(url),
                limit: MAX_PAGE_SIZE,
                what: "a project page",
            });
        };
        let keep = small.status.is_success()
            && small.url.username().is_empty()
            && small.url.password().is_none()
            && (etag.is_some() || last_modified.is_some() || fresh_for > 0);
        if keep {
            let meta = StoredPage {
                url: small.url.to_string(),
                json: small.json,
                etag,
                last_modified,
                fresh_until: now.saturating_add(fresh_for),
            };
            let _ = self.store_page(&path, &meta, body);
        }
        Ok(small)
    }

    fn store_page(&self, path: &Path, meta: &StoredPage, body: &[u8]) -> Result<(), IndexError> {
        let mut bytes = serde_json::to_vec(meta).expect("a page's record serialises");
        bytes.push(b'\n');
        bytes.extend_from_slice(body);
        self.store(path, &bytes)
    }

    /// GETs `url` and reads what `finish` needs of the response. 5xx answers, failed or
    /// stalled connections, and bodies that `finish` could not read are tried again.
    fn get_with_retries<T>(
        &self,
        url: &str,
        customize: impl Fn(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
        finish: impl Fn(reqwest::blocking::Response) -> io::Result<T>,
    ) -> Result<T, IndexError> {
        let fail = |source| IndexError::Fetch {
            url: redact(url),
            source,
        };
        if self.sources.offline {
            return Err(IndexError::Offline { url: redact(url) });
        }
        http::retry(url, http::ATTEMPTS, |_| {
            let response = customize(self.http.get(url))
                .send()
                .map_err(|e| http::send_failure(e).map(fail))?;
            if response.status().is_server_error() {
                return Err(http::Failed::Transient(fail(http::TransferError::Status(
                    response.status(),
                ))));
            }
            // What `finish` fails to read is the body breaking off or stalling.
            finish(response)
                .map_err(|e| http::Failed::Transient(fail(http::TransferError::Read(e))))
        })
    }

    /// A page or metadata file: a success's body read whole (at most `limit` bytes), other
    /// statuses but 404 refused.
    fn get_small(
        &self,
        url: &str,
        accept: Option<&'static str>,
        limit: u64,
        what: &'static str,
    ) -> Result<Small, IndexError> {
        let small = self.get_with_retries(
            url,
            |r| match accept {
                Some(accept) => r.header(reqwest::header::ACCEPT, accept),
                None => r,
            },
            |response| {
                let status = response.status();
                let url = response.url().clone();
                let json = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("json"));
                let body = if status.is_success() {
                    http::read_capped(response, limit)?
                } else {
                    Some(Vec::new())
                };
                Ok(Small {
                    status,
                    url,
                    json,
                    body,
                })
            },
        )?;
        if small.status != reqwest::StatusCode::NOT_FOUND && !small.status.is_success() {
            return Err(IndexError::Fetch {
                url: redact(url),
                source: http::TransferError::Status(small.status),
            });
        }
        if small.body.is_none() {
            return Err(IndexError::TooLarge {
                url: redact(url),
                limit,
                what,
            });
        }
        Ok(small)
    }

    /// The core metadata of a file: from the cache, the index's metadata file, or the file.
    pub(crate) fn metadata(&self, file: &DistFile) -> Result<CoreMetadata, IndexError> {
        let bytes = self.metadata_bytes(file)?;
        metadata::parse(&bytes, &format!("{} (METADATA)", file.filename)).map_err(|source| {
            IndexError::Metadata {
                file: file.filename.clone(),
                source,
            }
        })
    }

    fn metadata_bytes(&self, file: &DistFile) -> Result<Vec<u8>, IndexError> {
        let DistKind::Wheel(_) = file.kind else {
            return Err(IndexError::SdistMetadata {
                file: file.filename.clone(),
            });
        };
        // The index's hash names the cached file: only a real digest may (`../x` would not).
        let cached = file
            .sha256
            .as_ref()
            .map(|digest| self.cache.bucket(Bucket::PipMetadata).join(digest.hex()));
        if let Some(path) = &cached
            && let Ok(bytes) = std::fs::read(path)
        {
            return Ok(bytes);
        }
        let bytes = match (&file.metadata, file.url.contains("://")) {
            (Some(expected), true) => {
                let url = format!("{}.metadata", file.url);
                let small = self.get_small(&url, None, MAX_METADATA_SIZE, "a metadata file")?;
                if !small.status.is_success() {
                    return Err(IndexError::Fetch {
                        url: redact(&url),
                        source: http::TransferError::Status(small.status),
                    });
                }
                let bytes = small.body.unwrap_or_default();
                if let Some(expected) = expected {
                    let found = Digest::of_bytes(&bytes);
                    if &found != expected {
                        return Err(IndexError::Checksum {
                            file: format!("{}.metadata", file.filename),
                            url: redact(&url),
                            expected: expected.hex().to_owned(),
                            found: found.hex().to_owned(),
                        });
                    }
                }
                bytes
            }
            // A wheel already downloaded is read where it is; else only the spans the zip
            // reader needs are fetched, and the whole wheel only from a server that refuses
            // ranges.
            (_, true)
                if !file
                    .sha256
                    .as_ref()
                    .is_some_and(|d| self.cache.blob_path(d).is_file()) =>
            {
                match self.metadata_by_ranges(file)? {
                    Some(bytes) => bytes,
                    None => {
                        let (path, _) = self.download(file)?;
                        wheel::read_metadata(&path, &file.filename)?
                    }
                }
            }
            _ => {
                let (path, _) = self.download(file)?;
                wheel::read_metadata(&path, &file.filename)?
            }
        };
        if let Some(path) = cached {
            self.store(&path, &bytes)?;
        }
        Ok(bytes)
    }

    /// A remote wheel's METADATA read through range requests; None when the server refuses
    /// ranges (it answers 200 or 416), so that the caller downloads the wheel instead.
    fn metadata_by_ranges(&self, file: &DistFile) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(first) = self.get_range(&file.url, None)? else {
            return Ok(None);
        };
        let total = first.total;
        let failure = std::cell::RefCell::new(None);
        let fetch = |start: u64, end: u64| -> io::Result<Vec<u8>> {
            let error = match self.get_range(&file.url, Some((start, end))) {
                Ok(Some(span)) if span.total == total => return Ok(span.bytes),
                Ok(Some(span)) => IndexError::Range {
                    url: redact(&file.url),
                    reason: format!("the file was {total} bytes long, now {}", span.total),
                },
                Ok(None) => IndexError::Range {
                    url: redact(&file.url),
                    reason: "it served the first range, then refused another".to_owned(),
                },
                Err(error) => error,
            };
            let text = error.to_string();
            *failure.borrow_mut() = Some(error);
            Err(io::Error::other(text))
        };
        let mut reader = ranged::RangeReader::new(first, &fetch);
        let read = wheel::read_metadata_from(&mut reader, &file.filename);
        tracing::debug!(
            file = %file.filename,
            fetched = reader.fetched(),
            total,
            "metadata read through range requests"
        );
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) => Err(failure.take().unwrap_or(IndexError::Wheel(error))),
        }
    }

    /// GETs the bytes `[start, end)` of `url`, or its last [`ranged::TAIL`] bytes; None when
    /// the server does not answer with a partial response.
    fn get_range(
        &self,
        url: &str,
        span: Option<(u64, u64)>,
    ) -> Result<Option<ranged::Span>, IndexError> {
        let (header, limit) = match span {
            Some((start, end)) => (format!("bytes={start}-{}", end - 1), end - start),
            None => (format!("bytes=-{}", ranged::TAIL), ranged::TAIL),
        };
        let answer = self.get_with_retries(
            url,
            |r| r.header(reqwest::header::RANGE, &header),
            |response| {
                let status = response.status();
                if status != reqwest::StatusCode::PARTIAL_CONTENT {
                    // Not read: dropping the response ends a whole file's transfer.
                    return Ok(Err(status));
                }
                let content_range = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Ok((content_range, http::read_capped(response, limit)?)))
            },
        )?;
        let wrong = |reason: String| IndexError::Range {
            url: redact(url),
            reason,
        };
        match answer {
            Err(status)
                if status.is_success() || status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE =>
            {
                Ok(None)
            }
            Err(status) => Err(IndexError::Fetch {
                url: redact(url),
                source: http::TransferError::Status(status),
            }),
            Ok((None, _)) => Err(wrong("a partial response without Content-Range".to_owned())),
            Ok((_, None)) => Err(wrong(format!("it sent more than the {limit} bytes asked"))),
            Ok((Some(content_range), Some(bytes))) => {
                ranged::checked_span(&content_range, span.map(|(start, _)| start), bytes)
                    .map(Some)
                    .map_err(wrong)
            }
        }
    }

    fn store(&self, path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
        let io_err = |source| IndexError::Local {
            path: path.to_owned(),
            source,
        };
        let mut file = self
            .cache
            .atomic_file(path, crate::fsutil::Publish::PRIVATE)?;
        std::io::Write::write_all(&mut file, bytes).map_err(io_err)?;
        std::fs::create_dir_all(path.parent().expect("cache paths have parents"))
            .map_err(io_err)?;
        file.commit().map_err(io_err)
    }

    /// Downloads a file into the cache (or finds it there), verified against `file.sha256`
    /// where known. Returns its path and sha256.
    pub(crate) fn download(&self, file: &DistFile) -> Result<(PathBuf, Digest), IndexError> {
        if let Some(digest) = &file.sha256 {
            let path = self.cache.blob_path(digest);
            if path.is_file() {
                return Ok((path, digest.clone()));
            }
        }
        let started = std::time::Instant::now();
        let temp = self.cache.temp_file()?;
        let temp_io = |source| IndexError::Local {
            path: temp.path().to_owned(),
            source,
        };
        let mut writer = HashingWriter::new(io::BufWriter::new(temp.reopen().map_err(temp_io)?));
        if file.url.contains("://") {
            // Streamed to the file: a body that breaks off is not tried again here.
            let mut response = self.get_with_retries(&file.url, |r| r, Ok)?;
            if !response.status().is_success() {
                return Err(IndexError::Fetch {
                    url: redact(&file.url),
                    source: http::TransferError::Status(response.status()),
                });
            }
            io::copy(&mut response, &mut writer).map_err(|e| IndexError::Fetch {
                url: redact(&file.url),
                source: http::TransferError::Read(e),
            })?;
        } else {
            let mut source =
                std::fs::File::open(&file.url).map_err(|source| IndexError::Local {
                    path: PathBuf::from(&file.url),
                    source,
                })?;
            io::copy(&mut source, &mut writer).map_err(|source| IndexError::Local {
                path: PathBuf::from(&file.url),
                source,
            })?;
        }
        let (buffered, found, size) = writer.finish();
        buffered.into_inner().map_err(|e| temp_io(e.into_error()))?;
        tracing::debug!(
            file = file.filename,
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "downloaded"
        );
        if let Some(expected) = &file.sha256
            && &found != expected
        {
            return Err(IndexError::Checksum {
                file: file.filename.clone(),
                url: redact(&file.url),
                expected: expected.hex().to_owned(),
                found: found.hex().to_owned(),
            });
        }
        let path = self.cache.commit_blob(temp, &found)?;
        Ok((path, found))
    }
}

/// A link as an index page gives it, before it is made absolute.
pub(crate) struct Link {
    pub(crate) filename: String,
    pub(crate) href: String,
    pub(crate) sha256: Option<String>,
    pub(crate) requires_python: Option<String>,
    pub(crate) yanked: bool,
    pub(crate) metadata: Option<Option<String>>,
}

pub(crate) fn parse_json_page(body: &str) -> Result<Vec<Link>, serde_json::Error> {
    parse_json_page_keeping(body, &|_| true)
}

/// A PEP 691 page's links whose file name `keep` accepts; the others are parsed one at a time
/// and dropped, never collected.
fn parse_json_page_keeping(
    body: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Link>, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Page<'k>(&'k dyn Fn(&str) -> bool);
    struct Files<'k>(&'k dyn Fn(&str) -> bool);
    impl<'de> DeserializeSeed<'de> for Page<'_> {
        type Value = Vec<File>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<File>, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Page<'_> {
        type Value = Vec<File>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a project page")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<File>, A::Error> {
            let mut files = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == "files" && files.is_none() {
                    files = Some(map.next_value_seed(Files(self.0))?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            files.ok_or_else(|| serde::de::Error::missing_field("files"))
        }
    }
    impl<'de> DeserializeSeed<'de> for Files<'_> {
        type Value = Vec<File>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<File>, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Files<'_> {
        type Value = Vec<File>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of files")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<File>, A::Error> {
            let mut kept = Vec::new();
            while let Some(file) = seq.next_element::<File>()? {
                if (self.0)(&file.filename) {
                    kept.push(file);
                }
            }
            Ok(kept)
        }
    }
    #[derive(serde::Deserialize)]
    struct File {
        filename: String,
        url: String,
        #[serde(default)]
        hashes: HashMap<String, String>,
        #[serde(rename = "requires-python")]
        requires_python: Option<String>,
        #[serde(default)]
        yanked: serde_json::Value,
        #[serde(rename = "core-metadata")]
        core_metadata: Option<serde_json::Value>,
        #[serde(rename = "dist-info-metadata")]
        dist_info_metadata: Option<serde_json::Value>,
    }
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let files = Page(keep).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(files
        .into_iter()
        .map(|f| {
            let metadata = match f.core_metadata.or(f.dist_info_metadata) {
                Some(serde_json::Value::Bool(true)) => Some(None),
                Some(serde_json::Value::Object(hashes)) => Some(
                    hashes
                        .get("sha256")
                        .and_then(|v| v.as_str())
                        .map(str::to_ascii_lowercase),
                ),
                _ => None,
            };
            Link {
                filename: f.filename,
                href: f.url,
                sha256: f.hashes.get("sha256").map(|h| h.to_ascii_lowercase()),
                requires_python: f.requires_python,
                yanked: !matches!(
                    f.yanked,
                    serde_json::Value::Bool(false) | serde_json::Value::Null
                ),
                metadata,
            }
        })
        .collect())
}

/// PEP 503 pages: `<a href=… data-requires-python=… data-core-metadata=…>file</a>`.
pub(crate) fn parse_html_page(body: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let lower = body.to_ascii_lowercase();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<a ").map(|i| i + at) {
        let Some(tag_end) = lower[start..].find('>').map(|i| i + start) else {
            break;
        };
        let Some(close) = lower[tag_end..].find("</a>").map(|i| i + tag_end) else {
            break;
        };
        let attributes = parse_attributes(&body[start + 3..tag_end]);
        let text = unescape(body[tag_end + 1..close].trim());
        at = close + 4;
        let Some(href) = attributes.get("href") else {
            continue;
        };
        let metadata_attr = attributes
            .get("data-core-metadata")
            .or_else(|| attributes.get("data-dist-info-metadata"));
        let metadata =
            metadata_attr.map(|value| value.strip_prefix("sha256=").map(str::to_ascii_lowercase));
        let filename = if text.is_empty() {
            href.rsplit('/')
                .next()
                .unwrap_or_default()
                .split('#')
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            text
        };
        links.push(Link {
            filename,
            href: href.clone(),
            sha256: None,
            requires_python: attributes.get("data-requires-python").cloned(),
            yanked: attributes.contains_key("data-yanked"),
            metadata,
        });
    }
    links
}

fn parse_attributes(text: &str) -> HashMap<String, String> {
    let mut attributes = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, remaining) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(quote).unwrap_or(body.len());
                    (&body[..end], body.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            rest = remaining.trim_start();
            unescape(value)
        } else {
            String::new()
        };
        if !name.is_empty() {
            attributes.insert(name, value);
        }
    }
    attributes
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// What the page cache keeps of a page besides its body.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredPage {
    /// Where it came from after redirects, the base of its relative links.
    url: String,
    json: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Seconds since the epoch until which it is used without asking.
    fresh_until: u64,
}

/// A kept page: its record line, then its body. Anything unreadable is no page.
fn read_stored_page(path: &Path) -> Option<(StoredPage, Vec<u8>)> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(&mut file, MAX_PAGE_SIZE + 64 * 1024),
        &mut bytes,
    )
    .ok()?;
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let meta = serde_json::from_slice(&bytes[..newline]).ok()?;
    Some((meta, bytes[newline + 1..].to_vec()))
}

/// `max-age` of a Cache-Control value, in seconds (at most a day); 0 where the response may
/// not be reused without asking.
fn max_age(cache_control: &str) -> u64 {
    let directives: Vec<String> = cache_control
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "no-cache" || d == "no-store")
    {
        return 0;
    }
    directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age=")?.parse::<u64>().ok())
        .map_or(0, |age| age.min(24 * 60 * 60))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Recognises a wheel or sdist of `project`; other files (eggs, exe installers) are skipped.
pub(crate) fn dist_file(
    filename: &str,
    url: String,
    sha256: Option<Digest>,
    requires_python: Option<&str>,
    yanked: bool,
    metadata: Option<Option<Digest>>,
    project: &str,
) -> Option<DistFile> {
    let requires_python = requires_python
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| metadata::parse_requires_python(s).ok());
    let (version, kind) = if filename.ends_with(".whl") {
        let name = wheel::parse_wheel_filename(filename).ok()?;
        if wheel::normalize_name(&name.name) != project {
            return None;
        }
        (
            Version::from_str(&name.version).ok()?,
            DistKind::Wheel(name),
        )
    } else {
        (sdist_version(filename, project)?, DistKind::Sdist)
    };
    Some(DistFile {
        filename: filename.to_owned(),
        url,
        sha256,
        requires_python,
        yanked,
        metadata,
        version,
        kind,
    })
}

/// `kfp-server-api-2.0.5.tar.gz` → 2.0.5 for project `kfp-server-api`.
pub(crate) fn sdist_version(filename: &str, project: &str) -> Option<Version> {
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    stem.match_indices('-').find_map(|(at, _)| {
        (wheel::normalize_name(&stem[..at]) == project)
            .then(|| Version::from_str(&stem[at + 1..]).ok())
            .flatten()
    })
}

/// The distribution files of a local directory (a wheelhouse or find-links folder).
fn local_files(dir: &Path, project: &str) -> Result<Vec<DistFile>, IndexError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), "find-links directory does not exist");
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(IndexError::Local {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| IndexError::Local {
            path: dir.to_owned(),
            source,
        })?;
        let filename = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(mut file) = dist_file(
            &filename,
            path.display().to_string(),
            None,
            None,
            false,
            None,
            project,
        ) {
            let hashed = std::fs::File::open(&path)
                .and_then(crate::digest::digest_reader)
                .map_err(|source| IndexError::Local {
                    path: path.clone(),
                    source,
                })?;
            file.sha256 = Some(hashed.0);
            files.push(file);
        }
    }
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_html_pages() {
        let json = r#"{"meta":{"api-version":"1.1"},"name":"demo","files":[
            {"filename":"demo-1.0-py3-none-any.whl","url":"../../files/demo-1.0-py3-none-any.whl","hashes":{"sha256":"AB"},"requires-python":">=3.8","core-metadata":{"sha256":"cd"},"yanked":false},
            {"filename":"demo-0.9.tar.gz","url":"https://files.invalid/demo-0.9.tar.gz","hashes":{},"yanked":"broken"}]}"#;
        let links = parse_json_page(json).unwrap();
        // A lock's pin keeps only its file of the page; the others are checked and dropped.
        let kept = parse_json_page_keeping(json, &|name| name == "demo-0.9.tar.gz").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].filename, "demo-0.9.tar.gz");
        assert!(
            parse_json_page_keeping(json, &|_| false)
                .unwrap()
                .is_empty()
        );
        let bad_entry = r#"{"files":[{"filename":"x.whl"}]}"#;
        assert!(parse_json_page_keeping(bad_entry, &|_| false).is_err());
        assert!(parse_json_page_keeping(r#"{"files":[]} x"#, &|_| true).is_err());
        assert!(parse_json_page_keeping(r#"{"name":"demo"}"#, &|_| true).is_err());
        assert_eq!(links[0].sha256.as_deref(), Some("ab"));
        assert_eq!(links[0].metadata, Some(Some("cd".to_owned())));
        assert!(!links[0].yanked && links[1].yanked);
        let html = r#"<html><body><a href="/f/demo-1.0-py3-none-any.whl#sha256=EF" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=12">demo-1.0-py3-none-any.whl</a>
            <A HREF='demo-0.9.tar.gz' data-yanked>demo-0.9.tar.gz</A></body></html>"#;
        let links = parse_html_page(html);
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(links[0].metadata, Some(Some("12".to_owned())));
        assert!(links[1].yanked);
        assert_eq!(links[1].filename, "demo-0.9.tar.gz");
    }

    #[test]
    fn pages_are_reused_only_for_the_max_age_the_index_gave() {
        assert_eq!(max_age("max-age=600, public"), 600);
        assert_eq!(max_age("Public, Max-Age=30"), 30);
        assert_eq!(max_age("max-age=600, no-cache"), 0);
        assert_eq!(max_age("no-store"), 0);
        assert_eq!(max_age("max-age=soon"), 0);
        assert_eq!(max_age("max-age=99999999"), 24 * 60 * 60);
    }

    #[test]
    fn sdist_versions_and_redaction() {
        assert_eq!(
            sdist_version("kfp_server_api-2.0.5.tar.gz", "kfp-server-api")
                .unwrap()
                .to_string(),
            "2.0.5"
        );
        assert!(sdist_version("other-1.0.tar.gz", "kfp-server-api").is_none());
        assert_eq!(
            redact("https://user:secret@index.invalid/simple/"),
            "https://***@index.invalid/simple/"
        );
    }
}
