//! Conda channels: where their URLs come from, and fetching repodata and packages from them.
//!
//! A recipe's channel is a URL (`https://mirror.example/conda-forge`, `file:///srv/channel`)
//! or a name. Names go through configuration, as conda's own do: `custom_channels` of the
//! host's `.condarc`, else its `channel_alias` (or `OCI_BUILD_CONDA_CHANNEL_ALIAS`, which wins)
//! followed by the name. No channel host is built in: an air-gapped site points the alias at
//! its mirror and recipes keep saying `conda-forge`.
//!
//! What a channel serves is bounded: repodata by [`MAX_REPODATA_SIZE`], a package by the size
//! its repodata entry or lock states. A remote channel's repodata may only point at http and
//! https URLs, never at files of the building machine.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::LockedConda;
use crate::digest::HashingWriter;
use crate::http;
use crate::layer::cache::Cache;

/// Repodata larger than this, compressed or not, is refused: it is held in memory while it is
/// parsed. The largest public subdirs are a few hundred MiB of JSON.
pub(crate) const MAX_REPODATA_SIZE: u64 = 1 << 30;

/// The environment variable naming the channel alias (base URL that channel names go under).
pub(crate) const ALIAS_ENV: &str = "OCI_BUILD_CONDA_CHANNEL_ALIAS";

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(
        "conda channel `{0}` is a name and no channel alias is configured: set {ALIAS_ENV}, `channel_alias` or `custom_channels` in .condarc, or give the channel's URL"
    )]
    NoAlias(String),
    #[error(
        "the conda layer names no channels and .condarc lists none: give `channels` in the recipe"
    )]
    NoChannels,
    #[error("conda channel `{channel}` is not a usable URL: {reason}")]
    BadUrl { channel: String, reason: String },
    #[error("conda channel `{channel}` is not a usable URL")]
    Url {
        channel: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: http::TransferError,
    },
    #[error("cannot download {url}: it does not exist (404)")]
    Missing { url: String },
    #[error("{url} is not valid repodata")]
    BadRepodata {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url} is not valid repodata: cannot decompress it")]
    Decompress {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{url} is larger than {MAX_REPODATA_SIZE} bytes, the most repodata may be; it was refused"
    )]
    RepodataTooLarge { url: String },
    #[error(
        "{url} is {found} bytes or more, larger than the {expected} bytes its repodata entry or lock states; it was refused"
    )]
    LargerThanStated {
        url: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "conda channel `{channel}` is remote but points at `{url}`; a remote channel's packages must be http or https URLs"
    )]
    NotRemote { channel: String, url: String },
    #[error("conda channel {channel} has no repodata for {subdir} or noarch")]
    NoRepodata { channel: String, subdir: String },
    #[error(
        "{url} does not match the SHA256 of its {pinned_by} (expected {expected}, got {found}); the channel or a proxy is serving a different file"
    )]
    Checksum {
        url: String,
        pinned_by: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "locked conda package {package} names channel `{channel}`, which the layer no longer lists; run `oci-build lock`"
    )]
    UnknownChannel { package: String, channel: String },
    #[error("cannot set up HTTP for conda channels")]
    Http(#[source] http::HttpError),
    #[error(transparent)]
    Cache(#[from] crate::layer::cache::CacheError),
    #[error("cannot store a download in the cache")]
    Io(#[source] io::Error),
}

/// Channel settings of the host: `OCI_BUILD_CONDA_CHANNEL_ALIAS` and `.condarc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChannelConfig {
    pub alias: Option<String>,
    pub custom_channels: BTreeMap<String, String>,
    pub channels: Vec<String>,
}

/// A layer's channel: as the recipe names it, and its base URL (no trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedChannel {
    pub name: String,
    pub url: String,
}

