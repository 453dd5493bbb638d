//! OCI image layouts on disk: read a base from one, write built images into one.
//!
//! Spec: <https://github.com/opencontainers/image-spec/blob/main/image-layout.md>.
//! Several tags share one layout: each is a descriptor in `index.json` carrying the
//! `org.opencontainers.image.ref.name` annotation, and writing a tag replaces only that tag.
//! Blobs are written before `index.json`, and every file is renamed into place complete.
//! A layout read from disk is outside input: its files are opened only as regular files, never
//! through a symlink, and blobs only by a parsed digest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::spec::{self, Descriptor, ImageConfig, Index, Manifest};
use super::{Blob, BlobData, ImageArtifact, ManifestSummary, referrer};
use crate::digest::{Digest, digest_reader};
use crate::fsutil::{AtomicFile, DirLock, Publish};

const LAYOUT_FILE: &str = "oci-layout";
/// The `oci-layout` file's content.
pub const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const BLOB_DIR: &str = "blobs/sha256";
/// Manifests, indexes and configs larger than this are refused rather than read into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("`{0}` is not an OCI image layout (it has no `oci-layout` file)")]
    NotALayout(PathBuf),
    #[error("OCI layout `{dir}`: cannot {action}")]
    Io {
        dir: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("OCI layout `{dir}`: `{file}` is not valid JSON of the expected shape")]
    BadJson {
        dir: PathBuf,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("OCI layout `{dir}` has no image tagged `{tag}` (tags: {available})")]
    NoSuchTag {
        dir: PathBuf,
        tag: String,
        available: String,
    },
    #[error("OCI layout `{dir}` holds {count} images; name one as `oci:{dir_display}:TAG`", dir_display = dir.display())]
    AmbiguousTag { dir: PathBuf, count: usize },
    #[error(
        "OCI layout `{dir}`: `{file}` is a symlink or special file, not a regular file; refusing to follow it"
    )]
    NotRegular { dir: PathBuf, file: String },
    #[error("OCI layout `{dir}`: blob {digest} is missing")]
    MissingBlob { dir: PathBuf, digest: Digest },
    #[error(
        "OCI layout `{dir}`: blob {digest} does not match its digest (found {found}, {size} bytes)"
    )]
    CorruptBlob {
        dir: PathBuf,
        digest: Digest,
        found: Digest,
        size: u64,
    },
    #[error(
        "OCI layout `{dir}`: blob {digest} is {size} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit for manifests and configs"
    )]
    DocumentTooLarge {
        dir: PathBuf,
        digest: Digest,
        size: u64,
    },
}

impl LayoutError {
    fn from_fault(dir: &Path, fault: Fault) -> LayoutError {
        let dir = dir.to_owned();
        match fault {
            Fault::NotRegular { file } => LayoutError::NotRegular { dir, file },
            Fault::MissingBlob { digest } => LayoutError::MissingBlob { dir, digest },
            Fault::CorruptBlob {
                digest,
                found,
                size,
            } => LayoutError::CorruptBlob {
                dir,
                digest,
                found,
                size,
            },
            // The content is what the digest says; the descriptor is wrong about its size.
            Fault::WrongSize { digest, size, .. } => LayoutError::CorruptBlob {
                dir,
                found: digest.clone(),
                digest,
                size,
            },
            Fault::TooLarge { digest, size } => LayoutError::DocumentTooLarge { dir, digest, size },
            Fault::BadJson { file, source } => LayoutError::BadJson { dir, file, source },
            Fault::Io { action, source } => LayoutError::Io {
                dir,
                action,
                source,
            },
        }
    }
}

/// The files of a layout directory: where blobs are, how one is read, verified or put into
/// place, how `index.json` is read and replaced. [`Layout`] (a build's base or output) and
/// [`super::bundle::Bundle`] (a mirror bundle) both go through it and turn its [`Fault`]s into
/// their own errors, which name the layout as their users know it.
#[derive(Clone, Debug)]
pub struct LayoutDir {
    dir: PathBuf,
}

