//! Pushing an image: blobs first (skipped when present, mounted when another repository of the
//! same registry has them, else uploaded), then platform manifests, the index, and the tag last.
//!
//! Spec: distribution-spec "Pushing blobs", "Mounting a blob from another repository",
//! "Pushing manifests". A push killed half way leaves blobs that a rerun finds with HEAD and
//! does not send again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;

use super::client::{Body, Request};
use super::{Registry, RegistryError, blob_request, check, scope};
use crate::digest::Digest;
use crate::image::referrer;
use crate::image::spec::{self, Index};
use crate::image::{Blob, BlobData, ImageArtifact};
use crate::reference::Reference;

#[derive(Clone, Debug, Default, Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
}

pub(super) enum BlobOutcome {
    Present,
    Mounted,
    Uploaded(u64),
}

/// Told about each blob as the push goes.
pub trait PushReporter: Sync {
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    fn blob_bytes(&self, _bytes: u64) {}
    fn blob_done(&self, _digest: &Digest, _size: u64, _how: &'static str) {}
}

pub struct NoPushReport;
impl PushReporter for NoPushReport {}

/// Where blobs are known to exist in a registry, so later pushes can mount them.
#[derive(Default)]
pub struct KnownBlobs {
    repositories: Mutex<HashMap<(String, Digest), Vec<String>>>,
}

impl KnownBlobs {
    pub fn record(&self, registry: &str, digest: &Digest, repository: &str) {
        let mut map = self.repositories.lock().expect("known blobs lock");
        let repos = map
            .entry((registry.to_owned(), digest.clone()))
            .or_default();
        if !repos.iter().any(|r| r == repository) {
            repos.push(repository.to_owned());
        }
    }

    pub(super) fn sources(&self, registry: &str, digest: &Digest, except: &str) -> Vec<String> {
        self.repositories
            .lock()
            .expect("known blobs lock")
            .get(&(registry.to_owned(), digest.clone()))
            .map(|repos| repos.iter().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }
}

/// Pushes `artifact` to `destination` (a tag, or a digest that must equal the artifact's).
pub fn push(
    registry: &Registry,
    artifact: &ImageArtifact,
    destination: &Reference,
    known: &KnownBlobs,
    reporter: &dyn PushReporter,
) -> Result<PushReport, RegistryError> {
    let repository = &destination.repository;
    if let Some(digest) = &destination.digest
        && digest != &artifact.root.digest
    {
        return Err(RegistryError::Protocol {
            registry: registry.host.clone(),
            message: format!(
                "{destination} names digest {digest}, but the image is {}",
                artifact.root.digest
            ),
        });
    }
    let blobs: Vec<&Blob> = artifact
        .blobs
        .values()
        .filter(|b| !artifact.is_document(&b.descriptor.digest))
        .collect();

    let mut report = PushReport {
        reference: destination.to_string(),
        digest: artifact.root.digest.to_string(),
        ..Default::default()
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcomes: Mutex<Vec<Result<BlobOutcome, RegistryError>>> = Mutex::new(Vec::new());
    let workers = registry.options.concurrency.clamp(1, blobs.len().max(1));
    crate::workers::run(workers, || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= blobs.len() || failed.load(Ordering::SeqCst) {
                return;
            }
            let blob = blobs[i];
            let sources = known.sources(&registry.host, &blob.descriptor.digest, repository);
            let outcome = push_blob(registry, repository, blob, &sources, reporter);
            if outcome.is_err() {
                failed.store(true, Ordering::SeqCst);
            } else {
                known.record(&registry.host, &blob.descriptor.digest, repository);
            }
            outcomes.lock().expect("outcomes lock").push(outcome);
        }
    })?;
    for outcome in outcomes.into_inner().expect("outcomes lock") {
        match outcome? {
            BlobOutcome::Present => report.blobs_present += 1,
            BlobOutcome::Mounted => report.blobs_mounted += 1,
            BlobOutcome::Uploaded(bytes) => {
                report.blobs_uploaded += 1;
                report.bytes_uploaded += bytes;
            }
        }
    }

