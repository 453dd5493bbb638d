//! Images: configs, manifests and indexes from layers, and the outputs they are written to.
//!
//! Input: one [`PlatformImage`] per platform (its config and its layers, base layers first).
//! Output: an [`ImageArtifact`], the root descriptor (a manifest, or an index for several
//! platforms) and every blob it references, ready for `layout`, `archive` or a registry.

pub mod archive;
pub mod bundle;
pub mod layout;
pub mod referrer;
pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;
use crate::layer::Compression;
use spec::{Descriptor, ImageConfig, Index, Manifest, Platform};

/// Why [`open_regular`] did not open a file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("it is a symlink or special file, not a regular file")]
    NotRegular,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Opens a file of a layout or bundle read from disk (a blob, `index.json`) only when it is a
/// regular file: a symlink there could lead to any file of the host, and a FIFO or device would
/// block or never end.
pub fn open_regular(path: &std::path::Path) -> Result<std::fs::File, OpenError> {
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::symlink_metadata(path)?;
    if !before.file_type().is_file() {
        return Err(OpenError::NotRegular);
    }
    let file = std::fs::File::open(path)?;
    let after = file.metadata()?;
    // Replaced by something else between the two looks.
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(OpenError::NotRegular);
    }
    Ok(file)
}

/// Reads a whole file with [`open_regular`].
pub fn read_regular(path: &std::path::Path) -> Result<Vec<u8>, OpenError> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular(path)?, &mut bytes)?;
    Ok(bytes)
}

/// Whether `path` is a regular file of `size` bytes, not following a symlink.
pub fn is_regular_of_size(path: &std::path::Path, size: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.len() == size)
}

/// Where a blob's bytes are.
#[derive(Clone, Debug)]
pub enum BlobData {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

#[derive(Clone, Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub data: BlobData,
}

/// One layer of an image being put together.
#[derive(Clone, Debug)]
pub struct ImageLayer {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub compression: Option<Compression>,
    pub data: BlobData,
}

/// The image for one platform: its config (rootfs and history filled in) and layers.
#[derive(Clone, Debug)]
pub struct PlatformImage {
    pub platform: Platform,
    pub config: ImageConfig,
    pub layers: Vec<ImageLayer>,
}

/// Which family of media types manifests use: OCI by default, Docker schema2 for registries
/// that predate OCI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaTypes {
    #[default]
    Oci,
    Docker,
}

impl MediaTypes {
    fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_MANIFEST,
            MediaTypes::Docker => spec::DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_INDEX,
            MediaTypes::Docker => spec::DOCKER_MANIFEST_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_CONFIG,
            MediaTypes::Docker => spec::DOCKER_CONFIG,
        }
    }
    fn layer(self, compression: Option<Compression>) -> &'static str {
        match (self, compression) {
            (MediaTypes::Oci, Some(Compression::Gzip)) => spec::OCI_LAYER_GZIP,
            (MediaTypes::Oci, Some(Compression::Zstd)) => spec::OCI_LAYER_ZSTD,
            (MediaTypes::Oci, None) => spec::OCI_LAYER_TAR,
            (MediaTypes::Docker, None) => spec::DOCKER_LAYER_TAR,
            // Schema2 has no zstd type; the build refuses that pairing before it gets here.
            (MediaTypes::Docker, Some(_)) => spec::DOCKER_LAYER_GZIP,
        }
    }
}

/// Compression of a layer as its media type says.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    if media_type.ends_with("gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with("zstd") {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// A finished image: the root descriptor and every blob under it.
#[derive(Clone, Debug)]
pub struct ImageArtifact {
    pub root: Descriptor,
    pub blobs: BTreeMap<Digest, Blob>,
    /// Per platform: manifest descriptor, config digest and the layer descriptors.
    pub manifests: Vec<ManifestSummary>,
    /// Artifacts attached to its manifests (SBOM, provenance), their blobs in `blobs`.
    pub referrers: Vec<referrer::Referrer>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ManifestSummary {
    pub platform: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Builds manifests (and an index for several platforms) for `images`. `annotations` go on
/// every manifest and on the index.
pub fn assemble_artifact(
    images: &[PlatformImage],
    media: MediaTypes,
    annotations: &BTreeMap<String, String>,
) -> ImageArtifact {
    let mut blobs = BTreeMap::new();
    let mut manifests = Vec::new();
    for image in images {
        let config = keep_document(
            &mut blobs,
            media.config(),
            spec::to_json_bytes(&image.config),
        );
        let mut layers = Vec::new();
        for layer in &image.layers {
            let descriptor = Descriptor::new(
                media.layer(layer.compression),
                layer.digest.clone(),
                layer.size,
            );
            blobs.insert(
                layer.digest.clone(),
                Blob {
                    descriptor: descriptor.clone(),
                    data: layer.data.clone(),
                },
            );
            layers.push(descriptor);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media.manifest().to_owned()),
            config: config.clone(),
            layers: layers.clone(),
            annotations: if media == MediaTypes::Oci {
                annotations.clone()
            } else {
                BTreeMap::new()
            },
            extra: BTreeMap::new(),
        };
        let mut descriptor =
            keep_document(&mut blobs, media.manifest(), spec::to_json_bytes(&manifest));
        descriptor.platform = Some(image.platform.clone());
        manifests.push(ManifestSummary {
            platform: image.platform.to_string(),
            manifest: descriptor,
            config,
            layers,
        });
    }

    let root = if manifests.len() == 1 {
        let mut root = manifests[0].manifest.clone();
        root.platform = None;
        root
    } else {
        let mut index = Index::new(Some(media.index()));
        index.manifests = manifests.iter().map(|m| m.manifest.clone()).collect();
        if media == MediaTypes::Oci {
            index.annotations = annotations.clone();
        }
        keep_document(&mut blobs, media.index(), spec::to_json_bytes(&index))
    };
    ImageArtifact {
        root,
        blobs,
        manifests,
        referrers: Vec::new(),
    }
}

/// Adds a document (config, manifest, index) to `blobs` and returns its descriptor.
fn keep_document(
    blobs: &mut BTreeMap<Digest, Blob>,
    media_type: &str,
    bytes: Vec<u8>,
) -> Descriptor {
    let descriptor = Descriptor::new(media_type, Digest::of_bytes(&bytes), bytes.len() as u64);
    blobs.insert(
        descriptor.digest.clone(),
        Blob {
            descriptor: descriptor.clone(),
            data: BlobData::Bytes(Arc::from(bytes)),
        },
    );
    descriptor
}
