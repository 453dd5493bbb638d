//! `oci-build sbom SOURCE`: the SBOM of an image in an OCI layout or archive. The one attached
//! as a referrer of its platform manifest when there is one in the asked format; else one made
//! now from its layers (dpkg status, site directories' metadata, conda-meta), so images that
//! oci-build did not build have one too.

use std::io;
use std::path::PathBuf;

use super::scan::{self, LayerPackages};
use super::{ImageSubject, LayerSubject, SbomFormat, sbom_document};
use crate::digest::Digest;
use crate::image::layout::{Layout, LayoutError};
use crate::image::referrer;
use crate::image::spec::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("cannot unpack `{path}`")]
    Archive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "sbom reads oci: and oci-archive: locations; copy `{0}` into one first (skopeo copy, or oci-build mirror to dir:)"
    )]
    Unsupported(String),
    #[error(
        "{source_name} has no image for {platform} (it has {available}); name one with --platform"
    )]
    NoPlatform {
        source_name: String,
        platform: String,
        available: String,
    },
    #[error(
        "{source_name}: `{digest}` has media type `{media_type}`, which is neither an image manifest nor an index"
    )]
    NotAnImage {
        source_name: String,
        digest: Digest,
        media_type: String,
    },
    #[error("{source_name}: reading layer {digest}")]
    Layer {
        source_name: String,
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

/// Where an SBOM came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The referrer (artifact manifest) attached to the image.
    Referrer(Digest),
    /// Made now from the image's layers.
    Layers,
}

/// The SBOM of the image at `source` for `platform` (the only one, else the host's).
/// `created` is the time of an SBOM made now (RFC 3339); None takes the image's.
pub fn sbom_of(
    source: &Transport,
    platform: Option<&Platform>,
    format: SbomFormat,
    created: Option<String>,
) -> Result<(Vec<u8>, Origin), SbomError> {
    let (dir, name, _unpacked) = match source {
        Transport::Oci { dir, name } => (dir.clone(), name.clone(), None),
        Transport::OciArchive { file, name } => {
            let archive_err = |source| SbomError::Archive {
                path: file.clone(),
                source,
            };
            let unpacked = tempfile::tempdir().map_err(archive_err)?;
            let reader = std::fs::File::open(file).map_err(archive_err)?;
            tar::Archive::new(io::BufReader::new(reader))
                .unpack(unpacked.path())
                .map_err(archive_err)?;
            (unpacked.path().to_owned(), name.clone(), Some(unpacked))
        }
        _ => return Err(SbomError::Unsupported(source.to_string())),
    };
    let source_name = source.to_string();
    let layout = Layout::open(&dir)?;
    let root = layout.resolve(name.as_deref())?;
    let image_name = root
        .ref_name()
        .map(str::to_owned)
        .unwrap_or_else(|| source_name.clone());
    let manifest_descriptor = platform_manifest(&layout, &root, platform, &source_name)?;

    if let Some(bytes) = attached(&layout, &image_name, &manifest_descriptor.digest, format)? {
        return Ok(bytes);
    }

    let (manifest, _): (Manifest, _) = layout.read_document(&manifest_descriptor)?;
    let (config, _): (ImageConfig, _) = layout.read_document(&manifest.config)?;
    let mut layers = Vec::new();
    for layer in &manifest.layers {
        layout.verify_blob(layer)?;
        let read = || -> io::Result<LayerPackages> {
            let file = crate::image::open_regular(&layout.blob_path(&layer.digest))
                .map_err(|e| io::Error::other(e.to_string()))?;
            let reader = crate::layer::compress::decoder(
                crate::image::layer_compression(&layer.media_type),
                Box::new(io::BufReader::new(file)),
            )?;
            LayerPackages::of_tar(reader)
        };
        let packages = read().map_err(|source| SbomError::Layer {
            source_name: source_name.clone(),
            digest: layer.digest.clone(),
            source,
        })?;
        layers.push(std::sync::Arc::new(packages));
    }
    let packages = scan::contents(&layers);
    // History records of empty layers (ENV, CMD) name no layer.
    let descriptions: Vec<Option<String>> = config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .map(|h| h.created_by.clone())
        .collect();
    let subject = ImageSubject {
        name: image_name,
        platform: manifest_descriptor
            .platform
            .clone()
            .unwrap_or_else(|| config.platform()),
        manifest: manifest_descriptor.digest.clone(),
        layers: manifest
            .layers
            .iter()
            .enumerate()
            .map(|(n, l)| LayerSubject {
                digest: l.digest.clone(),
                description: descriptions.get(n).cloned().flatten(),
            })
            .collect(),
    };
    let created = created
        .or_else(|| config.created.as_deref().and_then(whole_seconds_utc))
        .unwrap_or_else(|| crate::time::rfc3339(0));
    Ok((
        sbom_document(format, &subject, &packages, &created),
        Origin::Layers,
    ))
}