/// What went wrong with a file of a [`LayoutDir`]; the caller adds which layout.
#[derive(Debug)]
pub enum Fault {
    /// `file` (relative to the layout) is a symlink or special file.
    NotRegular {
        file: String,
    },
    MissingBlob {
        digest: Digest,
    },
    /// The blob's content hashes to `found`.
    CorruptBlob {
        digest: Digest,
        found: Digest,
        size: u64,
    },
    /// The content matches the digest, but a descriptor states another size.
    WrongSize {
        digest: Digest,
        size: u64,
        expected: u64,
    },
    /// A document over [`MAX_DOCUMENT_SIZE`].
    TooLarge {
        digest: Digest,
        size: u64,
    },
    BadJson {
        file: String,
        source: serde_json::Error,
    },
    Io {
        action: String,
        source: io::Error,
    },
}

fn io_fault(action: impl Into<String>) -> impl FnOnce(io::Error) -> Fault {
    let action = action.into();
    move |source| Fault::Io { action, source }
}

impl LayoutDir {
    pub fn new(dir: &Path) -> LayoutDir {
        LayoutDir {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory has an `oci-layout` file.
    pub fn is_layout(&self) -> bool {
        self.dir.join(LAYOUT_FILE).is_file()
    }

    pub fn has_index(&self) -> bool {
        self.dir.join(INDEX_FILE).is_file()
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(BLOB_DIR).join(digest.hex())
    }

    /// A blob's path relative to the layout, as messages name it.
    pub fn blob_file(digest: &Digest) -> String {
        format!("{BLOB_DIR}/{}", digest.hex())
    }

    /// Creates `blobs/sha256` and the `oci-layout` file where they are missing.
    pub fn init(&self) -> Result<(), Fault> {
        fs::create_dir_all(self.dir.join(BLOB_DIR))
            .map_err(io_fault("create the layout directory"))?;
        if !self.is_layout() {
            crate::fsutil::write_atomic(
                &self.dir.join(LAYOUT_FILE),
                LAYOUT_CONTENT,
                Publish::PUBLIC.synced(),
            )
            .map_err(io_fault("write oci-layout"))?;
        }
        Ok(())
    }

    /// Refuses `blobs` or `blobs/sha256` when it is a symlink, which could lead anywhere.
    pub fn check_blob_dirs(&self) -> Result<(), Fault> {
        for sub in ["blobs", BLOB_DIR] {
            if fs::symlink_metadata(self.dir.join(sub)).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Fault::NotRegular {
                    file: sub.to_owned(),
                });
            }
        }
        Ok(())
    }

    pub fn read_index(&self) -> Result<Index, Fault> {
        let bytes = super::read_regular(&self.dir.join(INDEX_FILE))
            .map_err(|e| opened(INDEX_FILE, "read index.json", e))?;
        serde_json::from_slice(&bytes).map_err(|source| Fault::BadJson {
            file: INDEX_FILE.to_owned(),
            source,
        })
    }

    /// The lock that [`LayoutDir::write_index`] asks for. Another process may be adding its
    /// tag to the same layout: whoever reads, changes and replaces `index.json` holds it
    /// throughout, or one of the two tags is lost.
    pub fn lock(&self) -> Result<DirLock, Fault> {
        DirLock::acquire(&self.dir).map_err(io_fault("lock the layout"))
    }

    /// Replaces `index.json`, fsync'd: it is written last and names everything else.
    pub fn write_index(&self, index: &Index, _lock: &DirLock) -> Result<(), Fault> {
        crate::fsutil::write_atomic(
            &self.dir.join(INDEX_FILE),
            &spec::to_json_bytes(index),
            Publish::PUBLIC.synced(),
        )
        .map_err(io_fault("write index.json"))
    }

    /// Whether there is a blob of the descriptor's size (blobs are renamed into place complete,
    /// so a regular file of the right size is the finished blob).
    pub fn has_blob(&self, descriptor: &Descriptor) -> bool {
        super::is_regular_of_size(&self.blob_path(&descriptor.digest), descriptor.size)
    }

    /// Opens a blob only when it is a regular file.
    fn open_blob(&self, digest: &Digest) -> Result<fs::File, Fault> {
        super::open_regular(&self.blob_path(digest)).map_err(|e| match e {
            super::OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound => Fault::MissingBlob {
                digest: digest.clone(),
            },
            e => opened(
                &LayoutDir::blob_file(digest),
                &format!("read blob {digest}"),
                e,
            ),
        })
    }

