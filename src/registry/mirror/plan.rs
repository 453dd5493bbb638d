//! Planning: everything an image consists of, read from the source before anything is written.
//!
//! In: the sources, the destination and the tag selection. Out: one [`Plan`] per image, with
//! every manifest and index under its root (all platforms), every OCI 1.1 referrer (each after
//! its subject) and every blob a manifest names (config and layers), deduplicated by digest.
//! Image manifest and index: <https://github.com/opencontainers/image-spec/blob/main/manifest.md>,
//! <https://github.com/opencontainers/image-spec/blob/main/image-index.md>.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::endpoints::rewrite;
use super::side::{Doc, Side, parse_doc, unpack_archive};
use super::tags::list_tags;
use super::{MirrorDest, MirrorError, MirrorSource, TagSelection, bundle_name};
use crate::digest::Digest;
use crate::image::bundle::Bundle;
use crate::image::spec::{self, Descriptor, Index, Manifest};
use crate::layer::cache::Cache;
use crate::reference::Reference;
use crate::registry::Registries;

/// One image to copy, with everything under it.
pub(super) struct Plan {
    pub(super) source: Side,
    pub(super) source_repository: String,
    pub(super) source_name: String,
    pub(super) original: Reference,
    pub(super) destination: Reference,
    pub(super) root: Doc,
    /// Platform manifests before the indexes that name them, the root, then referrers (each
    /// after its subject).
    pub(super) docs: Vec<Doc>,
    /// Per subject, its referrers as the source lists them.
    pub(super) referrers: Vec<(Digest, Vec<Descriptor>)>,
    pub(super) blobs: Vec<Descriptor>,
}

/// Reads every image of `sources`, whole, into a plan each. Archives are unpacked into
/// `unpacked`, which the caller keeps until the copy is done.
pub(super) fn plan_sources(
    sources: &[MirrorSource],
    destination: &MirrorDest,
    tags: &TagSelection,
    registries: &Registries,
    cache: &Cache,
    unpacked: &mut Vec<tempfile::TempDir>,
) -> Result<Vec<Plan>, MirrorError> {
    let mut plans: Vec<Plan> = Vec::new();
    let target = |original: &Reference| match destination {
        MirrorDest::Registry { registry, prefix } => rewrite(original, registry, prefix),
        // A bundle keeps each repository's full path; the original reference is annotated.
        _ => original.clone(),
    };
    for source in sources {
        match source {
            MirrorSource::Image(reference) => {
                let registry = registries.get(&reference.registry)?;
                let side = Side::Registry(registry.clone());
                let references =
                    if reference.tag.is_none() && reference.digest.is_none() && !tags.is_empty() {
                        let all = list_tags(&registry, &reference.repository)?;
                        let chosen = tags.select(&all);
                        if chosen.is_empty() {
                            return Err(MirrorError::NoTags {
                                repository: reference.to_string(),
                                available: if all.is_empty() {
                                    "none".to_owned()
                                } else {
                                    all.join(", ")
                                },
                            });
                        }
                        chosen
                            .into_iter()
                            .map(|tag| Reference {
                                tag: Some(tag),
                                ..reference.clone()
                            })
                            .collect()
                    } else {
                        let mut reference = reference.clone();
                        if reference.tag.is_none() && reference.digest.is_none() {
                            reference.tag = Some("latest".to_owned());
                        }
                        vec![reference]
                    };
                for reference in references {
                    let wanted = match (&reference.digest, &reference.tag) {
                        (Some(d), _) => d.to_string(),
                        (None, tag) => tag.clone().unwrap_or_default(),
                    };
                    let root = side
                        .get_doc(&reference.repository, &wanted)?
                        .ok_or_else(|| MirrorError::Missing {
                            source_name: format!("registry {}", reference.registry),
                            what: reference.to_string(),
                        })?;
                    plans.push(plan(
                        &side,
                        &reference.repository,
                        format!("docker://{reference}"),
                        reference.clone(),
                        target(&reference),
                        root,
                    )?);
                }
            }
            MirrorSource::Dir(_) | MirrorSource::Archive(_) => {
                let bundle = match source {
                    MirrorSource::Dir(dir) => Bundle::open(dir, &source.to_string())?,
                    MirrorSource::Archive(file) => {
                        let dir = unpack_archive(file, cache)?;
                        let bundle = Bundle::open(dir.path(), &source.to_string())?;
                        unpacked.push(dir);
                        bundle
                    }
                    MirrorSource::Image(_) => unreachable!("matched above"),
                };
                let bundle = Arc::new(bundle);
                let side = Side::Bundle(bundle.clone());
                for (ref_name, original, descriptor) in bundle.images() {
                    let original: Reference =
                        original.parse().map_err(|e| MirrorError::BadAnnotation {
                            source_name: source.to_string(),
                            ref_name: ref_name.to_string(),
                            source: e,
                        })?;
                    let descriptor =
                        Descriptor::new(&descriptor.media_type, descriptor.digest, descriptor.size);
                    let root = Doc {
                        bytes: Arc::from(bundle.read_document(&descriptor)?),
                        descriptor,
                    };
                    plans.push(plan(
                        &side,
                        &original.repository,
                        format!("{source} {ref_name}"),
                        original.clone(),
                        target(&original),
                        root,
                    )?);
                }
            }
        }
    }
    Ok(plans)
}

