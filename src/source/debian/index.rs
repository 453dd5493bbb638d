//! Archive indexes: `InRelease` (signature checked), then `Packages` of each component for the
//! image's architecture (checked against the Release's SHA256), parsed into packages.
//!
//! Index files are kept in the cache under their sha256, so an unchanged archive costs one
//! `InRelease` download per suite. No index is read past its bound: `InRelease` past
//! [`MAX_INRELEASE_SIZE`], a `Packages` file past the size its Release states, its text past
//! [`MAX_PACKAGES_TEXT_SIZE`].

use std::io::Read;
use std::path::Path;

use super::apt_config::{self, AptSource, SignedBy};
use super::deb822::{self, Stanza};
use super::release::{self, Release};
use super::resolve::Package;
use super::signature::{self, Keyring};
use super::version::{self, Dependency};
use crate::digest::Digest;
use crate::http;
use crate::layer::cache::Cache;

/// `InRelease` files larger than this are refused. Debian's and Ubuntu's list every index of
/// every architecture and are under 1 MiB; this leaves room for big mirrors, not for a flood.
pub(crate) const MAX_INRELEASE_SIZE: u64 = 16 << 20;

/// A `Packages` index decompressing to more than this is refused. Debian's largest (main,
/// amd64) is under 100 MiB of text, held in memory while it is parsed.
pub(crate) const MAX_PACKAGES_TEXT_SIZE: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: http::TransferError,
    },
    #[error("cannot store {url} in the cache")]
    Store {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} is larger than {limit} bytes, {bound}; it was refused")]
    TooLarge {
        url: String,
        limit: u64,
        bound: &'static str,
    },
    #[error(transparent)]
    Signature(#[from] signature::SignatureError),
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    #[error("cannot decompress {url}")]
    Decompress {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// A human reason, not another error: too large, not text, a field not a number.
    #[error("{url}: {reason}")]
    Parse { url: String, reason: String },
    #[error("{url} is not a Packages index")]
    Syntax {
        url: String,
        #[source]
        source: deb822::Deb822Error,
    },
    #[error("{url}: package {package}, field {field}")]
    Relations {
        url: String,
        package: String,
        field: String,
        #[source]
        source: version::VersionError,
    },
    #[error("{url}: package {package}")]
    Version {
        url: String,
        package: String,
        #[source]
        source: version::VersionError,
    },
    #[error("{url}: package {package}: its Filename `{}` {fault}", crate::name::Shown(.filename))]
    Filename {
        url: String,
        package: String,
        filename: String,
        fault: crate::name::NameFault,
    },
    #[error("{url} lists no Packages index for {component}/binary-{arch}")]
    NoIndex {
        url: String,
        component: String,
        arch: String,
    },
    #[error(transparent)]
    Cache(#[from] crate::layer::cache::CacheError),
}

/// A package with where to get it.
#[derive(Clone, Debug)]
pub struct IndexedPackage {
    pub package: Package,
    /// The index stanza, written into the image's dpkg status.
    pub stanza: Stanza,
    /// The archive's base URI (from configuration, never stored in a lock file).
    pub base: String,
    /// `Filename`, relative to the archive's base: `pool/main/p/python3/…deb`.
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
    pub multi_arch: Option<String>,
}

/// Fetches `url` into memory, refusing more than `limit` bytes (`bound` says whose limit).
/// A failed connection, a stall or a 5xx answer is tried again from the start.
pub(crate) fn download(
    client: &reqwest::blocking::Client,
    url: &str,
    limit: u64,
    bound: &'static str,
) -> Result<Vec<u8>, IndexError> {
    let fail = |source| IndexError::Download {
        url: http::redact(url),
        source,
    };
    http::retry(url, http::ATTEMPTS, |_| {
        let response = http::get(client, url).map_err(|f| f.map(fail))?;
        if !response.status().is_success() {
            return Err(http::Failed::Permanent(fail(http::TransferError::Status(
                response.status(),
            ))));
        }
        http::read_capped(response, limit)
            .map_err(|e| http::read_failure(e).map(fail))?
            .ok_or_else(|| {
                http::Failed::Permanent(IndexError::TooLarge {
                    url: http::redact(url),
                    limit,
                    bound,
                })
            })
    })
}

fn keyrings(source: &AptSource, root: &Path) -> Result<Vec<Keyring>, IndexError> {
    Ok(match &source.signed_by {
        SignedBy::Keyrings(paths) => paths
            .iter()
            .map(|p| Keyring::load(p))
            .collect::<Result<_, _>>()?,
        SignedBy::Inline(armored) => vec![Keyring::from_armored(armored)?],
        SignedBy::Default => apt_config::default_keyrings(root)
            .iter()
            .map(|p| Keyring::load(p))
            .collect::<Result<_, _>>()?,
    })
}

/// All packages of `sources` for `arch`, in source order (earlier sources first).
pub(crate) fn load(
    http: &reqwest::blocking::Client,
    sources: &[AptSource],
    arch: &str,
    cache: &Cache,
    root: &Path,
) -> Result<Vec<IndexedPackage>, IndexError> {
    let mut packages = Vec::new();
    for source in sources {
        let keyrings = keyrings(source, root)?;
        for uri in &source.uris {
            let base = uri.trim_end_matches('/');
            for suite in &source.suites {
                let dists = format!("{base}/dists/{suite}");
                let inrelease_url = format!("{dists}/InRelease");
                let signed = download(
                    http,
                    &inrelease_url,
                    MAX_INRELEASE_SIZE,
                    "the most an InRelease may be",
                )?;
                let text = signature::verify_inrelease(&signed, &keyrings, &inrelease_url)?;
                let release = release::parse_release(&text)?;
                // A signed Release past its Valid-Until is a stale or replayed mirror.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                release.check_valid_until(now)?;
                for component in &source.components {
                    let (path, bytes) =
                        packages_index(http, cache, &dists, &release, component, arch)?;
                    let url = format!("{dists}/{path}");
                    let text = decompress(&path, &bytes, &url)?;
                    let stanzas = deb822::parse(&text).map_err(|source| IndexError::Syntax {
                        url: http::redact(&url),
                        source,
                    })?;
                    for stanza in stanzas {
                        packages.push(to_package(stanza, base, &url)?);
                    }
                }
            }
        }
    }
    Ok(packages)
}

/// Downloads (or takes from the cache) the best-compressed Packages index the Release lists.
fn packages_index(
    http: &reqwest::blocking::Client,
    cache: &Cache,
    dists: &str,
    release: &Release,
    component: &str,
    arch: &str,
) -> Result<(String, Vec<u8>), IndexError> {
    for suffix in [".xz", ".gz", ""] {
        let path = format!("{component}/binary-{arch}/Packages{suffix}");
        let Some(hash) = release.sha256.get(&path) else {
            continue;
        };
        if let Ok(digest) = Digest::from_hex(&hash.sha256)
            && let Ok(bytes) = std::fs::read(cache.blob_path(&digest))
            && release.check_file(&path, &bytes).is_ok()
        {
            return Ok((path, bytes));
        }
        // The signed Release states the size; nothing beyond it can match its hash.
        let bytes = download(
            http,
            &format!("{dists}/{path}"),
            hash.size,
            "the size its Release states",
        )?;
        release.check_file(&path, &bytes)?;
        let digest = Digest::of_bytes(&bytes);
        let mut temp = cache.temp_file()?;
        std::io::Write::write_all(&mut temp, &bytes).map_err(|source| IndexError::Store {
            url: http::redact(&format!("{dists}/{path}")),
            source,
        })?;
        cache.commit_blob(temp, &digest)?;
        return Ok((path, bytes));
    }
    Err(IndexError::NoIndex {
        url: http::redact(&format!("{dists}/InRelease")),
        component: component.to_owned(),
        arch: arch.to_owned(),
    })
}

/// The text of the index at `path` (of `url`), decompressed as its name says.
fn decompress(path: &str, bytes: &[u8], url: &str) -> Result<String, IndexError> {
    let bad = |reason: String| IndexError::Parse {
        url: http::redact(url),
        reason,
    };
    let reader: Box<dyn Read + '_> = if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(bytes))
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let text = http::read_capped(reader, MAX_PACKAGES_TEXT_SIZE)
        .map_err(|source| IndexError::Decompress {
            url: http::redact(url),
            source,
        })?
        .ok_or_else(|| {
            bad(format!("it decompresses to more than {MAX_PACKAGES_TEXT_SIZE} bytes, the most a Packages index may be"))
        })?;
    String::from_utf8(text).map_err(|_| bad("it is not UTF-8 text".to_owned()))
}

pub(crate) fn to_package(
    stanza: Stanza,
    base: &str,
    index_url: &str,
) -> Result<IndexedPackage, IndexError> {
    let field = |name: &str| stanza.get(name).unwrap_or("").trim().to_owned();
    let bad = |reason: String| IndexError::Parse {
        url: http::redact(index_url),
        reason,
    };
    let name = field("Package");
    let relations = |field_name: &str| {
        version::parse_relations(stanza.get(field_name).unwrap_or("")).map_err(|source| {
            IndexError::Relations {
                url: http::redact(index_url),
                package: name.clone(),
                field: field_name.to_owned(),
                source,
            }
        })
    };
    let mut depends = relations("Pre-Depends")?;
    depends.extend(relations("Depends")?);
    let flat = |groups: Vec<Vec<Dependency>>| groups.into_iter().flatten().collect::<Vec<_>>();
    let mut conflicts = flat(relations("Conflicts")?);
    conflicts.extend(flat(relations("Breaks")?));
    let provides = flat(relations("Provides")?);
    let version = field("Version")
        .parse()
        .map_err(|source| IndexError::Version {
            url: http::redact(index_url),
            package: name.clone(),
            source,
        })?;
    let package = Package {
        name: name.clone(),
        version,
        architecture: field("Architecture"),
        essential: field("Essential") == "yes",
        priority: field("Priority"),
        depends,
        conflicts,
        provides,
    };
    // Filename, Size and SHA256 become a URL, a download limit and a cache path.
    let filename = field("Filename");
    crate::name::RelPath::new(&filename).map_err(|fault| IndexError::Filename {
        url: http::redact(index_url),
        package: name.clone(),
        filename: filename.clone(),
        fault,
    })?;
    let size = field("Size")
        .parse()
        .map_err(|_| bad(format!("package {name}: its Size is not a number")))?;
    let sha256 = Digest::from_hex(&field("SHA256").to_ascii_lowercase())
        .map_err(|_| bad(format!("package {name}: its SHA256 is not 64 hex digits")))?;
    Ok(IndexedPackage {
        base: base.to_owned(),
        filename,
        size,
        sha256,
        multi_arch: stanza.get("Multi-Arch").map(|v| v.trim().to_owned()),
        package,
        stanza,
    })
}