/// The platform manifest of `root`: itself, or the index's manifest for `platform`.
fn platform_manifest(
    layout: &Layout,
    root: &Descriptor,
    platform: Option<&Platform>,
    source_name: &str,
) -> Result<Descriptor, SbomError> {
    if spec::is_manifest(&root.media_type) {
        return Ok(Descriptor::new(
            &root.media_type,
            root.digest.clone(),
            root.size,
        ));
    }
    if !spec::is_index(&root.media_type) {
        return Err(SbomError::NotAnImage {
            source_name: source_name.to_owned(),
            digest: root.digest.clone(),
            media_type: root.media_type.clone(),
        });
    }
    let (index, _): (Index, _) = layout.read_document(root)?;
    let images: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| spec::is_manifest(&d.media_type))
        .collect();
    let host = Platform::host();
    let found = match (platform, &images[..]) {
        (None, [only]) => Some(*only),
        (wanted, _) => index.manifest_for(wanted.unwrap_or(&host)),
    };
    found.cloned().ok_or_else(|| SbomError::NoPlatform {
        source_name: source_name.to_owned(),
        platform: platform.unwrap_or(&host).to_string(),
        available: index.platform_list(),
    })
}

/// The SBOM in `format` that the layout lists as a referrer of `subject`, if any.
fn attached(
    layout: &Layout,
    image_name: &str,
    subject: &Digest,
    format: SbomFormat,
) -> Result<Option<(Vec<u8>, Origin)>, SbomError> {
    let wanted = referrer::layout_ref_name(image_name, subject);
    let index = layout.index()?;
    let Some(listing) = index
        .manifests
        .iter()
        .find(|d| d.ref_name() == Some(&wanted))
    else {
        return Ok(None);
    };
    let (listed, _): (Index, _) = layout.read_document(listing)?;
    for descriptor in &listed.manifests {
        if referrer::artifact_type(&descriptor.extra) != Some(format.media_type()) {
            continue;
        }
        let (manifest, _): (Manifest, _) = layout.read_document(descriptor)?;
        let Some(layer) = manifest.layers.first() else {
            continue;
        };
        layout.verify_blob(layer)?;
        let bytes = crate::image::read_regular(&layout.blob_path(&layer.digest)).map_err(|e| {
            SbomError::Layer {
                source_name: layout.dir().display().to_string(),
                digest: layer.digest.clone(),
                source: io::Error::other(e.to_string()),
            }
        })?;
        return Ok(Some((bytes, Origin::Referrer(descriptor.digest.clone()))));
    }
    Ok(None)
}

/// An image's `created` (RFC 3339) as SPDX and CycloneDX want a time: whole seconds in UTC
/// (`2026-11-30T17:19:35Z`). Times with another offset are not converted: None.
fn whole_seconds_utc(created: &str) -> Option<String> {
    let seconds = created.get(..19)?;
    let rest = &created[19..];
    let fraction = rest
        .strip_prefix('.')
        .map_or("", |r| r.trim_end_matches(|c: char| !c.is_ascii_digit()));
    let zone = &rest[rest
        .len()
        .min(usize::from(!fraction.is_empty()) + fraction.len())..];
    let shape = seconds.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        _ => b.is_ascii_digit(),
    });
    (shape && matches!(zone, "Z" | "+00:00")).then(|| format!("{seconds}Z"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_times_become_whole_seconds_in_utc() {
        let t = super::whole_seconds_utc;
        assert_eq!(
            t("2026-11-30T17:19:35.538746348Z").unwrap(),
            "2026-11-30T17:19:35Z"
        );
        assert_eq!(t("2026-11-30T17:19:35Z").unwrap(), "2026-11-30T17:19:35Z");
        assert_eq!(
            t("2026-11-30T17:19:35+00:00").unwrap(),
            "2026-11-30T17:19:35Z"
        );
        assert_eq!(t("2026-11-30T17:19:35+02:00"), None);
        assert_eq!(t("yesterday"), None);
    }
}