impl ChannelConfig {
    /// `$CONDARC`, else `~/.condarc`; then the alias from the environment.
    pub(crate) fn from_host() -> ChannelConfig {
        let path = std::env::var_os("CONDARC")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".condarc")));
        let mut config = path
            .and_then(|p| fs::read_to_string(p).ok())
            .map(|text| ChannelConfig::parse_condarc(&text))
            .unwrap_or_default();
        if let Ok(alias) = std::env::var(ALIAS_ENV)
            && !alias.trim().is_empty()
        {
            config.alias = Some(alias.trim().to_owned());
        }
        config
    }

    /// Reads the three keys that matter here from a `.condarc`. It is YAML, but these keys are
    /// written as plain scalars, block lists and block maps; anything fancier is ignored.
    pub(crate) fn parse_condarc(text: &str) -> ChannelConfig {
        let mut config = ChannelConfig::default();
        let mut section = "";
        for line in text.lines() {
            let line = line.split(" #").next().unwrap_or("").trim_end();
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let indented = line.starts_with([' ', '\t']);
            let item = line.trim();
            if !indented {
                let (key, value) = item.split_once(':').unwrap_or((item, ""));
                let value = unquote(value.trim());
                section = "";
                match key.trim() {
                    "channel_alias" if !value.is_empty() => config.alias = Some(value),
                    "custom_channels" => section = "custom_channels",
                    "channels" => {
                        section = "channels";
                        // Flow style: channels: [a, b]
                        if let Some(list) =
                            value.strip_prefix('[').and_then(|v| v.strip_suffix(']'))
                        {
                            config.channels.extend(
                                list.split(',')
                                    .map(|c| unquote(c.trim()))
                                    .filter(|c| !c.is_empty()),
                            );
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match section {
                "channels" => {
                    if let Some(channel) = item.strip_prefix('-') {
                        config.channels.push(unquote(channel.trim()));
                    }
                }
                "custom_channels" => {
                    // `name: https://host/path` — split at the first `: `.
                    if let Some((name, url)) = item.split_once(": ") {
                        config
                            .custom_channels
                            .insert(unquote(name.trim()), unquote(url.trim()));
                    }
                }
                _ => {}
            }
        }
        config
    }

    /// The base URLs of a layer's channels (the host's `channels` when the layer has none).
    pub(crate) fn resolve(
        &self,
        channels: &[String],
    ) -> Result<Vec<ResolvedChannel>, ChannelError> {
        let channels = if channels.is_empty() {
            &self.channels
        } else {
            channels
        };
        if channels.is_empty() {
            return Err(ChannelError::NoChannels);
        }
        channels.iter().map(|c| self.resolve_one(c)).collect()
    }

    fn resolve_one(&self, channel: &str) -> Result<ResolvedChannel, ChannelError> {
        let url = if is_url(channel) {
            channel.to_owned()
        } else if let Some(base) = self.custom_channels.get(channel) {
            format!("{}/{channel}", base.trim_end_matches('/'))
        } else if let Some(alias) = &self.alias {
            format!("{}/{channel}", alias.trim_end_matches('/'))
        } else {
            return Err(ChannelError::NoAlias(channel.to_owned()));
        };
        if !is_url(&url) {
            return Err(ChannelError::BadUrl {
                channel: channel.to_owned(),
                reason: format!("`{url}` is not an http, https or file URL"),
            });
        }
        Ok(ResolvedChannel {
            name: channel.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
        })
    }
}

fn unquote(value: &str) -> String {
    value.trim_matches(['"', '\'']).to_owned()
}

fn is_url(text: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
}

/// The HTTP client for channels: the system's CA store, the idle timeout of [`crate::http`].
pub(crate) fn http_client() -> Result<reqwest::blocking::Client, ChannelError> {
    http::download_client().map_err(ChannelError::Http)
}

fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Refuses a package URL that leaves the web for a remote channel: repodata (its `base_url`,
/// its entries) or a lock naming `file:///etc/…` must not make the build read local files.
pub(crate) fn check_scheme(channel: &ResolvedChannel, url: &str) -> Result<(), ChannelError> {
    if is_remote(&channel.url) && !is_remote(url) {
        return Err(ChannelError::NotRemote {
            channel: http::redact(&channel.url),
            url: http::redact(url),
        });
    }
    Ok(())
}

/// A local path of a `file://` URL.
fn file_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    // file:///abs/path and file://localhost/abs/path.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    Some(PathBuf::from(percent_decode(rest)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a URL for reading; `Ok(None)` when it does not exist (404, missing file). One try:
/// callers read the body within [`http::retry`].
fn open(
    client: &reqwest::blocking::Client,
    url: &str,
) -> Result<Option<Box<dyn Read + Send>>, http::Failed<ChannelError>> {
    let fail = |source| ChannelError::Download {
        url: http::redact(url),
        source,
    };
    if let Some(path) = file_path(url) {
        return match fs::File::open(&path) {
            Ok(file) => Ok(Some(Box::new(file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(http::Failed::Permanent(fail(http::TransferError::Read(e)))),
        };
    }
    let response = http::get(client, url).map_err(|f| f.map(fail))?;
    match response.status() {
        s if s.is_success() => Ok(Some(Box::new(response))),
        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::FORBIDDEN => Ok(None),
        s => Err(http::Failed::Permanent(fail(http::TransferError::Status(
            s,
        )))),
    }
}

/// The repodata of one subdir of a channel: `repodata.json.zst` where offered, else
/// `repodata.json`. `Ok(None)` when the channel has neither.
pub(crate) fn fetch_repodata(
    client: &reqwest::blocking::Client,
    channel: &ResolvedChannel,
    subdir: &str,
) -> Result<Option<(String, Vec<u8>)>, ChannelError> {
    let base = format!("{}/{subdir}/repodata.json", channel.url);
    let zst_url = format!("{base}.zst");
    if let Some(bytes) = read_repodata(client, &zst_url, true)? {
        return Ok(Some((zst_url, bytes)));
    }
    Ok(read_repodata(client, &base, false)?.map(|bytes| (base, bytes)))
}

/// Reads repodata whole, decompressing it when `zst`; `Ok(None)` when it does not exist. A
/// transfer that fails in the connection is made again from the start.
fn read_repodata(
    client: &reqwest::blocking::Client,
    url: &str,
    zst: bool,
) -> Result<Option<Vec<u8>>, ChannelError> {
    let too_large = || {
        http::Failed::Permanent(ChannelError::RepodataTooLarge {
            url: http::redact(url),
        })
    };
    let broken = |e: io::Error| {
        http::read_failure(e).map(|source| ChannelError::Download {
            url: http::redact(url),
            source,
        })
    };
    http::retry(url, http::ATTEMPTS, |_| {
        let Some(reader) = open(client, url)? else {
            return Ok(None);
        };
        if !zst {
            return match http::read_capped(reader, MAX_REPODATA_SIZE) {
                Ok(Some(bytes)) => Ok(Some(bytes)),
                Ok(None) => Err(too_large()),
                Err(e) => Err(broken(e)),
            };
        }
        // Both sides bounded: the download, and what it decompresses to.
        let mut compressed = reader.take(MAX_REPODATA_SIZE);
        match zstd::stream::read::Decoder::new(&mut compressed)
            .and_then(|d| http::read_capped(d, MAX_REPODATA_SIZE))
        {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => Err(too_large()),
            Err(_) if compressed.limit() == 0 => Err(too_large()),
            // Not the connection: the bytes that came are not zstd.
            Err(e) if !http::is_transient(&e) => {
                Err(http::Failed::Permanent(ChannelError::Decompress {
                    url: http::redact(url),
                    source: e,
                }))
            }
            Err(e) => Err(broken(e)),
        }
    })
}

/// Where a locked package is fetched from, and the URL of its channel.
pub(crate) fn package_url(
    channels: &[ResolvedChannel],
    locked: &LockedConda,
) -> Result<(String, String), ChannelError> {
    let channel = channels
        .iter()
        .find(|c| c.name == locked.channel)
        .ok_or_else(|| ChannelError::UnknownChannel {
            package: super::dist_name(locked),
            channel: locked.channel.clone(),
        })?;
    let url = match &locked.url {
        Some(url) => url.clone(),
        None => format!("{}/{}/{}", channel.url, locked.subdir, locked.filename),
    };
    check_scheme(channel, &url)?;
    Ok((url, channel.url.clone()))
}

/// Downloads (or finds in the cache) a package file, verified against its pinned SHA256.
pub(crate) fn fetch_package(
    client: &reqwest::blocking::Client,
    cache: &Cache,
    locked: &LockedConda,
    url: &str,
) -> Result<PathBuf, ChannelError> {
    let expected = &locked.sha256;
    let path = cache.blob_path(expected);
    if fs::metadata(&path).is_ok() {
        return Ok(path);
    }
    // Each try downloads into a fresh temporary file; a failed one's is dropped.
    let (temp, found, size) = http::retry(url, http::ATTEMPTS, |_| {
        let reader = open(client, url)?.ok_or_else(|| {
            http::Failed::Permanent(ChannelError::Missing {
                url: http::redact(url),
            })
        })?;
        let temp = cache
            .temp_file()
            .map_err(|e| http::Failed::Permanent(e.into()))?;
        let file = temp
            .reopen()
            .map_err(|e| http::Failed::Permanent(ChannelError::Io(e)))?;
        let mut writer = HashingWriter::new(io::BufWriter::new(file));
        // One byte more than the stated size is enough to refuse the file.
        let limit = locked.size.map_or(u64::MAX, |size| size.saturating_add(1));
        io::copy(&mut reader.take(limit), &mut writer).map_err(|e| {
            http::read_failure(e).map(|source| ChannelError::Download {
                url: http::redact(url),
                source,
            })
        })?;
        let (buffered, found, size) = writer.finish();
        buffered
            .into_inner()
            .map_err(|e| http::Failed::Permanent(ChannelError::Io(e.into_error())))?;
        Ok((temp, found, size))
    })?;
    if let Some(expected) = locked.size
        && size > expected
    {
        return Err(ChannelError::LargerThanStated {
            url: http::redact(url),
            expected,
            found: size,
        });
    }
    if &found != expected {
        return Err(ChannelError::Checksum {
            url: http::redact(url),
            pinned_by: "repodata entry or lock",
            expected: expected.hex().to_owned(),
            found: found.hex().to_owned(),
        });
    }
    Ok(cache.commit_blob(temp, expected)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condarc_alias_custom_channels_and_channels() {
        let config = ChannelConfig::parse_condarc(
            "# site mirror\nchannel_alias: https://mirror.example/conda\nchannels:\n  - conda-forge\n  - 'bioconda'\ncustom_channels:\n  internal: https://intranet.example/channels  # ours\nshow_channel_urls: true\n",
        );
        assert_eq!(
            config.alias.as_deref(),
            Some("https://mirror.example/conda")
        );
        assert_eq!(config.channels, ["conda-forge", "bioconda"]);
        let resolved = config
            .resolve(&[
                "conda-forge".into(),
                "internal".into(),
                "file:///srv/ch/".into(),
            ])
            .unwrap();
        let urls: Vec<&str> = resolved.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://mirror.example/conda/conda-forge",
                "https://intranet.example/channels/internal",
                "file:///srv/ch"
            ]
        );
        let flow = ChannelConfig::parse_condarc("channels: [a, \"b\"]\n");
        assert_eq!(flow.channels, ["a", "b"]);
    }

    #[test]
    fn a_name_without_alias_is_refused_with_what_to_set() {
        let error = ChannelConfig::default()
            .resolve(&["conda-forge".into()])
            .unwrap_err()
            .to_string();
        assert!(error.contains(ALIAS_ENV), "{error}");
    }

    #[test]
    fn file_urls_become_paths() {
        assert_eq!(
            file_path("file:///srv/my%20channel/noarch").unwrap(),
            PathBuf::from("/srv/my channel/noarch")
        );
        assert_eq!(
            file_path("file://localhost/srv").unwrap(),
            PathBuf::from("/srv")
        );
        assert!(file_path("https://x").is_none());
    }
}
