//! OCI image layouts on disk: read a base from one, write built images into one.
//!
//! Spec: <https://github.com/opencontainers/image-spec/blob/main/image-layout.md>.
//! Several tags share one layout: each is a descriptor in `index.json` carrying the
//! `org.opencontainers.image.ref.name` annotation, and writing a tag replaces only that tag.
//! Blobs are written before `index.json`, and every file is renamed into place complete.
//! A layout read from disk is outside input: its files are opened only as regular files, never
//! through a symlink, and blobs only by a parsed digest.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::spec::{self, Descriptor, ImageConfig, Index, Manifest};
use super::{Blob, BlobData, ImageArtifact, ManifestSummary};
use crate::digest::{Digest, digest_reader};
use crate::fsutil::{AtomicFile, Publish};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
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

/// A layout directory opened for reading.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        if !dir.join(LAYOUT_FILE).is_file() {
            return Err(LayoutError::NotALayout(dir.to_owned()));
        }
        Ok(Layout {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, action: impl Into<String>) -> impl FnOnce(io::Error) -> LayoutError + '_ {
        let action = action.into();
        move |source| LayoutError::Io {
            dir: self.dir.clone(),
            action,
            source,
        }
    }

    /// The error for a file of the layout that could not be opened or read.
    fn refused(&self, file: &str, action: &str, error: super::OpenError) -> LayoutError {
        match error {
            super::OpenError::NotRegular => LayoutError::NotRegular {
                dir: self.dir.clone(),
                file: file.to_owned(),
            },
            super::OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound => match file
                .strip_prefix("blobs/sha256/")
                .and_then(|hex| Digest::from_hex(hex).ok())
            {
                Some(digest) => LayoutError::MissingBlob {
                    dir: self.dir.clone(),
                    digest,
                },
                None => self.io(action)(e),
            },
            super::OpenError::Io(e) => self.io(action)(e),
        }
    }

    pub fn index(&self) -> Result<Index, LayoutError> {
        let bytes = super::read_regular(&self.dir.join("index.json"))
            .map_err(|e| self.refused("index.json", "read index.json", e))?;
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadJson {
            dir: self.dir.clone(),
            file: "index.json".to_owned(),
            source,
        })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Reads and verifies a small JSON blob (manifest, index, config).
    pub fn read_document<T: DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<(T, Vec<u8>), LayoutError> {
        let digest = &descriptor.digest;
        let file = format!("blobs/sha256/{}", digest.hex());
        let action = format!("read blob {digest}");
        let opened = super::open_regular(&self.blob_path(digest))
            .map_err(|e| self.refused(&file, &action, e))?;
        let size = opened.metadata().map_err(self.io(action.clone()))?.len();
        if size > MAX_DOCUMENT_SIZE {
            return Err(LayoutError::DocumentTooLarge {
                dir: self.dir.clone(),
                digest: digest.clone(),
                size,
            });
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(opened, MAX_DOCUMENT_SIZE), &mut bytes)
            .map_err(self.io(action))?;
        let found = Digest::of_bytes(&bytes);
        if &found != digest {
            return Err(LayoutError::CorruptBlob {
                dir: self.dir.clone(),
                digest: digest.clone(),
                found,
                size,
            });
        }
        let value = serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadJson {
            dir: self.dir.clone(),
            file: format!("blobs/sha256/{}", digest.hex()),
            source,
        })?;
        Ok((value, bytes))
    }

    /// Streams a blob through sha256 and compares it with its descriptor.
    pub fn verify_blob(&self, descriptor: &Descriptor) -> Result<(), LayoutError> {
        let digest = &descriptor.digest;
        let file = super::open_regular(&self.blob_path(digest)).map_err(|e| {
            self.refused(
                &format!("blobs/sha256/{}", digest.hex()),
                &format!("read blob {digest}"),
                e,
            )
        })?;
        let (found, size) = digest_reader(io::BufReader::new(file))
            .map_err(self.io(format!("read blob {digest}")))?;
        if &found != digest || size != descriptor.size {
            return Err(LayoutError::CorruptBlob {
                dir: self.dir.clone(),
                digest: digest.clone(),
                found,
                size,
            });
        }
        Ok(())
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
                    dir: self.dir.clone(),
                    tag: tag.to_owned(),
                    available: tag_list(&index),
                }),
            None if index.manifests.len() == 1 => Ok(index.manifests[0].clone()),
            None => Err(LayoutError::AmbiguousTag {
                dir: self.dir.clone(),
                count: index.manifests.len(),
            }),
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
        let mut root = root;
        root.annotations.remove(spec::ANNOTATION_REF_NAME);
        Ok(ImageArtifact {
            root,
            blobs,
            manifests,
        })
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
    let io_err = |action: &str| {
        let action = action.to_owned();
        move |source| LayoutError::Io {
            dir: dir.to_owned(),
            action,
            source,
        }
    };
    fs::create_dir_all(dir.join("blobs/sha256")).map_err(io_err("create the layout directory"))?;
    if !dir.join(LAYOUT_FILE).exists() {
        write_file_atomic(dir, LAYOUT_FILE, LAYOUT_CONTENT).map_err(io_err("write oci-layout"))?;
    }
    for blob in artifact.blobs.values() {
        let target = dir.join("blobs/sha256").join(blob.descriptor.digest.hex());
        if super::is_regular_of_size(&target, blob.descriptor.size) {
            continue;
        }
        put_blob(dir, &target, blob)
            .map_err(io_err(&format!("write blob {}", blob.descriptor.digest)))?;
    }
    // Another build may be adding its tag to the same layout: read, change and rename
    // index.json under the layout's lock, or one of the two tags is lost.
    let _guard = crate::fsutil::DirLock::acquire(dir).map_err(io_err("lock the layout"))?;
    let mut index = match Layout::open(dir) {
        Ok(layout) if dir.join("index.json").exists() => layout.index()?,
        _ => Index::new(Some(spec::OCI_INDEX)),
    };
    index.manifests.retain(|d| d.ref_name() != Some(tag));
    let mut root = artifact.root.clone();
    root.annotations
        .insert(spec::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    index.manifests.push(root);
    write_file_atomic(dir, "index.json", &spec::to_json_bytes(&index))
        .map_err(io_err("write index.json"))?;
    Ok(())
}

/// Copies a blob into place: a hard link from the cache when both are on one filesystem
/// (blobs are never modified in place), else a copy through a temporary file.
fn put_blob(dir: &Path, target: &Path, blob: &Blob) -> io::Result<()> {
    match &blob.data {
        BlobData::File(source) => {
            let _ = fs::remove_file(target);
            if fs::hard_link(source, target).is_ok() {
                return Ok(());
            }
            let mut temp = AtomicFile::create_in(dir, target, Publish::PUBLIC)?;
            // Checked while copied: a blob changed in the cache does not reach the layout.
            let mut verified = crate::digest::VerifyingReader::new(
                fs::File::open(source)?,
                blob.descriptor.digest.clone(),
            );
            io::copy(&mut verified, &mut temp)?;
            temp.commit()?;
        }
        BlobData::Bytes(bytes) => {
            let mut temp = AtomicFile::create_in(dir, target, Publish::PUBLIC)?;
            temp.write_all(bytes)?;
            temp.commit()?;
        }
    }
    Ok(())
}

fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    crate::fsutil::write_atomic(&dir.join(name), bytes, Publish::PUBLIC.synced())
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
}
