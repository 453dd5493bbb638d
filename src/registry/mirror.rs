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

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::Serialize;

use super::client::{Body, Request};
use super::push::{BlobOutcome, KnownBlobs, PushReporter};
use super::{Registries, Registry, RegistryError, check, pull, push, read_limited, scope};
use crate::digest::Digest;
use crate::image::archive::{self, ArchiveError};
use crate::image::bundle::{Bundle, BundleError};
use crate::image::spec::{self, Descriptor, Index, Manifest};
use crate::image::{Blob, BlobData};
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
    #[error("`{file}` line {line}: {message}")]
    SourceList {
        file: PathBuf,
        line: usize,
        message: String,
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
    #[error("`{0}` is not a regular expression: {1}")]
    BadRegex(String, String),
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
    #[error("{what} of {source_name} is not valid JSON of that kind ({message})")]
    BadDocument {
        source_name: String,
        what: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Sources, destinations, the rewrite rule

/// One SOURCE argument, after `@FILE` lists are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorSource {
    Image(Reference),
    Dir(PathBuf),
    Archive(PathBuf),
}

impl fmt::Display for MirrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorSource::Image(r) => write!(f, "docker://{r}"),
            MirrorSource::Dir(p) => write!(f, "dir:{}", p.display()),
            MirrorSource::Archive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl FromStr for MirrorSource {
    type Err = MirrorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let path = |p: &str| {
            if p.is_empty() {
                Err(MirrorError::BadSource(s.to_owned()))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some(p) = s.strip_prefix("dir:").or_else(|| s.strip_prefix("oci:")) {
            return Ok(MirrorSource::Dir(path(p)?));
        }
        if let Some(p) = s.strip_prefix("oci-archive:") {
            return Ok(MirrorSource::Archive(path(p)?));
        }
        let reference = s.strip_prefix("docker://").unwrap_or(s);
        reference
            .parse()
            .map(MirrorSource::Image)
            .map_err(|_| MirrorError::BadSource(s.to_owned()))
    }
}

impl MirrorSource {
    /// Parses one SOURCE argument: `@FILE` is a list of sources, one a line, `#` starting a
    /// comment; anything else is one source.
    pub fn parse_arg(arg: &str) -> Result<Vec<MirrorSource>, MirrorError> {
        let Some(file) = arg.strip_prefix('@') else {
            return Ok(vec![arg.parse()?]);
        };
        let file = PathBuf::from(file);
        let text = std::fs::read_to_string(&file).map_err(|source| MirrorError::Read {
            path: file.clone(),
            source,
        })?;
        let mut sources = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let source = line
                .parse()
                .map_err(|e: MirrorError| MirrorError::SourceList {
                    file: file.clone(),
                    line: number + 1,
                    message: e.to_string(),
                })?;
            sources.push(source);
        }
        Ok(sources)
    }
}

/// Where `--to` copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorDest {
    /// A registry and a repository prefix (possibly empty): `registry.example:5000/mlrun`.
    Registry {
        registry: String,
        prefix: String,
    },
    Dir(PathBuf),
    Archive(PathBuf),
}

