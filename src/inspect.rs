//! Reading a written image back: manifest, config, layers with sizes, history.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::image::layout::{Layout, LayoutError, MAX_DOCUMENT_SIZE};
use crate::image::spec::{
    self, ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest,
};
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("cannot unpack `{path}`")]
    Archive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "inspect reads oci: and oci-archive: locations; convert `{0}` with `skopeo copy` first"
    )]
    Unsupported(String),
    #[error(
        "{digest} has media type `{media_type}`, which is neither an image manifest nor an index"
    )]
    UnknownMediaType { digest: String, media_type: String },
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub digest: String,
    pub media_type: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub images: Vec<ImageReport>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub platform: String,
    pub manifest: Descriptor,
    pub config_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub config: ContainerConfig,
    pub layers: Vec<LayerReport>,
    pub history: Vec<History>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub diff_id: Option<String>,
    pub size: u64,
    pub media_type: String,
}

pub fn inspect(source: &Transport) -> Result<Report, InspectError> {
    match source {
        Transport::Oci { dir, name } => {
            inspect_layout(&Layout::open(dir)?, name.as_deref(), source)
        }
        Transport::OciArchive { file, name } => {
            let unpacked = unpack_documents(file)?;
            inspect_layout(&Layout::open(unpacked.path())?, name.as_deref(), source)
        }
        Transport::DockerArchive { .. } | Transport::Docker(_) => {
            Err(InspectError::Unsupported(source.to_string()))
        }
    }
}

/// Unpacks the small files of an OCI archive (index, manifests, configs), leaving layers,
/// which inspect does not read, in the archive.
fn unpack_documents(file: &std::path::Path) -> Result<tempfile::TempDir, InspectError> {
    let unpacked = tempfile::tempdir().map_err(|e| archive_err(file, e))?;
    let reader = fs::File::open(file).map_err(|e| archive_err(file, e))?;
    let mut archive = tar::Archive::new(io::BufReader::new(reader));
    for entry in archive.entries().map_err(|e| archive_err(file, e))? {
        let mut entry = entry.map_err(|e| archive_err(file, e))?;
        if entry.header().entry_type().is_file() && entry.size() <= MAX_DOCUMENT_SIZE {
            entry
                .unpack_in(unpacked.path())
                .map_err(|e| archive_err(file, e))?;
        }
    }
    Ok(unpacked)
}

fn archive_err(path: &std::path::Path, source: io::Error) -> InspectError {
    InspectError::Archive {
        path: path.to_owned(),
        source,
    }
}

fn inspect_layout(
    layout: &Layout,
    name: Option<&str>,
    source: &Transport,
) -> Result<Report, InspectError> {
    let root = layout.resolve(name)?;
    let mut report = Report {
        source: source.to_string(),
        digest: root.digest.to_string(),
        media_type: root.media_type.clone(),
        annotations: BTreeMap::new(),
        images: Vec::new(),
    };
    let manifests = if spec::is_index(&root.media_type) {
        let (index, _): (Index, _) = layout.read_document(&root)?;
        report.annotations = index.annotations.clone();
        index.manifests
    } else if spec::is_manifest(&root.media_type) {
        vec![root]
    } else {
        return Err(InspectError::UnknownMediaType {
            digest: root.digest.to_string(),
            media_type: root.media_type,
        });
    };
    for descriptor in manifests {
        let (manifest, _): (Manifest, _) = layout.read_document(&descriptor)?;
        if report.annotations.is_empty() {
            report.annotations = manifest.annotations.clone();
        }
        let (config, _): (ImageConfig, _) = layout.read_document(&manifest.config)?;
        let platform = match &config.variant {
            Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
            None => format!("{}/{}", config.os, config.architecture),
        };
        let layers: Vec<LayerReport> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| LayerReport {
                digest: layer.digest.to_string(),
                diff_id: config.rootfs.diff_ids.get(i).map(ToString::to_string),
                size: layer.size,
                media_type: layer.media_type.clone(),
            })
            .collect();
        report.images.push(ImageReport {
            platform,
            config_digest: manifest.config.digest.to_string(),
            size: layers.iter().map(|l| l.size).sum(),
            manifest: descriptor,
            created: config.created.clone(),
            config: config.config.clone().unwrap_or_default(),
            layers,
            history: config.history.clone(),
        });
    }
    Ok(report)
}