    /// The digests of the blob files, in order of their names. Other files there, such as
    /// temporary files of an interrupted copy, are not blobs.
    pub fn list_blobs(&self) -> Result<Vec<Digest>, Fault> {
        let mut names: Vec<_> = fs::read_dir(self.dir.join(BLOB_DIR))
            .map_err(io_fault("list blobs/sha256"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names
            .iter()
            .filter_map(|name| Digest::from_hex(name).ok())
            .collect())
    }

    /// Streams the blob named `digest` through sha256: what its content hashes to, and its size.
    pub fn hash_blob(&self, digest: &Digest) -> Result<(Digest, u64), Fault> {
        let file = self.open_blob(digest)?;
        digest_reader(io::BufReader::new(file)).map_err(io_fault(format!("read blob {digest}")))
    }

    /// Checks a blob against its descriptor: content, then size.
    pub fn verify_blob(&self, descriptor: &Descriptor) -> Result<(), Fault> {
        let digest = &descriptor.digest;
        let (found, size) = self.hash_blob(digest)?;
        check_content(descriptor, found, size)
    }

    /// Reads a small JSON blob (manifest, index, config), verified against its descriptor and
    /// never more than [`MAX_DOCUMENT_SIZE`] of it.
    pub fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>, Fault> {
        let digest = &descriptor.digest;
        let action = format!("read blob {digest}");
        let opened = self.open_blob(digest)?;
        let size = opened.metadata().map_err(io_fault(action.clone()))?.len();
        if size > MAX_DOCUMENT_SIZE {
            return Err(Fault::TooLarge {
                digest: digest.clone(),
                size,
            });
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(opened, MAX_DOCUMENT_SIZE), &mut bytes)
            .map_err(io_fault(action))?;
        check_content(descriptor, Digest::of_bytes(&bytes), size)?;
        Ok(bytes)
    }

    /// Puts a blob into place from a file: a hard link when both are on one filesystem (blobs
    /// are never modified in place), else a copy, checked while copied so that a blob changed
    /// at its source does not reach the layout.
    pub fn put_blob_file(&self, descriptor: &Descriptor, source: &Path) -> Result<(), Fault> {
        if self.has_blob(descriptor) {
            return Ok(());
        }
        let target = self.blob_path(&descriptor.digest);
        let _ = fs::remove_file(&target);
        if fs::hard_link(source, &target).is_ok() {
            return Ok(());
        }
        let copy = || -> io::Result<()> {
            let mut temp =
                AtomicFile::create_in(&self.dir.join(BLOB_DIR), &target, Publish::PUBLIC)?;
            let mut verified = crate::digest::VerifyingReader::new(
                fs::File::open(source)?,
                descriptor.digest.clone(),
            );
            io::copy(&mut verified, &mut temp)?;
            temp.commit()
        };
        copy().map_err(io_fault(format!("write blob {}", descriptor.digest)))
    }

    /// Puts a blob held in memory (a document) into place, fsync'd.
    pub fn put_blob_bytes(&self, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), Fault> {
        if self.has_blob(descriptor) {
            return Ok(());
        }
        crate::fsutil::write_atomic(
            &self.blob_path(&descriptor.digest),
            bytes,
            Publish::PUBLIC.synced(),
        )
        .map_err(io_fault(format!("write blob {}", descriptor.digest)))
    }

    pub fn put_blob(&self, blob: &Blob) -> Result<(), Fault> {
        match &blob.data {
            BlobData::File(source) => self.put_blob_file(&blob.descriptor, source),
            BlobData::Bytes(bytes) => self.put_blob_bytes(&blob.descriptor, bytes),
        }
    }
}

/// The fault for a file of a layout that [`super::open_regular`] did not open.
fn opened(file: &str, action: &str, error: super::OpenError) -> Fault {
    match error {
        super::OpenError::NotRegular => Fault::NotRegular {
            file: file.to_owned(),
        },
        super::OpenError::Io(e) => io_fault(action)(e),
    }
}

fn check_content(descriptor: &Descriptor, found: Digest, size: u64) -> Result<(), Fault> {
    let digest = &descriptor.digest;
    if &found != digest {
        return Err(Fault::CorruptBlob {
            digest: digest.clone(),
            found,
            size,
        });
    }
    if size != descriptor.size {
        return Err(Fault::WrongSize {
            digest: digest.clone(),
            size,
            expected: descriptor.size,
        });
    }
    Ok(())
}

/// An OCI ref name (`org.opencontainers.image.ref.name`): `/`-separated components, each
/// starting with a letter or digit, of letters, digits and `._-:@+` (and `_`, which Docker tags
/// use). `..`, `.`, empty components and leading `/` are thus refused.
pub fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
                && component
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:@+".contains(&b))
        })
}

