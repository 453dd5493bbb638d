//! Mirroring: copy images, digests unchanged, between registries and bundles.
//!
//! A source is an image reference, a bundle (`dir:PATH`, `oci-archive:FILE`) or `@FILE` (a
//! list of sources). A destination is a registry prefix, or a bundle. Manifests and indexes
//! are copied as their exact bytes, with every platform and every OCI 1.1 referrer (through
//! the referrers API, else the `sha256-<hex>` tag scheme that docker-registry 2.8 needs).
//!
//! Order at the destination: blobs (a few at a time; skipped when present, mounted when
//! another repository there has them), then manifests by digest, then referrer indexes, and the
//! tag last, so a tag never names something incomplete and a killed mirror is completed by a
//! rerun that skips what arrived. Registry-to-registry blobs pass through the layer cache as
//! files (never whole in memory), which also spares a rerun the download.
//!
//! This module is the public surface ([`mirror`], its options, its report) and the pipeline:
//! `endpoints` parses the arguments, `tags` picks tags, `side` reads either end, `plan` reads
//! every image whole before anything is written, `copy` writes each one. Specs: the OCI
//! distribution spec (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>)
//! and the image layout spec
//! (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>).

mod copy;
mod endpoints;
mod plan;
mod side;
mod tags;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use endpoints::{MirrorDest, MirrorSource};
pub use tags::TagSelection;

use self::copy::copy_image;
use self::side::{Side, staging_dir, unpack_into};
use super::push::{KnownBlobs, PushReporter};
use super::{Registries, RegistryError};
use crate::image::archive::{self, ArchiveError};
use crate::image::bundle::{Bundle, BundleError};
use crate::layer::cache::{Cache, CacheError};
use crate::reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Worker(#[from] crate::workers::WorkerPanicked),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(
        "`{0}` is not a mirror source: use an image reference (docker://HOST/REPOSITORY:TAG), @FILE, dir:PATH or oci-archive:FILE"
    )]
    BadSource(String),
    #[error("`{file}` line {line}")]
    SourceList {
        file: PathBuf,
        line: usize,
        #[source]
        source: Box<MirrorError>,
    },
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{0}` is not a mirror destination: use REGISTRY[:PORT][/PREFIX], dir:PATH or oci-archive:FILE"
    )]
    BadDestination(String),
    #[error("`{regex}` is not a regular expression")]
    BadRegex {
        regex: String,
        #[source]
        source: regex::Error,
    },
    #[error("{first} and {second} would both be copied to {destination}")]
    Collision {
        first: String,
        second: String,
        destination: String,
    },
    #[error("{repository} has no tag that the selection picks (its tags: {available})")]
    NoTags {
        repository: String,
        available: String,
    },
    #[error("{source_name} has no image {what}")]
    Missing { source_name: String, what: String },
    #[error("{what} of {source_name} is not valid JSON of that kind")]
    BadDocument {
        source_name: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the reference annotation of `{ref_name}` in {source_name} cannot be used")]
    BadAnnotation {
        source_name: String,
        ref_name: String,
        #[source]
        source: crate::reference::ReferenceError,
    },
}

/// What was (or, with --dry-run, would be) copied for one image.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MirroredImage {
    pub source: String,
    pub destination: String,
    pub digest: String,
    /// Manifests and indexes, referrers included.
    pub documents: usize,
    pub referrers: usize,
    pub blobs: usize,
    /// Blobs and documents together.
    pub bytes: u64,
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
}

/// Told about each blob (as a push is) and each image as the mirror goes.
pub trait MirrorReporter: PushReporter {
    fn image_done(&self, _image: &MirroredImage, _dry_run: bool) {}
}

/// How [`mirror`] chooses and copies: which tags of an untagged repository, and whether to
/// only read and report.
pub struct MirrorOptions {
    pub tags: TagSelection,
    pub dry_run: bool,
}

/// Copies every image of `sources` to `destination`. With `dry_run`, reads the sources and
/// reports what would be copied, writing nothing.
pub fn mirror(
    sources: &[MirrorSource],
    destination: &MirrorDest,
    options: &MirrorOptions,
    registries: &Registries,
    cache: &Cache,
    reporter: &dyn MirrorReporter,
) -> Result<Vec<MirroredImage>, MirrorError> {
    // Unpacked archives live until the copy is done.
    let mut unpacked = Vec::new();
    let plans = plan::plan_sources(
        sources,
        destination,
        &options.tags,
        registries,
        cache,
        &mut unpacked,
    )?;
    plan::refuse_collisions(&plans, destination)?;

    let (dest_side, staging) = if options.dry_run {
        (None, None)
    } else {
        match destination {
            MirrorDest::Registry { registry, .. } => {
                (Some(Side::Registry(registries.get(registry)?)), None)
            }
            MirrorDest::Dir(dir) => (
                Some(Side::Bundle(Arc::new(Bundle::create(
                    dir,
                    &destination.to_string(),
                )?))),
                None,
            ),
            MirrorDest::Archive(file) => {
                let staging = staging_dir(file);
                // An existing archive is added to, like a layout; a staging directory left by an
                // interrupted run already holds what it had.
                if !staging.exists() && file.exists() {
                    unpack_into(file, &staging)?;
                }
                let bundle = Bundle::create(&staging, &destination.to_string())?;
                (Some(Side::Bundle(Arc::new(bundle))), Some(staging))
            }
        }
    };

    let known = KnownBlobs::default();
    let mut reports = Vec::new();
    for p in &plans {
        let mut report = MirroredImage {
            source: p.source_name.clone(),
            destination: match destination {
                MirrorDest::Registry { .. } => format!("docker://{}", p.destination),
                _ => format!("{destination} {}", bundle_name(&p.destination)),
            },
            digest: p.root.descriptor.digest.to_string(),
            documents: p.docs.len(),
            referrers: p.referrers.iter().map(|(_, r)| r.len()).sum(),
            blobs: p.blobs.len(),
            bytes: p.blobs.iter().map(|b| b.size).sum::<u64>()
                + p.docs.iter().map(|d| d.descriptor.size).sum::<u64>(),
            ..Default::default()
        };
        if let Some(dest) = &dest_side {
            copy_image(p, dest, cache, &known, reporter, &mut report)?;
        }
        reporter.image_done(&report, options.dry_run);
        reports.push(report);
    }
    if let (MirrorDest::Archive(file), Some(staging)) = (destination, staging) {
        archive::write_layout_dir_archive(&staging, file)?;
        std::fs::remove_dir_all(&staging).map_err(|source| MirrorError::Read {
            path: staging.clone(),
            source,
        })?;
    }
    drop(unpacked);
    Ok(reports)
}

/// `REPOSITORY:TAG` (or `REPOSITORY@DIGEST`): an image's ref name in a bundle.
pub fn bundle_name(reference: &Reference) -> String {
    match (&reference.tag, &reference.digest) {
        (Some(tag), _) => format!("{}:{tag}", reference.repository),
        (None, Some(digest)) => format!("{}@{digest}", reference.repository),
        (None, None) => format!("{}:latest", reference.repository),
    }
}
