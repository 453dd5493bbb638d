//! OCI 1.1 referrers: artifacts (an SBOM, a provenance statement) attached to a manifest by a
//! `subject` field, and the index that lists the referrers of one subject where no referrers
//! API does (a registry without one, a layout, a bundle).
//!
//! Specs: image-spec `manifest.md` ("Guidelines for Artifact Usage", `subject`), distribution
//! spec "Referrers Tag Schema" (the `sha256-<hex>` tag):
//! <https://github.com/opencontainers/image-spec/blob/main/manifest.md#guidelines-for-artifact-usage>,
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#referrers-tag-schema>.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::spec::{self, Descriptor, Index, Manifest};
use super::{Blob, BlobData, ImageArtifact};
use crate::digest::Digest;

/// The config of an artifact manifest that has none: the empty JSON object.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONTENT: &[u8] = b"{}";

/// One artifact manifest attached to `subject` (a platform manifest of the same artifact).
#[derive(Clone, Debug)]
pub struct Referrer {
    pub subject: Digest,
    /// The artifact manifest as an index lists it: with `artifactType` and its annotations.
    pub descriptor: Descriptor,
}

/// The tag under which the referrers of `subject` are listed where no referrers API is.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The ref name of the referrers index of `subject` in a layout where the image is named
/// `name`: `REPOSITORY:sha256-<hex>` beside `REPOSITORY:TAG`, as bundles name it, or the bare
/// fallback tag for a name without a repository part.
pub fn layout_ref_name(name: &str, subject: &Digest) -> String {
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') && !repository.is_empty() => {
            format!("{repository}:{}", fallback_tag(subject))
        }
        _ => fallback_tag(subject),
    }
}

/// Whether a layout ref name names a referrers index (`…sha256-<64 hex>`), not an image.
pub fn is_referrers_name(name: &str) -> bool {
    let tag = name.rsplit_once(':').map_or(name, |(_, tag)| tag);
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| Digest::from_hex(hex).is_ok())
}

/// The artifact type a descriptor or manifest names (`artifactType`).
pub fn artifact_type(extra: &BTreeMap<String, Value>) -> Option<&str> {
    extra.get("artifactType").and_then(Value::as_str)
}

/// Adds to `index` the referrers it does not list yet; whether it changed.
pub fn merge_referrers(index: &mut Index, referrers: &[Descriptor]) -> bool {
    let before = index.manifests.len();
    for referrer in referrers {
        if !index.manifests.iter().any(|d| d.digest == referrer.digest) {
            index.manifests.push(referrer.clone());
        }
    }
    index.manifests.len() != before
}

/// The referrers of each subject of `artifact`, in the order they were attached.
pub fn by_subject(artifact: &ImageArtifact) -> Vec<(Digest, Vec<Descriptor>)> {
    let mut grouped: Vec<(Digest, Vec<Descriptor>)> = Vec::new();
    for referrer in &artifact.referrers {
        match grouped.iter_mut().find(|(s, _)| *s == referrer.subject) {
            Some((_, list)) => list.push(referrer.descriptor.clone()),
            None => grouped.push((referrer.subject.clone(), vec![referrer.descriptor.clone()])),
        }
    }
    grouped
}

/// An index listing `referrers`, as its bytes and descriptor.
pub fn referrers_index(referrers: &[Descriptor]) -> (Descriptor, Arc<[u8]>) {
    let mut index = Index::new(Some(spec::OCI_INDEX));
    index.manifests = referrers.to_vec();
    index_document(&index)
}

/// An index as a document: its descriptor and bytes.
pub fn index_document(index: &Index) -> (Descriptor, Arc<[u8]>) {
    let bytes: Arc<[u8]> = Arc::from(spec::to_json_bytes(index));
    let descriptor = Descriptor::new(
        spec::OCI_INDEX,
        Digest::of_bytes(&bytes),
        bytes.len() as u64,
    );
    (descriptor, bytes)
}

impl ImageArtifact {
    /// Attaches `content` (of media type `artifact_type`) to the manifest `subject` as an
    /// artifact manifest: the empty config, one layer, `subject`, and `annotations` on both the
    /// manifest and its descriptor. Its blobs join the artifact's.
    pub fn attach(
        &mut self,
        subject: &Descriptor,
        artifact_type: &str,
        content: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Descriptor {
        let empty = self.keep(EMPTY_MEDIA_TYPE, Arc::from(EMPTY_CONTENT));
        let layer = self.keep(artifact_type, Arc::from(content));
        let subject = Descriptor::new(&subject.media_type, subject.digest.clone(), subject.size);
        let mut extra = BTreeMap::new();
        extra.insert("artifactType".to_owned(), Value::from(artifact_type));
        extra.insert(
            "subject".to_owned(),
            serde_json::to_value(&subject).expect("descriptors serialise"),
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::OCI_MANIFEST.to_owned()),
            config: empty,
            layers: vec![layer],
            annotations: annotations.clone(),
            extra,
        };
        let mut descriptor = self.keep(
            spec::OCI_MANIFEST,
            Arc::from(spec::to_json_bytes(&manifest)),
        );
        descriptor.annotations = annotations;
        descriptor
            .extra
            .insert("artifactType".to_owned(), Value::from(artifact_type));
        self.referrers.push(Referrer {
            subject: subject.digest,
            descriptor: descriptor.clone(),
        });
        descriptor
    }

    /// Adds a document read from elsewhere under its own descriptor.
    pub fn keep_bytes(&mut self, descriptor: &Descriptor, bytes: Vec<u8>) {
        self.blobs.insert(
            descriptor.digest.clone(),
            Blob {
                descriptor: descriptor.clone(),
                data: BlobData::Bytes(Arc::from(bytes)),
            },
        );
    }

    fn keep(&mut self, media_type: &str, bytes: Arc<[u8]>) -> Descriptor {
        let descriptor = Descriptor::new(media_type, Digest::of_bytes(&bytes), bytes.len() as u64);
        self.blobs.insert(
            descriptor.digest.clone(),
            Blob {
                descriptor: descriptor.clone(),
                data: BlobData::Bytes(bytes),
            },
        );
        descriptor
    }

    /// Whether `digest` is a manifest or index of the artifact (pushed as a manifest, not as a
    /// blob): the root, a platform manifest, or a referrer.
    pub fn is_document(&self, digest: &Digest) -> bool {
        *digest == self.root.digest
            || self.manifests.iter().any(|m| m.manifest.digest == *digest)
            || self
                .referrers
                .iter()
                .any(|r| r.descriptor.digest == *digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_index_names_follow_the_image_name() {
        let digest = Digest::of_bytes(b"x");
        let hex = digest.hex().to_owned();
        assert_eq!(
            layout_ref_name("mlrun/mlrun:1.0", &digest),
            format!("mlrun/mlrun:sha256-{hex}")
        );
        assert_eq!(
            layout_ref_name("localhost:5000/a/b:1", &digest),
            format!("localhost:5000/a/b:sha256-{hex}")
        );
        assert_eq!(layout_ref_name("plain", &digest), format!("sha256-{hex}"));
        assert_eq!(
            layout_ref_name("localhost:5000/a", &digest),
            format!("sha256-{hex}")
        );
    }
}