/// The first ref name of `index` that is not [valid](valid_ref_name), which could act as a path.
pub fn invalid_ref_name(index: &Index) -> Option<&str> {
    index
        .manifests
        .iter()
        .filter_map(Descriptor::ref_name)
        .find(|name| !valid_ref_name(name))
}

/// A layout directory opened for reading.
pub struct Layout {
    files: LayoutDir,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        let files = LayoutDir::new(dir);
        if !files.is_layout() {
            return Err(LayoutError::NotALayout(dir.to_owned()));
        }
        Ok(Layout { files })
    }

    pub fn dir(&self) -> &Path {
        self.files.path()
    }

    fn error(&self, fault: Fault) -> LayoutError {
        LayoutError::from_fault(self.files.path(), fault)
    }

    pub fn index(&self) -> Result<Index, LayoutError> {
        self.files.read_index().map_err(|f| self.error(f))
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.files.blob_path(digest)
    }

    /// Reads and verifies a small JSON blob (manifest, index, config).
    pub fn read_document<T: DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<(T, Vec<u8>), LayoutError> {
        let bytes = self
            .files
            .read_document(descriptor)
            .map_err(|f| self.error(f))?;
        let value = serde_json::from_slice(&bytes).map_err(|source| {
            self.error(Fault::BadJson {
                file: LayoutDir::blob_file(&descriptor.digest),
                source,
            })
        })?;
        Ok((value, bytes))
    }

    /// Streams a blob through sha256 and compares it with its descriptor.
    pub fn verify_blob(&self, descriptor: &Descriptor) -> Result<(), LayoutError> {
        self.files
            .verify_blob(descriptor)
            .map_err(|f| self.error(f))
    }

    /// The descriptor that `tag` names, or the only one when no tag is given.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let index = self.index()?;
        match tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(tag))
                .cloned()
                .ok_or_else(|| LayoutError::NoSuchTag {
                    dir: self.dir().to_owned(),
                    tag: tag.to_owned(),
                    available: tag_list(&index),
                }),
            None => {
                // Referrer indexes are not images.
                let images: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| !d.ref_name().is_some_and(referrer::is_referrers_name))
                    .collect();
                match images[..] {
                    [only] => Ok(only.clone()),
                    _ => Err(LayoutError::AmbiguousTag {
                        dir: self.dir().to_owned(),
                        count: images.len(),
                    }),
                }
            }
        }
    }
}

