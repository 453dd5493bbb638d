//! Pulling a base image: the manifest for a platform, its config, and its layers into the
//! content-addressed cache, every digest and size checked as the bytes arrive.

use std::io::{self, BufWriter, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;

use super::client::{Body, Request};
use super::{Registry, RegistryError, blob_request, check, read_limited, scope};
use crate::digest::{Digest, HashingWriter};
use crate::image::spec::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::layer::cache::Cache;
use crate::reference::Reference;
use reqwest::blocking::Response;

/// Manifests and indexes larger than this are refused (the distribution spec's own bound).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
const MAX_CONFIG_SIZE: u64 = 8 << 20;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// An image pulled for one platform; its layer blobs are in the cache.
#[derive(Clone, Debug)]
pub struct PulledImage {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// Layer bytes fetched by this pull (0 when the cache had them all).
    pub downloaded: u64,
    /// The platform manifest and config as the registry served them, so that an offline build
    /// can find the same image again (see `crate::offline`).
    pub manifest_media_type: String,
    pub manifest_bytes: Vec<u8>,
    pub config_bytes: Vec<u8>,
}

pub fn pull(
    registry: &Registry,
    reference: &Reference,
    platform: &Platform,
    cache: &Cache,
) -> Result<PulledImage, RegistryError> {
    let repository = &reference.repository;
    let scopes = [scope(repository, "pull")];
    let tag_or_digest = match &reference.digest {
        Some(digest) => digest.to_string(),
        None => reference.tag_or_latest().to_owned(),
    };
    let (media_type, bytes, digest) = get_manifest(
        registry,
        repository,
        &tag_or_digest,
        &scopes,
        reference.digest.as_ref(),
    )?;
    let (manifest_digest, manifest_bytes, manifest_media_type) = if spec::is_index(&media_type) {
        let index: Index = parse(registry, &bytes, "index")?;
        let chosen = index
            .manifest_for(platform)
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: index.platform_list(),
            })?;
        let (media_type, bytes, digest) = get_manifest(
            registry,
            repository,
            &chosen.digest.to_string(),
            &scopes,
            Some(&chosen.digest),
        )?;
        (digest, bytes, media_type)
    } else {
        (digest, bytes, media_type)
    };
    let manifest: Manifest = parse(registry, &manifest_bytes, "manifest")?;
    let config_bytes = get_small_blob(registry, repository, &manifest.config, &scopes)?;
    let config: ImageConfig = parse(registry, &config_bytes, "image config")?;
    let actual = config.platform();
    if !platform.matches(&actual) {
        return Err(RegistryError::NoPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: actual.to_string(),
        });
    }
    let downloaded = fetch_layers(registry, repository, &manifest.layers, &scopes, cache)?;
    Ok(PulledImage {
        manifest_digest,
        manifest,
        config,
        downloaded,
        manifest_media_type,
        manifest_bytes,
        config_bytes,
    })
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    registry: &Registry,
    bytes: &[u8],
    what: &str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::BadJson {
        registry: registry.host.clone(),
        what: what.to_owned(),
        source,
    })
}

/// GETs a manifest or index and checks it against `expected` (a pull by digest) or the
/// registry's Docker-Content-Digest header. A body that breaks off or stalls is fetched again.
pub(super) fn get_manifest(
    registry: &Registry,
    repository: &str,
    reference: &str,
    scopes: &[String],
    expected: Option<&Digest>,
) -> Result<(String, Vec<u8>, Digest), RegistryError> {
    let mut attempt = 1;
    let (media_type, header_digest, bytes) = loop {
        let response = registry.send(&Request {
            method: Method::GET,
            url: registry.url(&format!("{repository}/manifests/{reference}")),
            scopes,
            headers: vec![("Accept", ACCEPT.to_owned())],
            body: Body::Empty,
            retry: true,
        })?;
        let response = check(registry, response, repository, "pull", || {
            // A tag has no `:`; a digest does, and is written after `@`.
            let separator = if reference.contains(':') { '@' } else { ':' };
            format!("image {repository}{separator}{reference}")
        })?;
        let media_type = response
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .unwrap_or_default();
        let header_digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        match read_limited(registry, response, "a manifest", MAX_MANIFEST_SIZE) {
            Ok(bytes) => break (media_type, header_digest, bytes),
            Err(RegistryError::Unreachable { source, .. })
                if attempt < registry.options.attempts =>
            {
                tracing::debug!(registry = %registry.host, reference, error = %source, attempt, "manifest download broke off");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    };
    let found = Digest::of_bytes(&bytes);
    if let Some(expected) = expected.or(header_digest.as_ref())
        && expected != &found
    {
        return Err(RegistryError::DigestMismatch {
            registry: registry.host.clone(),
            what: format!("the manifest {repository}:{reference}"),
            expected: expected.clone(),
            found,
        });
    }
    // Older registries omit Content-Type; the document's own mediaType field then decides.
    let media_type = if media_type.is_empty() || media_type == "application/json" {
        media_type_of(&bytes)
    } else {
        media_type
    };
    Ok((media_type, bytes, found))
}

/// The document's own `mediaType` field, where nothing else says it (a registry without
/// Content-Type, a bundle blob read by digest); an image manifest when it has none.
pub(super) fn media_type_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| spec::OCI_MANIFEST.to_owned())
}