impl fmt::Display for MirrorDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorDest::Registry { registry, prefix } if prefix.is_empty() => {
                write!(f, "{registry}")
            }
            MirrorDest::Registry { registry, prefix } => write!(f, "{registry}/{prefix}"),
            MirrorDest::Dir(p) => write!(f, "dir:{}", p.display()),
            MirrorDest::Archive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl FromStr for MirrorDest {
    type Err = MirrorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MirrorError::BadDestination(s.to_owned());
        if let Some(p) = s.strip_prefix("dir:").or_else(|| s.strip_prefix("oci:")) {
            return (!p.is_empty())
                .then(|| MirrorDest::Dir(PathBuf::from(p)))
                .ok_or_else(bad);
        }
        if let Some(p) = s.strip_prefix("oci-archive:") {
            return (!p.is_empty())
                .then(|| MirrorDest::Archive(PathBuf::from(p)))
                .ok_or_else(bad);
        }
        let rest = s
            .strip_prefix("docker://")
            .unwrap_or(s)
            .trim_end_matches('/');
        let (registry, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // The first component must name a registry, as in a reference: a bare `mlrun` would
        // silently mean Docker Hub.
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad());
        }
        // The prefix follows the repository-name rules: checked by parsing a reference under it.
        let probe = if prefix.is_empty() {
            format!("{registry}/probe")
        } else {
            format!("{registry}/{prefix}/probe")
        };
        match probe.parse::<Reference>() {
            Ok(r) if r.registry == registry && r.tag.is_none() && r.digest.is_none() => {
                Ok(MirrorDest::Registry {
                    registry: registry.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// The rewrite rule for a registry destination, skopeo sync's: the source registry is replaced,
/// and the repository's last component goes under the prefix, tag and digest unchanged.
/// `docker.io/mlrun/mlrun:1.0` to `registry.example:5000/mlrun` is
/// `registry.example:5000/mlrun/mlrun:1.0`; `quay.io/org/team/app:2` is `…/mlrun/app:2`.
pub fn rewrite(original: &Reference, registry: &str, prefix: &str) -> Reference {
    let name = original
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&original.repository);
    Reference {
        registry: registry.to_owned(),
        repository: if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        },
        tag: original.tag.clone(),
        digest: original.digest.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tag selection

/// A semantic version (semver.org 2.0), as tags spell them, with an optional leading `v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

/// Numeric identifiers sort before alphanumeric ones (semver §11.4.3): variant order does it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Numeric(u64),
    Text(String),
}

impl Version {
    /// `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`; anything else is not a version.
    pub fn parse(tag: &str) -> Option<Version> {
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        // Build metadata does not take part in ordering (docker tags cannot hold `+` anyway).
        let tag = tag.split('+').next()?;
        let (core, pre) = match tag.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (tag, None),
        };
        let numbers: Vec<u64> = core
            .split('.')
            .map(|n| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect::<Option<_>>()?;
        let core: [u64; 3] = numbers.try_into().ok()?;
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        id.parse().ok().map(Identifier::Numeric)
                    } else {
                        Some(Identifier::Text(id.to_owned()))
                    }
                })
                .collect::<Option<_>>()?,
        };
        Some(Version { core, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.core.cmp(&other.core).then_with(|| {
            // A pre-release sorts below its release (semver §11.3).
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => CmpOrdering::Equal,
                (true, false) => CmpOrdering::Greater,
                (false, true) => CmpOrdering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// Which tags of a repository named without a tag are copied.
#[derive(Clone, Debug, Default)]
pub struct TagSelection {
    /// Tags matching this (unanchored, like grep; anchor with `^…$`).
    pub regex: Option<regex::Regex>,
    /// Of those, the N highest semantic versions (tags that are not versions are dropped).
    pub latest: Option<usize>,
}

impl TagSelection {
    pub fn new(regex: Option<&str>, latest: Option<usize>) -> Result<TagSelection, MirrorError> {
        let regex = regex
            .map(|r| {
                regex::Regex::new(r).map_err(|e| MirrorError::BadRegex(r.to_owned(), e.to_string()))
            })
            .transpose()?;
        Ok(TagSelection { regex, latest })
    }

    pub fn is_empty(&self) -> bool {
        self.regex.is_none() && self.latest.is_none()
    }

    /// The chosen tags: by version, highest first, with `latest`; else sorted by name.
    pub fn select(&self, tags: &[String]) -> Vec<String> {
        let matching = tags
            .iter()
            .filter(|t| self.regex.as_ref().is_none_or(|r| r.is_match(t)));
        match self.latest {
            Some(n) => {
                let mut versions: Vec<(Version, &String)> = matching
                    .filter_map(|t| Some((Version::parse(t)?, t)))
                    .collect();
                versions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
                versions
                    .into_iter()
                    .take(n)
                    .map(|(_, t)| t.clone())
                    .collect()
            }
            None => {
                let mut chosen: Vec<String> = matching.cloned().collect();
                chosen.sort();
                chosen
            }
        }
    }
}

/// Every tag of `repository`, following the `Link` header of each page.
pub fn list_tags(registry: &Registry, repository: &str) -> Result<Vec<String>, MirrorError> {
    #[derive(serde::Deserialize)]
    struct TagList {
        tags: Option<Vec<String>>,
    }
    let scopes = [scope(repository, "pull")];
    let mut url = registry.url(&format!("{repository}/tags/list?n=1000"));
    let mut tags = Vec::new();
    // A bound on pages, so that a registry answering with a loop cannot keep us forever.
    for _ in 0..10_000 {
        let response = registry.send(&Request {
            method: Method::GET,
            url: url.clone(),
            scopes: &scopes,
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
        })?;
        let response = check(registry, response, repository, "pull", || {
            format!("tag list of {repository}")
        })?;
        let next = response
            .headers()
            .get("Link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .and_then(|link| url.join(&link).ok());
        let body = read_limited(registry, response, "a tag list", 16 << 20)?;
        let page: TagList = pull::parse(registry, &body, "tag list")?;
        tags.extend(page.tags.unwrap_or_default());
        match next {
            Some(link) => url = link,
            None => break,
        }
    }
    Ok(tags)
}

/// The target of `<URL>; rel="next"` in a Link header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

// ---------------------------------------------------------------------------------------------
// Both ends: a registry repository, or a bundle

#[derive(Clone)]
enum Side {
    Registry(Arc<Registry>),
    Bundle(Arc<Bundle>),
}

/// A manifest or index: its descriptor and exact bytes.
#[derive(Clone, Debug)]
struct Doc {
    descriptor: Descriptor,
    bytes: Arc<[u8]>,
}

impl Doc {
    fn blob(&self) -> Blob {
        Blob {
            descriptor: self.descriptor.clone(),
            data: BlobData::Bytes(self.bytes.clone()),
        }
    }
}

fn fallback_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// The document's own `mediaType`, where nothing else says it (a bundle blob by digest).
fn media_type_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| spec::OCI_MANIFEST.to_owned())
}

impl Side {
    fn name(&self, repository: &str) -> String {
        match self {
            Side::Registry(r) => format!("{}/{repository}", r.host),
            Side::Bundle(b) => b.name().to_owned(),
        }
    }

    /// A manifest or index by tag or digest; `None` when there is none.
    fn get_doc(&self, repository: &str, reference: &str) -> Result<Option<Doc>, MirrorError> {
        let digest = reference.parse::<Digest>().ok();
        match self {
            Side::Registry(registry) => {
                let scopes = [scope(repository, "pull")];
                match pull::get_manifest(registry, repository, reference, &scopes, digest.as_ref())
                {
                    Ok((media_type, bytes, digest)) => Ok(Some(Doc {
                        descriptor: Descriptor::new(&media_type, digest, bytes.len() as u64),
                        bytes: Arc::from(bytes),
                    })),
                    Err(RegistryError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Side::Bundle(bundle) => {
                let descriptor = match &digest {
                    Some(digest) => {
                        let Ok(meta) = std::fs::symlink_metadata(bundle.blob_path(digest)) else {
                            return Ok(None);
                        };
                        // Checked against the digest by read_document; the type comes after.
                        Descriptor::new(spec::OCI_MANIFEST, digest.clone(), meta.len())
                    }
                    None => match bundle.tagged(&format!("{repository}:{reference}")) {
                        Some(d) => Descriptor::new(&d.media_type, d.digest, d.size),
                        None => return Ok(None),
                    },
                };
                let bytes = bundle.read_document(&descriptor)?;
                let mut descriptor = descriptor;
                if digest.is_some() {
                    descriptor.media_type = media_type_of(&bytes);
                }
                Ok(Some(Doc {
                    descriptor,
                    bytes: Arc::from(bytes),
                }))
            }
        }
    }

    /// The referrers of `digest`: the registry's referrers API, else the fallback tag's index.
    fn referrers(&self, repository: &str, digest: &Digest) -> Result<Vec<Descriptor>, MirrorError> {
        if let Side::Registry(registry) = self {
            let scopes = [scope(repository, "pull")];
            let response = registry.send(&Request {
                method: Method::GET,
                url: registry.url(&format!("{repository}/referrers/{digest}")),
                scopes: &scopes,
                headers: vec![("Accept", spec::OCI_INDEX.to_owned())],
                body: Body::Empty,
                retry: true,
            })?;
            let is_index = response
                .headers()
                .get("Content-Type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(spec::OCI_INDEX));
            // docker-registry 2.8 answers 404 here: the fallback tag is then the only record.
            if response.status() == StatusCode::OK && is_index {
                let body = read_limited(registry, response, "a referrers list", 4 << 20)?;
                let index: Index = pull::parse(registry, &body, "referrers list")?;
                return Ok(index.manifests);
            }
        }
        match self.get_doc(repository, &fallback_tag(digest))? {
            None => Ok(Vec::new()),
            Some(doc) => Ok(parse_doc::<Index>(&doc, &self.name(repository))?.manifests),
        }
    }
}

fn parse_doc<T: serde::de::DeserializeOwned>(doc: &Doc, source: &str) -> Result<T, MirrorError> {
    serde_json::from_slice(&doc.bytes).map_err(|e| MirrorError::BadDocument {
        source_name: source.to_owned(),
        what: format!("document {}", doc.descriptor.digest),
        message: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Planning: everything an image consists of, read from the source

/// One image to copy, with everything under it.
struct Plan {
    source: Side,
    source_repository: String,
    source_name: String,
    original: Reference,
    destination: Reference,
    root: Doc,
    /// Platform manifests before the indexes that name them, the root, then referrers (each
    /// after its subject).
    docs: Vec<Doc>,
    /// Per subject, its referrers as the source lists them.
    referrers: Vec<(Digest, Vec<Descriptor>)>,
    blobs: Vec<Descriptor>,
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

// ---------------------------------------------------------------------------------------------
// Copying

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
                let references = if reference.tag.is_none()
                    && reference.digest.is_none()
                    && !options.tags.is_empty()
                {
                    let all = list_tags(&registry, &reference.repository)?;
                    let chosen = options.tags.select(&all);
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
                        original
                            .parse()
                            .map_err(|e: crate::reference::ReferenceError| {
                                MirrorError::BadDocument {
                                    source_name: source.to_string(),
                                    what: format!("the reference annotation of `{ref_name}`"),
                                    message: e.to_string(),
                                }
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

    // Two sources on one destination name would overwrite each other: refused before copying.
    let mut names: BTreeMap<String, (&str, &Digest)> = BTreeMap::new();
    for p in &plans {
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
fn bundle_name(reference: &Reference) -> String {
    match (&reference.tag, &reference.digest) {
        (Some(tag), _) => format!("{}:{tag}", reference.repository),
        (None, Some(digest)) => format!("{}@{digest}", reference.repository),
        (None, None) => format!("{}:latest", reference.repository),
    }
}

fn staging_dir(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".mirror-staging");
    file.with_file_name(name)
}

fn unpack_into(file: &Path, dir: &Path) -> Result<(), MirrorError> {
    let read = |source| MirrorError::Read {
        path: file.to_owned(),
        source,
    };
    let reader = std::fs::File::open(file).map_err(read)?;
    tar::Archive::new(io::BufReader::new(reader))
        .unpack(dir)
        .map_err(read)
}

fn unpack_archive(file: &Path, cache: &Cache) -> Result<tempfile::TempDir, MirrorError> {
    // On the cache's filesystem rather than /tmp, which is often small.
    let dir =
        tempfile::tempdir_in(cache.root().join("tmp")).map_err(|source| MirrorError::Read {
            path: cache.root().to_owned(),
            source,
        })?;
    unpack_into(file, dir.path())?;
    Ok(dir)
}

fn copy_image(
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
            let before = index.manifests.len();
            for referrer in referrers {
                if !index.manifests.iter().any(|d| d.digest == referrer.digest) {
                    index.manifests.push(referrer.clone());
                }
            }
            if index.manifests.len() == before && before > 0 {
                continue;
            }
            let bytes: Arc<[u8]> = Arc::from(spec::to_json_bytes(&index));
            let doc = Doc {
                descriptor: Descriptor::new(
                    spec::OCI_INDEX,
                    Digest::of_bytes(&bytes),
                    bytes.len() as u64,
                ),
                bytes,
            };
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
        Side::Registry(registry) => blob_present(registry, dest_repository, &blob.digest)?,
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

fn blob_present(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
) -> Result<bool, MirrorError> {
    // The scope push_blob asks for too, so that one token serves both.
    let scopes = [scope(repository, "pull,push")];
    let response = registry.send(&Request {
        method: Method::HEAD,
        url: registry.url(&format!("{repository}/blobs/{digest}")),
        scopes: &scopes,
        headers: Vec::new(),
        body: Body::Empty,
        retry: true,
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn rewrite_keeps_the_last_component_under_the_prefix() {
        let dest = |s: &str| match s.parse::<MirrorDest>().unwrap() {
            MirrorDest::Registry { registry, prefix } => (registry, prefix),
            other => panic!("{other:?}"),
        };
        let (host, prefix) = dest("registry.example:5000/mlrun");
        assert_eq!(
            rewrite(&r("docker.io/mlrun/mlrun:1.0"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/mlrun:1.0"
        );
        assert_eq!(
            rewrite(&r("quay.io/org/team/app:2"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/app:2"
        );
        assert_eq!(
            rewrite(&r("python:3.11"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/python:3.11"
        );
        let (host, prefix) = dest("docker://registry.example/");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            rewrite(&r(&format!("ghcr.io/a/b@{digest}")), &host, &prefix).to_string(),
            format!("registry.example/b@{digest}")
        );
        let (_, prefix) = dest("localhost:5000/site/mirror");
        assert_eq!(prefix, "site/mirror");
        assert!("mlrun".parse::<MirrorDest>().is_err());
        assert!("registry.example/Bad".parse::<MirrorDest>().is_err());
        assert_eq!(
            "dir:out".parse::<MirrorDest>().unwrap(),
            MirrorDest::Dir("out".into())
        );
    }

    #[test]
    fn semver_orders_like_semver_org() {
        let ordered = [
            "0.9.10",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "v1.0.0",
            "1.2.0",
            "1.10.0",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (
                Version::parse(pair[0]).unwrap(),
                Version::parse(pair[1]).unwrap(),
            );
            assert!(a < b, "{} < {}", pair[0], pair[1]);
        }
        for not in ["latest", "1.2", "1.2.x", "1..2", "1.2.3-", "1.2.3-a..b"] {
            assert!(Version::parse(not).is_none(), "{not}");
        }
    }

    #[test]
    fn selection_by_regex_and_latest() {
        let tags: Vec<String> = [
            "1.9.0",
            "1.10.0",
            "1.10.1-rc1",
            "latest",
            "2.0.0",
            "1.2.3-py39",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let latest2 = TagSelection::new(None, Some(2)).unwrap();
        assert_eq!(latest2.select(&tags), ["2.0.0", "1.10.1-rc1"]);
        let releases = TagSelection::new(Some(r"^\d+\.\d+\.\d+$"), Some(2)).unwrap();
        assert_eq!(releases.select(&tags), ["2.0.0", "1.10.0"]);
        let py39 = TagSelection::new(Some("-py39$"), None).unwrap();
        assert_eq!(py39.select(&tags), ["1.2.3-py39"]);
        assert!(TagSelection::new(Some("("), None).is_err());
    }

    #[test]
    fn sources_and_lists_parse() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images.txt");
        std::fs::write(
            &list,
            "# site images\nregistry.example/a/b:1  # pinned\n\ndocker://quay.io/c/d:2\ndir:bundle\n",
        )
        .unwrap();
        let sources = MirrorSource::parse_arg(&format!("@{}", list.display())).unwrap();
        assert_eq!(
            sources,
            vec![
                MirrorSource::Image(r("registry.example/a/b:1")),
                MirrorSource::Image(r("quay.io/c/d:2")),
                MirrorSource::Dir("bundle".into()),
            ]
        );
        std::fs::write(&list, "ok.example/a:1\nNot A Ref\n").unwrap();
        let error = MirrorSource::parse_arg(&format!("@{}", list.display()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(next_link("</v2/a/tags/list?last=x&n=2>; rel=\"next\"").is_some());
    }
}