impl Layout {
    /// Everything under the image `name` (or the only image): its documents in memory, its
    /// layers as files of the layout, each verified against its digest.
    pub fn read_artifact(&self, name: Option<&str>) -> Result<ImageArtifact, LayoutError> {
        let root = self.resolve(name)?;
        let mut blobs = BTreeMap::new();
        let mut manifests = Vec::new();
        let mut keep = |descriptor: &Descriptor, bytes: Vec<u8>| {
            blobs.insert(
                descriptor.digest.clone(),
                Blob {
                    descriptor: descriptor.clone(),
                    data: BlobData::Bytes(Arc::from(bytes)),
                },
            );
        };
        let manifest_descriptors = if spec::is_index(&root.media_type) {
            let (index, bytes): (Index, _) = self.read_document(&root)?;
            keep(&root, bytes);
            index.manifests
        } else {
            vec![root.clone()]
        };
        let mut layer_blobs = Vec::new();
        for descriptor in manifest_descriptors {
            let (manifest, bytes): (Manifest, _) = self.read_document(&descriptor)?;
            keep(&descriptor, bytes);
            let (config, bytes): (ImageConfig, _) = self.read_document(&manifest.config)?;
            keep(&manifest.config, bytes);
            for layer in &manifest.layers {
                self.verify_blob(layer)?;
                layer_blobs.push(Blob {
                    descriptor: layer.clone(),
                    data: BlobData::File(self.blob_path(&layer.digest)),
                });
            }
            let platform = descriptor
                .platform
                .clone()
                .unwrap_or_else(|| config.platform());
            manifests.push(ManifestSummary {
                platform: platform.to_string(),
                manifest: descriptor,
                config: manifest.config,
                layers: manifest.layers,
            });
        }
        for blob in layer_blobs {
            blobs.insert(blob.descriptor.digest.clone(), blob);
        }
        let mut artifact = ImageArtifact {
            root: root.clone(),
            blobs,
            manifests,
            referrers: Vec::new(),
        };
        artifact.root.annotations.remove(spec::ANNOTATION_REF_NAME);
        if let Some(name) = root.ref_name() {
            self.read_referrers(name, &mut artifact)?;
        }
        Ok(artifact)
    }

    /// The referrers the layout lists for the root and platform manifests of the image named
    /// `name`, with their blobs, into `artifact`.
    fn read_referrers(&self, name: &str, artifact: &mut ImageArtifact) -> Result<(), LayoutError> {
        let index = self.index()?;
        let subjects: Vec<Digest> = std::iter::once(artifact.root.digest.clone())
            .chain(artifact.manifests.iter().map(|m| m.manifest.digest.clone()))
            .collect();
        for subject in subjects {
            let wanted = referrer::layout_ref_name(name, &subject);
            let Some(listing) = index
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(&wanted))
            else {
                continue;
            };
            let (listed, _): (Index, _) = self.read_document(listing)?;
            for descriptor in listed.manifests {
                if artifact.is_document(&descriptor.digest) {
                    continue;
                }
                let (manifest, bytes): (Manifest, _) = self.read_document(&descriptor)?;
                artifact.keep_bytes(&descriptor, bytes);
                for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    self.verify_blob(blob)?;
                    artifact.blobs.insert(
                        blob.digest.clone(),
                        Blob {
                            descriptor: blob.clone(),
                            data: BlobData::File(self.blob_path(&blob.digest)),
                        },
                    );
                }
                artifact.referrers.push(referrer::Referrer {
                    subject: subject.clone(),
                    descriptor,
                });
            }
        }
        Ok(())
    }
}

fn tag_list(index: &Index) -> String {
    let tags: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(Descriptor::ref_name)
        .collect();
    if tags.is_empty() {
        "none".to_owned()
    } else {
        tags.join(", ")
    }
}

