//! Single-file outputs: `oci-archive` (an OCI layout in a tar) and `docker-archive` (what
//! `docker save` writes and `docker load`/`podman load` read).
//!
//! Both are written with the same deterministic tar writer as layers, to a temporary file next
//! to the destination that is renamed over it when complete.

use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tempfile::NamedTempFile;

use super::spec::{self, Index};
use super::{BlobData, ImageArtifact};
use crate::digest::{Digest, HashingWriter};
use crate::fsutil::{AtomicFile, Publish};
use crate::layer::tarball::{TarError, write_tar};
use crate::layer::{Compression, Content, Entry, EntryKind, FileStamp, ImagePath, LayerTree};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot write archive `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write archive `{path}`")]
    Tar {
        path: PathBuf,
        #[source]
        source: TarError,
    },
    #[error(
        "docker-archive `{path}` can hold one platform, but the image has {count}; build with --platform or write an oci: or oci-archive: output"
    )]
    MultiPlatform { path: PathBuf, count: usize },
}

fn file_entry(content: Content, size: u64) -> Entry {
    Entry {
        kind: EntryKind::File { content, size },
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

fn path(p: &str) -> ImagePath {
    ImagePath::new(p).expect("archive member paths are fixed and valid")
}

/// A blob's archive entry; a blob on disk (the cache's, a bundle's) is checked against
/// `digest` while it is copied in.
fn blob_entry(data: &BlobData, digest: &Digest, size: u64) -> Entry {
    match data {
        BlobData::File(p) => file_entry(
            Content::Blob {
                path: p.clone(),
                digest: digest.clone(),
            },
            size,
        ),
        BlobData::Bytes(b) => file_entry(Content::Inline(b.clone()), size),
    }
}

fn write_tree_atomic(dest: &Path, tree: &LayerTree) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: dest.to_owned(),
        source,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(io_err)?;
    let temp = AtomicFile::create_in(parent, dest, Publish::PUBLIC.synced()).map_err(io_err)?;
    let writer = write_tar(tree, 0, BufWriter::new(temp), &mut |_| {}).map_err(|source| {
        ArchiveError::Tar {
            path: dest.to_owned(),
            source,
        }
    })?;
    writer
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .commit()
        .map_err(io_err)
}

/// Writes an OCI layout with the image under `tag` as a tar file at `dest`.
pub fn write_oci_archive(
    dest: &Path,
    artifact: &ImageArtifact,
    tag: &str,
) -> Result<(), ArchiveError> {
    let mut tree = LayerTree::default();
    for (digest, blob) in &artifact.blobs {
        tree.insert(
            path(&format!("blobs/sha256/{}", digest.hex())),
            blob_entry(&blob.data, &blob.descriptor.digest, blob.descriptor.size),
        );
    }
    let mut index = Index::new(Some(spec::OCI_INDEX));
    let mut root = artifact.root.clone();
    root.annotations
        .insert(spec::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
    index.manifests.push(root);
    // Referrers listed as in a layout (see `layout::write_layout`).
    for (subject, referrers) in super::referrer::by_subject(artifact) {
        let (mut descriptor, bytes) = super::referrer::referrers_index(&referrers);
        tree.insert(
            path(&format!("blobs/sha256/{}", descriptor.digest.hex())),
            file_entry(Content::Inline(bytes), descriptor.size),
        );
        descriptor.annotations.insert(
            spec::ANNOTATION_REF_NAME.to_owned(),
            super::referrer::layout_ref_name(tag, &subject),
        );
        index.manifests.push(descriptor);
    }
    let index_bytes = spec::to_json_bytes(&index);
    tree.insert(
        path("index.json"),
        file_entry(
            Content::Inline(Arc::from(index_bytes.clone())),
            index_bytes.len() as u64,
        ),
    );
    let layout = super::layout::LAYOUT_CONTENT;
    tree.insert(
        path("oci-layout"),
        file_entry(Content::Inline(Arc::from(layout)), layout.len() as u64),
    );
    write_tree_atomic(dest, &tree)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes a `docker save`-style archive. Layers are stored uncompressed, as `docker save` does,
/// so that every `docker load` and `podman load` version reads them and their digests equal
/// the config's diff_ids.
pub fn write_docker_archive(
    dest: &Path,
    artifact: &ImageArtifact,
    repo_tags: &[String],
) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: dest.to_owned(),
        source,
    };
    let [summary] = artifact.manifests.as_slice() else {
        return Err(ArchiveError::MultiPlatform {
            path: dest.to_owned(),
            count: artifact.manifests.len(),
        });
    };
    let scratch = tempfile::tempdir_in(
        dest.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
    .map_err(io_err)?;
    let mut tree = LayerTree::default();
    let config_blob = &artifact.blobs[&summary.config.digest];
    let config_name = format!("blobs/sha256/{}", summary.config.digest.hex());
    tree.insert(
        path(&config_name),
        blob_entry(
            &config_blob.data,
            &config_blob.descriptor.digest,
            config_blob.descriptor.size,
        ),
    );
    let mut layer_names = Vec::new();
    for layer in &summary.layers {
        let blob = &artifact.blobs[&layer.digest];
        let (tar_path, diff_id, size) = decompress_to(
            scratch.path(),
            &blob.data,
            super::layer_compression(&layer.media_type),
        )
        .map_err(io_err)?;
        let name = format!("blobs/sha256/{}", diff_id.hex());
        tree.insert(
            path(&name),
            file_entry(
                Content::Host {
                    path: tar_path,
                    stamp: FileStamp {
                        modified_ns: 0,
                        inode: 0,
                        device: 0,
                    },
                },
                size,
            ),
        );
        layer_names.push(name);
    }
    let manifest = vec![DockerManifestEntry {
        config: config_name,
        repo_tags: repo_tags.to_vec(),
        layers: layer_names,
    }];
    let bytes = serde_json::to_vec(&manifest).expect("manifest.json serialises");
    tree.insert(
        path("manifest.json"),
        file_entry(
            Content::Inline(Arc::from(bytes.clone())),
            bytes.len() as u64,
        ),
    );
    write_tree_atomic(dest, &tree)
}

/// Decompresses a layer blob into `dir`, returning the file, its digest (the diff_id) and size.
fn decompress_to(
    dir: &Path,
    data: &BlobData,
    compression: Option<Compression>,
) -> io::Result<(PathBuf, Digest, u64)> {
    let reader: Box<dyn io::Read> = match data {
        BlobData::File(p) => Box::new(io::BufReader::new(fs::File::open(p)?)),
        BlobData::Bytes(b) => Box::new(io::Cursor::new(b.clone())),
    };
    let mut reader = crate::layer::compress::decoder(compression, reader)?;
    let mut temp = NamedTempFile::new_in(dir)?;
    let mut writer = HashingWriter::new(BufWriter::new(temp.as_file_mut()));
    io::copy(&mut reader, &mut writer)?;
    let (buffered, digest, size) = writer.finish();
    buffered.into_inner().map_err(|e| e.into_error())?;
    let (_, path) = temp.keep().map_err(|e| e.error)?;
    Ok((path, digest, size))
}

/// Writes the OCI layout directory `dir` (as a mirror bundle stages it) as a tar file at
/// `dest`: `oci-layout`, `index.json` and every blob, in the same deterministic form as
/// [`write_oci_archive`].
pub fn write_layout_dir_archive(dir: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: dest.to_owned(),
        source,
    };
    let size_of = |file: &Path| -> Result<u64, ArchiveError> {
        Ok(fs::metadata(file).map_err(io_err)?.len())
    };
    let mut tree = LayerTree::default();
    for name in ["oci-layout", "index.json"] {
        let file = dir.join(name);
        let size = size_of(&file)?;
        let content = Content::Host {
            path: file,
            stamp: FileStamp {
                modified_ns: 0,
                inode: 0,
                device: 0,
            },
        };
        tree.insert(path(name), file_entry(content, size));
    }
    for entry in fs::read_dir(dir.join("blobs/sha256")).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only finished blobs: temporary files of an interrupted copy are not part of it.
        if let Ok(digest) = Digest::from_hex(&name) {
            // A symlink here (an existing archive added to may hold one) would put a host file
            // into the archive.
            if !entry.file_type().map_err(io_err)?.is_file() {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob `blobs/sha256/{name}` is a symlink or special file"),
                )));
            }
            let size = size_of(&entry.path())?;
            tree.insert(
                path(&format!("blobs/sha256/{name}")),
                blob_entry(&BlobData::File(entry.path()), &digest, size),
            );
        }
    }
    write_tree_atomic(dest, &tree)
}