fn get_small_blob(
    registry: &Registry,
    repository: &str,
    descriptor: &Descriptor,
    scopes: &[String],
) -> Result<Vec<u8>, RegistryError> {
    if descriptor.size > MAX_CONFIG_SIZE {
        return Err(RegistryError::TooLarge {
            registry: registry.host.clone(),
            what: format!("config {}", descriptor.digest),
            size: descriptor.size,
            limit: MAX_CONFIG_SIZE,
        });
    }
    let response = get_blob(registry, repository, &descriptor.digest, scopes)?;
    // Checked above to be within MAX_CONFIG_SIZE; nothing beyond the stated size is read.
    let bytes =
        read_limited(registry, response, "a config", descriptor.size).map_err(|e| match e {
            RegistryError::TooLarge { size, .. } => RegistryError::LargerThanDescriptor {
                registry: registry.host.clone(),
                what: format!("config {}", descriptor.digest),
                expected: descriptor.size,
                found: size,
            },
            other => other,
        })?;
    let found = Digest::of_bytes(&bytes);
    if found != descriptor.digest {
        return Err(RegistryError::DigestMismatch {
            registry: registry.host.clone(),
            what: "a config".to_owned(),
            expected: descriptor.digest.clone(),
            found,
        });
    }
    Ok(bytes)
}

/// Downloads the layers the cache lacks, a few at a time, each streamed to a temporary file
/// through sha256 and moved into the cache only when digest and size match.
fn fetch_layers(
    registry: &Registry,
    repository: &str,
    layers: &[Descriptor],
    scopes: &[String],
    cache: &Cache,
) -> Result<u64, RegistryError> {
    let missing: Vec<&Descriptor> = layers
        .iter()
        .filter(|l| {
            std::fs::metadata(cache.blob_path(&l.digest)).map_or(true, |m| m.len() != l.size)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let workers = registry.options.concurrency.clamp(1, missing.len().max(1));
    crate::workers::run(workers, || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= missing.len() || !errors.lock().expect("errors lock").is_empty() {
                return;
            }
            if let Err(e) = fetch_blob(registry, repository, missing[i], scopes, cache) {
                errors.lock().expect("errors lock").push(e);
            }
        }
    })?;
    match errors.into_inner().expect("errors lock").into_iter().next() {
        Some(error) => Err(error),
        None => Ok(missing.iter().map(|l| l.size).sum()),
    }
}

/// GETs a blob; a response that is not a success is the error.
pub(super) fn get_blob(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    scopes: &[String],
) -> Result<Response, RegistryError> {
    let response = registry.send(&blob_request(
        registry,
        Method::GET,
        repository,
        digest,
        scopes,
    ))?;
    check(registry, response, repository, "pull", || {
        format!("blob {digest} in {repository}")
    })
}

pub(super) fn fetch_blob(
    registry: &Registry,
    repository: &str,
    descriptor: &Descriptor,
    scopes: &[String],
    cache: &Cache,
) -> Result<(), RegistryError> {
    let digest = &descriptor.digest;
    let mut attempt = 1;
    loop {
        let response = get_blob(registry, repository, digest, scopes)?;
        let content_length = response.content_length();
        // One byte more than promised is enough to know the blob is wrong.
        let mut response = response.take(descriptor.size.saturating_add(1));
        let temp = cache.temp_file()?;
        let file = temp.reopen().map_err(|source| RegistryError::TempFile {
            registry: registry.host.clone(),
            path: temp.path().to_owned(),
            source,
        })?;
        let mut writer = HashingWriter::new(BufWriter::new(file));
        let copied = io::copy(&mut response, &mut writer);
        let (buffered, found, size) = writer.finish();
        let copied = copied.and_then(|_| {
            buffered
                .into_inner()
                .map_err(|e| e.into_error())
                .map(|_| ())
        });
        match copied {
            Ok(()) if found == *digest && size == descriptor.size => {
                cache.commit_blob(temp, digest)?;
                return Ok(());
            }
            // More than the descriptor states: refused, whatever the rest would have been.
            Ok(()) if size > descriptor.size => {
                return Err(RegistryError::LargerThanDescriptor {
                    registry: registry.host.clone(),
                    what: format!("blob {digest}"),
                    expected: descriptor.size,
                    found: content_length.unwrap_or(size).max(size),
                });
            }
            // A body that ended early is a network fault like any other: fetched again.
            Ok(()) if size < descriptor.size && attempt < registry.options.attempts => {
                tracing::debug!(registry = %registry.host, %digest, size, attempt, "blob download ended early");
                attempt += 1;
            }
            Ok(()) => {
                return Err(RegistryError::DigestMismatch {
                    registry: registry.host.clone(),
                    what: format!("blob {digest} ({size} bytes)"),
                    expected: digest.clone(),
                    found,
                });
            }
            // A body cut short or stalled: fetched again from the start.
            Err(e) if attempt < registry.options.attempts => {
                tracing::debug!(registry = %registry.host, %digest, error = %e, attempt, "blob download broke off");
                attempt += 1;
            }
            Err(e) => {
                return Err(RegistryError::Unreachable {
                    registry: registry.host.clone(),
                    during: format!("the download of blob {digest} broke off"),
                    source: crate::http::TransferError::Read(e),
                });
            }
        }
    }
}