/// Writes `artifact` into the layout at `dir` (created if needed) under `tag`, keeping the
/// layout's other tags.
pub fn write_layout(dir: &Path, artifact: &ImageArtifact, tag: &str) -> Result<(), LayoutError> {
    let files = LayoutDir::new(dir);
    let error = |fault| LayoutError::from_fault(dir, fault);
    files.init().map_err(error)?;
    for blob in artifact.blobs.values() {
        files.put_blob(blob).map_err(error)?;
    }
    let lock = files.lock().map_err(error)?;
    let before = if files.has_index() {
        Some(files.read_index().map_err(error)?)
    } else {
        None
    };
    let mut index = before
        .clone()
        .unwrap_or_else(|| Index::new(Some(spec::OCI_INDEX)));
    let mut root = artifact.root.clone();
    root.annotations
        .insert(spec::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    put_tagged(&mut index, tag, root);
    // Referrers are listed the way bundles list them, by an index under the fallback tag of
    // their subject beside the image's tag, merged with what an earlier write listed there.
    for (subject, referrers) in referrer::by_subject(artifact) {
        let name = referrer::layout_ref_name(tag, &subject);
        let existing = index.manifests.iter().find(|d| d.ref_name() == Some(&name));
        let mut listed = match existing {
            Some(existing) => read_index_document(&files, existing).map_err(error)?,
            None => Index::new(Some(spec::OCI_INDEX)),
        };
        referrer::merge_referrers(&mut listed, &referrers);
        let (mut descriptor, bytes) = referrer::index_document(&listed);
        files.put_blob_bytes(&descriptor, &bytes).map_err(error)?;
        descriptor
            .annotations
            .insert(spec::ANNOTATION_REF_NAME.to_owned(), name.clone());
        put_tagged(&mut index, &name, descriptor);
    }
    // A rebuild that changed nothing leaves index.json as it was: no write, no fsync.
    if before.as_ref() == Some(&index) {
        return Ok(());
    }
    files.write_index(&index, &lock).map_err(error)
}

/// Puts `descriptor` into the index under `tag`: where the tag was (so that writing the same
/// image again leaves the index as it was), else last.
fn put_tagged(index: &mut Index, tag: &str, descriptor: Descriptor) {
    match index
        .manifests
        .iter()
        .position(|d| d.ref_name() == Some(tag))
    {
        Some(at) => {
            index.manifests[at] = descriptor;
            let mut seen = false;
            index.manifests.retain(|d| {
                let other = d.ref_name() != Some(tag);
                let first = !other && !seen;
                seen |= !other;
                other || first
            });
        }
        None => index.manifests.push(descriptor),
    }
}

fn read_index_document(files: &LayoutDir, descriptor: &Descriptor) -> Result<Index, Fault> {
    let bytes = files.read_document(descriptor)?;
    serde_json::from_slice(&bytes).map_err(|source| Fault::BadJson {
        file: LayoutDir::blob_file(&descriptor.digest),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// An artifact of one small blob, enough for index.json to name it.
    fn artifact(content: &str) -> ImageArtifact {
        let bytes: Arc<[u8]> = Arc::from(content.as_bytes());
        let descriptor = Descriptor::new(
            spec::OCI_MANIFEST,
            Digest::of_bytes(&bytes),
            bytes.len() as u64,
        );
        let mut blobs = BTreeMap::new();
        blobs.insert(
            descriptor.digest.clone(),
            Blob {
                descriptor: descriptor.clone(),
                data: BlobData::Bytes(bytes),
            },
        );
        ImageArtifact {
            root: descriptor,
            blobs,
            manifests: Vec::new(),
            referrers: Vec::new(),
        }
    }

    /// Two writers adding their own tags to one layout at once: every tag is there at the
    /// end. Without the layout's lock, one writer's read-change-rename of index.json drops
    /// tags the other added meanwhile.
    #[test]
    fn concurrent_writers_keep_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        std::thread::scope(|scope| {
            for writer in ["a", "b"] {
                let layout = &layout;
                scope.spawn(move || {
                    for n in 0..40 {
                        let tag = format!("{writer}{n}");
                        write_layout(layout, &artifact(&tag), &tag).unwrap();
                    }
                });
            }
        });
        let index = Layout::open(&layout).unwrap().index().unwrap();
        assert_eq!(index.manifests.len(), 80, "tags were lost");
    }

    /// Writing images again leaves index.json as it was when nothing changed (no write, so no
    /// fsync on a no-op rebuild), and a tag written again stays where it was.
    #[test]
    fn an_unchanged_image_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        for tag in ["a", "b", "c"] {
            write_layout(&layout, &artifact(tag), tag).unwrap();
        }
        let index_file = layout.join(INDEX_FILE);
        let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap());
        let written = inode(&index_file);
        for tag in ["a", "b", "c"] {
            write_layout(&layout, &artifact(tag), tag).unwrap();
        }
        assert_eq!(inode(&index_file), written, "index.json was replaced");

        write_layout(&layout, &artifact("a, changed"), "a").unwrap();
        assert_ne!(inode(&index_file), written);
        let index = Layout::open(&layout).unwrap().index().unwrap();
        let tags: Vec<_> = index
            .manifests
            .iter()
            .filter_map(|d| d.ref_name())
            .collect();
        assert_eq!(tags, ["a", "b", "c"]);
        assert_eq!(index.manifests[0].digest, Digest::of_bytes(b"a, changed"));
    }
}
