//! Copying one planned image to the destination, in the order that keeps a rerun correct.
//!
//! In: a [`Plan`] and the destination [`Side`]. Out: the blobs, documents, referrer indexes and
//! the tag at the destination, and the counts in the image's [`MirroredImage`]. Blobs go first,
//! a few at a time: skipped when present (HEAD), mounted when another repository on that
//! registry has them (OCI distribution spec, "Mounting a blob from another repository":
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#mounting-a-blob-from-another-repository>),
//! else copied through a verified local file. Then manifests by digest, then the fallback-tag
//! referrer indexes where the destination did not take the `subject` itself, and the tag last.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};

use super::plan::Plan;
use super::side::{Doc, Side, fallback_tag, parse_doc};
use super::{MirrorError, MirrorReporter, MirroredImage, bundle_name};
use crate::digest::Digest;
use crate::image::referrer;
use crate::image::spec::{self, Descriptor, Index};
use crate::image::{Blob, BlobData};
use crate::layer::cache::Cache;
use crate::registry::client::{Body, Request};
use crate::registry::push::{self, BlobOutcome, KnownBlobs};
use crate::registry::{Registry, pull, scope};

pub(super) fn copy_image(
    p: &Plan,
    dest: &Side,
    cache: &Cache,
    known: &KnownBlobs,
    reporter: &dyn MirrorReporter,
    report: &mut MirroredImage,
) -> Result<(), MirrorError> {
    let dest_repository = match dest {
        Side::Registry(_) => p.destination.repository.clone(),
        Side::Bundle(_) => p.original.repository.clone(),
    };
    if let Side::Registry(source) = &p.source {
        for blob in &p.blobs {
            known.record(&source.host, &blob.digest, &p.source_repository);
        }
    }
    let outcomes = Mutex::new(Vec::new());
    let workers = match dest {
        Side::Registry(r) => r.options.concurrency,
        Side::Bundle(_) => 4,
    };
    for_each_parallel(&p.blobs, workers, |blob| {
        let outcome = copy_blob(p, dest, &dest_repository, blob, cache, known, reporter)?;
        outcomes
            .lock()
            .expect("outcomes lock")
            .push((outcome, blob.size));
        Ok(())
    })?;
    for (outcome, size) in outcomes.into_inner().expect("outcomes lock") {
        match outcome {
            BlobOutcome::Present => report.blobs_present += 1,
            BlobOutcome::Mounted => report.blobs_mounted += 1,
            BlobOutcome::Uploaded(_) => {
                report.blobs_copied += 1;
                report.bytes_copied += size;
            }
        }
    }

    let mut subject_handled = true;
    let referrer_digests: BTreeSet<&Digest> = p
        .referrers
        .iter()
        .flat_map(|(_, r)| r.iter().map(|d| &d.digest))
        .collect();
    for doc in &p.docs {
        let handled = put_doc(
            dest,
            &dest_repository,
            &doc.descriptor.digest.to_string(),
            doc,
        )?;
        if referrer_digests.contains(&doc.descriptor.digest) {
            subject_handled &= handled;
        }
    }
    // Registries without the referrers API (and bundles) keep referrers in the fallback tag's
    // index, merged with what is there already.
    if !subject_handled || matches!(dest, Side::Bundle(_)) {
        for (subject, referrers) in &p.referrers {
            let tag = fallback_tag(subject);
            let mut index = match dest.get_doc(&dest_repository, &tag)? {
                Some(doc) => parse_doc::<Index>(&doc, &dest.name(&dest_repository))?,
                None => Index::new(Some(spec::OCI_INDEX)),
            };
            if !referrer::merge_referrers(&mut index, referrers) && !index.manifests.is_empty() {
                continue;
            }
            let (descriptor, bytes) = referrer::index_document(&index);
            let doc = Doc { descriptor, bytes };
            put_doc(dest, &dest_repository, &tag, &doc)?;
        }
    }
    // The tag last: once it is there, everything under it is.
    let tag = match dest {
        Side::Registry(_) => p.destination.tag.clone(),
        Side::Bundle(_) => Some(bundle_name(&p.original)),
    };
    match (dest, tag) {
        (Side::Registry(registry), Some(tag)) => {
            push::put_manifest(registry, &dest_repository, &tag, &p.root.blob())?;
        }
        (Side::Bundle(bundle), Some(name)) => {
            bundle.set_tag(&name, &p.root.descriptor, Some(&p.original.to_string()))?;
        }
        (_, None) => {}
    }
    Ok(())
}