/// Two sources on one destination name would overwrite each other: refused before copying.
pub(super) fn refuse_collisions(
    plans: &[Plan],
    destination: &MirrorDest,
) -> Result<(), MirrorError> {
    let mut names: BTreeMap<String, (&str, &Digest)> = BTreeMap::new();
    for p in plans {
        // A bundle names images without their registry, so only the repository and tag count.
        let key = match destination {
            MirrorDest::Registry { .. } => p.destination.to_string(),
            _ => format!("{destination} {}", bundle_name(&p.destination)),
        };
        match names.get(&key) {
            Some((first, digest)) if *digest != &p.root.descriptor.digest => {
                return Err(MirrorError::Collision {
                    first: (*first).to_owned(),
                    second: p.source_name.clone(),
                    destination: key,
                });
            }
            _ => {
                names.insert(key, (&p.source_name, &p.root.descriptor.digest));
            }
        }
    }
    Ok(())
}

fn plan(
    source: &Side,
    repository: &str,
    source_name: String,
    original: Reference,
    destination: Reference,
    root: Doc,
) -> Result<Plan, MirrorError> {
    let name = source.name(repository);
    let mut docs = Vec::new();
    let mut blobs = BTreeMap::new();
    let mut subjects = Vec::new();
    let mut seen = BTreeSet::new();
    walk(
        source,
        repository,
        &name,
        root.clone(),
        &mut docs,
        &mut blobs,
        &mut subjects,
        &mut seen,
    )?;
    let mut referrers = Vec::new();
    let mut next = 0;
    while next < subjects.len() {
        let subject = subjects[next].clone();
        next += 1;
        let found = source.referrers(repository, &subject)?;
        if found.is_empty() {
            continue;
        }
        for descriptor in &found {
            if seen.contains(&descriptor.digest) {
                continue;
            }
            let doc = source
                .get_doc(repository, &descriptor.digest.to_string())?
                .ok_or_else(|| MirrorError::Missing {
                    source_name: name.clone(),
                    what: format!("{} (a referrer of {subject})", descriptor.digest),
                })?;
            walk(
                source,
                repository,
                &name,
                doc,
                &mut docs,
                &mut blobs,
                &mut subjects,
                &mut seen,
            )?;
        }
        referrers.push((subject, found));
    }
    Ok(Plan {
        source: source.clone(),
        source_repository: repository.to_owned(),
        source_name,
        original,
        destination,
        root,
        docs,
        referrers,
        blobs: blobs.into_values().collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn walk(
    source: &Side,
    repository: &str,
    name: &str,
    doc: Doc,
    docs: &mut Vec<Doc>,
    blobs: &mut BTreeMap<Digest, Descriptor>,
    subjects: &mut Vec<Digest>,
    seen: &mut BTreeSet<Digest>,
) -> Result<(), MirrorError> {
    if !seen.insert(doc.descriptor.digest.clone()) {
        return Ok(());
    }
    subjects.push(doc.descriptor.digest.clone());
    if spec::is_index(&doc.descriptor.media_type) {
        let index: Index = parse_doc(&doc, name)?;
        for child in &index.manifests {
            let child_doc = source
                .get_doc(repository, &child.digest.to_string())?
                .ok_or_else(|| MirrorError::Missing {
                    source_name: name.to_owned(),
                    what: format!(
                        "{} (named by index {})",
                        child.digest, doc.descriptor.digest
                    ),
                })?;
            walk(
                source, repository, name, child_doc, docs, blobs, subjects, seen,
            )?;
        }
    } else {
        let manifest: Manifest = parse_doc(&doc, name)?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            blobs.insert(blob.digest.clone(), blob.clone());
        }
    }
    docs.push(doc);
    Ok(())
}