    // Platform manifests before the index that names them; the tag only once all is there.
    let platform_manifests = artifact
        .manifests
        .iter()
        .map(|summary| &summary.manifest.digest)
        .filter(|digest| **digest != artifact.root.digest);
    for digest in platform_manifests.chain([&artifact.root.digest]) {
        put_manifest(
            registry,
            repository,
            &digest.to_string(),
            &artifact.blobs[digest],
        )?;
    }
    put_referrers(registry, repository, artifact)?;
    if let Some(tag) = &destination.tag {
        put_manifest(
            registry,
            repository,
            tag,
            &artifact.blobs[&artifact.root.digest],
        )?;
    }
    Ok(report)
}

/// The artifact's referrers, each after its subject: by digest, and where the registry did not
/// take their `subject` itself (no referrers API), listed in the fallback tag's index, merged
/// with what it lists already.
fn put_referrers(
    registry: &Registry,
    repository: &str,
    artifact: &ImageArtifact,
) -> Result<(), RegistryError> {
    for (subject, referrers) in referrer::by_subject(artifact) {
        let mut handled = true;
        for descriptor in &referrers {
            handled &= put_manifest(
                registry,
                repository,
                &descriptor.digest.to_string(),
                &artifact.blobs[&descriptor.digest],
            )?;
        }
        if handled {
            continue;
        }
        let tag = referrer::fallback_tag(&subject);
        let scopes = [scope(repository, "pull,push")];
        let mut index = match super::pull::get_manifest(registry, repository, &tag, &scopes, None) {
            Ok((_, bytes, _)) => super::pull::parse::<Index>(registry, &bytes, "referrers index")?,
            Err(RegistryError::NotFound { .. }) => Index::new(Some(spec::OCI_INDEX)),
            Err(e) => return Err(e),
        };
        if !referrer::merge_referrers(&mut index, &referrers) {
            continue;
        }
        let (descriptor, bytes) = referrer::index_document(&index);
        let document = Blob {
            descriptor,
            data: BlobData::Bytes(bytes),
        };
        put_manifest(registry, repository, &tag, &document)?;
    }
    Ok(())
}

pub(super) fn push_blob(
    registry: &Registry,
    repository: &str,
    blob: &Blob,
    mount_sources: &[String],
    reporter: &dyn PushReporter,
) -> Result<BlobOutcome, RegistryError> {
    let digest = &blob.descriptor.digest;
    let mut scopes = vec![scope(repository, "pull,push")];
    scopes.extend(mount_sources.iter().map(|source| scope(source, "pull")));
    let mut attempt = 1;
    loop {
        match try_push_blob(registry, repository, blob, mount_sources, &scopes, reporter) {
            Ok(outcome) => {
                let how = match outcome {
                    BlobOutcome::Present => "present",
                    BlobOutcome::Mounted => "mounted",
                    BlobOutcome::Uploaded(_) => "uploaded",
                };
                reporter.blob_done(digest, blob.descriptor.size, how);
                return Ok(outcome);
            }
            // The upload session is in an unknown state after a failed transfer: start over;
            // HEAD then finds the blob if it did arrive.
            Err(e) if is_transient(&e) && attempt < registry.options.attempts => {
                tracing::debug!(registry = %registry.host, %digest, error = %e, attempt, "blob upload failed, starting over");
                std::thread::sleep(registry.options.backoff * 2u32.pow(attempt - 1));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(error: &RegistryError) -> bool {
    match error {
        RegistryError::Unreachable { .. } => true,
        RegistryError::Status { status, .. } => {
            status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
        }
        _ => false,
    }
}

/// Whether `repository` has the blob, by HEAD: 404 is no; any other failure is an error. Also
/// how a mirror skips a blob that a destination already has.
pub(super) fn blob_present(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    scopes: &[String],
) -> Result<bool, RegistryError> {
    let response = registry.send(&blob_request(
        registry,
        Method::HEAD,
        repository,
        digest,
        scopes,
    ))?;
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => {
            check(registry, response, repository, "push", || {
                format!("HEAD of blob {digest}")
            })?;
            Ok(false)
        }
    }
}

fn try_push_blob(
    registry: &Registry,
    repository: &str,
    blob: &Blob,
    mount_sources: &[String],
    scopes: &[String],
    reporter: &dyn PushReporter,
) -> Result<BlobOutcome, RegistryError> {
    let digest = &blob.descriptor.digest;
    let size = blob.descriptor.size;
    if blob_present(registry, repository, digest, scopes)? {
        return Ok(BlobOutcome::Present);
    }

    let uploads = registry.url(&format!("{repository}/blobs/uploads/"));
    let mut session = None;
    for source in mount_sources {
        let mut url = uploads.clone();
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", source);
        let response = registry.send(&Request {
            method: Method::POST,
            url: url.clone(),
            scopes,
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
        })?;
        match response.status() {
            StatusCode::CREATED => return Ok(BlobOutcome::Mounted),
            // The registry could not mount and opened an ordinary upload instead.
            StatusCode::ACCEPTED => {
                session = Some(registry.resolve_location(&url, &response)?);
                break;
            }
            _ => {}
        }
    }
    let mut location = match session {
        Some(location) => location,
        None => {
            let response = registry.send(&Request {
                method: Method::POST,
                url: uploads.clone(),
                scopes,
                headers: Vec::new(),
                body: Body::Empty,
                retry: true,
            })?;
            let response = check(registry, response, repository, "push", || {
                format!("the start of an upload to {repository}")
            })?;
            registry.resolve_location(&uploads, &response)?
        }
    };

    reporter.blob_started(digest, size);
    let path = match &blob.data {
        BlobData::File(path) => path,
        BlobData::Bytes(bytes) => {
            let body = Body::Bytes(bytes.clone());
            finish_upload(registry, repository, scopes, location, digest, body)?;
            reporter.blob_bytes(size);
            return Ok(BlobOutcome::Uploaded(size));
        }
    };
    if size <= registry.options.chunk_size {
        let body = Body::File {
            path: path.clone(),
            offset: 0,
            len: size,
        };
        finish_upload(registry, repository, scopes, location, digest, body)?;
        reporter.blob_bytes(size);
        return Ok(BlobOutcome::Uploaded(size));
    }
    // Chunked: PATCH pieces in order, each answered with the location of the next.
    let mut offset = 0;
    while offset < size {
        let len = registry.options.chunk_size.min(size - offset);
        let response = registry.send(&Request {
            method: Method::PATCH,
            url: location.clone(),
            scopes,
            headers: vec![
                ("Content-Type", "application/octet-stream".to_owned()),
                ("Content-Range", format!("{}-{}", offset, offset + len - 1)),
            ],
            body: Body::File {
                path: path.clone(),
                offset,
                len,
            },
            retry: false,
        })?;
        let response = check(registry, response, repository, "push", || {
            format!("a chunk of blob {digest}")
        })?;
        location = registry.resolve_location(&location, &response)?;
        offset += len;
        reporter.blob_bytes(len);
    }
    finish_upload(registry, repository, scopes, location, digest, Body::Empty)?;
    Ok(BlobOutcome::Uploaded(size))
}

/// The closing PUT with `?digest=`, carrying the data (monolithic) or nothing (after chunks).
fn finish_upload(
    registry: &Registry,
    repository: &str,
    scopes: &[String],
    mut location: Url,
    digest: &Digest,
    body: Body,
) -> Result<(), RegistryError> {
    location
        .query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let response = registry.send(&Request {
        method: Method::PUT,
        url: location,
        scopes,
        headers: vec![("Content-Type", "application/octet-stream".to_owned())],
        body,
        retry: false,
    })?;
    let response = check(registry, response, repository, "push", || {
        format!("the upload of blob {digest}")
    })?;
    verify_digest_header(registry, &response, digest, "blob")
}

fn verify_digest_header(
    registry: &Registry,
    response: &reqwest::blocking::Response,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    if let Some(value) = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        && let Ok(found) = value.parse::<Digest>()
        && &found != expected
    {
        return Err(RegistryError::DigestMismatch {
            registry: registry.host.clone(),
            what: format!("a {what} digest header"),
            expected: expected.clone(),
            found,
        });
    }
    Ok(())
}

/// PUT of a manifest or index under a digest or tag, with its exact media type and bytes.
/// Returns whether the registry processed a `subject` (answered `OCI-Subject`), i.e. serves
/// the referrers API itself.
pub(super) fn put_manifest(
    registry: &Registry,
    repository: &str,
    reference: &str,
    document: &Blob,
) -> Result<bool, RegistryError> {
    let BlobData::Bytes(bytes) = &document.data else {
        return Err(RegistryError::ManifestNotInMemory {
            registry: registry.host.clone(),
        });
    };
    let scopes = [scope(repository, "pull,push")];
    let url = registry.url(&format!("{repository}/manifests/{reference}"));
    let response = registry.send(&Request {
        method: Method::PUT,
        url,
        scopes: &scopes,
        headers: vec![("Content-Type", document.descriptor.media_type.clone())],
        body: Body::Bytes(bytes.clone()),
        retry: true,
    })?;
    let kind = if spec::is_index(&document.descriptor.media_type) {
        "index"
    } else {
        "manifest"
    };
    let response = check(registry, response, repository, "push", || {
        format!("the {kind} {repository}:{reference}")
    })?;
    verify_digest_header(registry, &response, &document.descriptor.digest, kind)?;
    Ok(response.headers().contains_key("OCI-Subject"))
}