/// Writes a document under `reference` (a digest or a tag). Returns whether a registry
/// processed its `subject` itself.
fn put_doc(dest: &Side, repository: &str, reference: &str, doc: &Doc) -> Result<bool, MirrorError> {
    match dest {
        Side::Registry(registry) => Ok(push::put_manifest(
            registry,
            repository,
            reference,
            &doc.blob(),
        )?),
        Side::Bundle(bundle) => {
            bundle.put_blob_bytes(&doc.descriptor, &doc.bytes)?;
            if reference.parse::<Digest>().is_err() {
                bundle.set_tag(&format!("{repository}:{reference}"), &doc.descriptor, None)?;
            }
            Ok(false)
        }
    }
}

fn copy_blob(
    p: &Plan,
    dest: &Side,
    dest_repository: &str,
    blob: &Descriptor,
    cache: &Cache,
    known: &KnownBlobs,
    reporter: &dyn MirrorReporter,
) -> Result<BlobOutcome, MirrorError> {
    let present = match dest {
        Side::Registry(registry) => {
            // The scope push_blob asks for too, so that one token serves both.
            let scopes = [scope(dest_repository, "pull,push")];
            push::blob_present(registry, dest_repository, &blob.digest, &scopes)?
        }
        Side::Bundle(bundle) => bundle.has_blob(blob),
    };
    if present {
        if let Side::Registry(registry) = dest {
            known.record(&registry.host, &blob.digest, dest_repository);
        }
        reporter.blob_done(&blob.digest, blob.size, "present");
        return Ok(BlobOutcome::Present);
    }
    if let Side::Registry(registry) = dest {
        let sources = known.sources(&registry.host, &blob.digest, dest_repository);
        // A mount needs no bytes: tried before the blob is downloaded for an upload.
        if mount(registry, dest_repository, &blob.digest, &sources)? {
            known.record(&registry.host, &blob.digest, dest_repository);
            reporter.blob_done(&blob.digest, blob.size, "mounted");
            return Ok(BlobOutcome::Mounted);
        }
    }
    let path = local_blob(p, blob, cache)?;
    match dest {
        Side::Registry(registry) => {
            let sources = known.sources(&registry.host, &blob.digest, dest_repository);
            let data = Blob {
                descriptor: blob.clone(),
                data: BlobData::File(path),
            };
            let outcome = push::push_blob(registry, dest_repository, &data, &sources, reporter)?;
            known.record(&registry.host, &blob.digest, dest_repository);
            Ok(outcome)
        }
        Side::Bundle(bundle) => {
            bundle.put_blob_file(blob, &path)?;
            reporter.blob_done(&blob.digest, blob.size, "copied");
            Ok(BlobOutcome::Uploaded(blob.size))
        }
    }
}

/// The blob as a verified local file: the bundle's own (checked now), or the cache's (downloaded
/// through sha256 unless a previous run left it there).
fn local_blob(p: &Plan, blob: &Descriptor, cache: &Cache) -> Result<PathBuf, MirrorError> {
    match &p.source {
        Side::Bundle(bundle) => {
            bundle.verify_blob(blob)?;
            Ok(bundle.blob_path(&blob.digest))
        }
        Side::Registry(registry) => {
            let path = cache.blob_path(&blob.digest);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
                return Ok(path);
            }
            let scopes = [scope(&p.source_repository, "pull")];
            pull::fetch_blob(registry, &p.source_repository, blob, &scopes, cache)?;
            Ok(path)
        }
    }
}

/// Asks the registry to mount `digest` from one of `sources` into `repository`; false when
/// none could (the upload session a refused mount opens is left to expire).
fn mount(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    sources: &[String],
) -> Result<bool, MirrorError> {
    for source in sources {
        let scopes = [scope(repository, "pull,push"), scope(source, "pull")];
        let mut url = registry.url(&format!("{repository}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", source);
        let response = registry.send(&Request {
            method: Method::POST,
            url,
            scopes: &scopes,
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
        })?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs `f` on every item with at most `workers` threads; the first error stops the others
/// from starting new items and is returned.
fn for_each_parallel<T: Sync>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<(), MirrorError> + Sync,
) -> Result<(), MirrorError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let error = Mutex::new(None);
    crate::workers::run(workers.clamp(1, items.len().max(1)), || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= items.len() || failed.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = f(&items[i]) {
                failed.store(true, Ordering::SeqCst);
                error.lock().expect("error lock").get_or_insert(e);
            }
        }
    })?;
    match error.into_inner().expect("error lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
