//! A layer cache kept in a registry repository (`build --cache-from`, `--cache-to`), shared by
//! every machine that reaches the registry.
//!
//! One record per layer: an OCI image manifest of `artifactType` [`ARTIFACT_TYPE`], tagged
//! `layer-<portable key>` (see `crate::layer::portable`), whose layers are the layer blob and a
//! JSON blob of what layers on top read of it (`crate::source::pip::scan::LayerScan`), and whose
//! annotations give the layer's diff_id and uncompressed size. Only distribution-spec calls are
//! used: manifests by tag and digest, blobs by HEAD, GET and upload, cross-repository mounts.
//!
//! Writing is safe with any number of writers: blobs go first, then the manifest under its
//! digest, and the tag is moved last, so a reader finds either the old complete record or the
//! new one. Two writers of one key write records of the same layer.
//!
//! A record is as trusted as the cache directory: whoever can push to the repository can put
//! any layer under any key, as whoever can write the cache directory can. What is checked is
//! that a record is well formed, its sizes capped, and that its blob is there with its size (a
//! mount) or its digest (a download).

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use super::push::{BlobOutcome, KnownBlobs, NoPushReport, push_blob, put_manifest};
use super::{Registry, RegistryError, blob_request, check, read_limited, scope};
use crate::digest::Digest;
use crate::image::spec::{self, Descriptor, Manifest};
use crate::image::{Blob, BlobData};
use crate::layer::cache::{Cache, CacheKey};
use crate::layer::{Compression, LayerBlob};

/// The `artifactType` of a layer record.
pub const ARTIFACT_TYPE: &str = "application/vnd.oci-build.layer-cache.v1+json";
/// The media type of the blob of what layers on top read of the layer.
pub const FACTS_MEDIA_TYPE: &str = "application/vnd.oci-build.layer-facts.v1+json";
/// The OCI empty descriptor's media type, the config of an artifact that has none.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const ANNOTATION_KEY: &str = "dev.oci-build.cache.key";
const ANNOTATION_DIFF_ID: &str = "dev.oci-build.cache.diff-id";
const ANNOTATION_DIFF_SIZE: &str = "dev.oci-build.cache.diff-size";
/// Records are small; a larger manifest is not one.
const MAX_RECORD_SIZE: u64 = 64 << 10;
/// What layers on top read of a layer (its directories, symlinks, dpkg status…).
pub const MAX_FACTS_SIZE: u64 = 64 << 20;

/// One repository used as a layer cache.
pub struct CacheRepo<'r> {
    registry: &'r Registry,
    repository: String,
}

/// A record found for a key: the layer and what layers on top read of it (unparsed JSON).
#[derive(Debug)]
pub struct FoundLayer {
    pub blob: LayerBlob,
    pub facts: Vec<u8>,
}

/// The tag of the record of `key`.
pub fn tag_of(key: &CacheKey) -> String {
    format!("layer-{}", key.as_str())
}

fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => spec::OCI_LAYER_GZIP,
        Compression::Zstd => spec::OCI_LAYER_ZSTD,
    }
}

impl<'r> CacheRepo<'r> {
    pub fn new(registry: &'r Registry, repository: &str) -> CacheRepo<'r> {
        CacheRepo {
            registry,
            repository: repository.to_owned(),
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.host.clone(),
            message: format!("layer cache {}: {message}", self.repository),
        }
    }

    /// The record of `key`, None where there is none. A record that is not one oci-build
    /// wrote for this key is an error (the caller ignores it and builds the layer).
    pub fn find(&self, key: &CacheKey) -> Result<Option<FoundLayer>, RegistryError> {
        let scopes = [scope(&self.repository, "pull")];
        let tag = tag_of(key);
        let url = self
            .registry
            .url(&format!("{}/manifests/{tag}", self.repository));
        let response = self.registry.send(&super::client::Request {
            method: Method::GET,
            url,
            scopes: &scopes,
            headers: vec![("Accept", spec::OCI_MANIFEST.to_owned())],
            body: super::client::Body::Empty,
            retry: true,
        })?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = check(self.registry, response, &self.repository, "pull", || {
            format!("layer cache record {}:{tag}", self.repository)
        })?;
        let bytes = read_limited(
            self.registry,
            response,
            "a layer cache record",
            MAX_RECORD_SIZE,
        )?;
        let manifest: Manifest = super::pull::parse(self.registry, &bytes, "layer cache record")?;
        let blob = record_layer(&manifest, key).map_err(|message| self.protocol(message))?;
        let facts = manifest
            .layers
            .get(1)
            .filter(|d| d.media_type == FACTS_MEDIA_TYPE)
            .ok_or_else(|| self.protocol(format!("record {tag} has no facts blob")))?;
        let facts = self.small_blob(facts, MAX_FACTS_SIZE)?;
        Ok(Some(FoundLayer { blob, facts }))
    }

    fn small_blob(&self, descriptor: &Descriptor, limit: u64) -> Result<Vec<u8>, RegistryError> {
        if descriptor.size > limit {
            return Err(RegistryError::TooLarge {
                registry: self.registry.host.clone(),
                what: format!("layer cache blob {}", descriptor.digest),
                size: descriptor.size,
                limit,
            });
        }
        let scopes = [scope(&self.repository, "pull")];
        let response =
            super::pull::get_blob(self.registry, &self.repository, &descriptor.digest, &scopes)?;
        let bytes = read_limited(
            self.registry,
            response,
            "a layer cache blob",
            descriptor.size,
        )?;
        let found = Digest::of_bytes(&bytes);
        if found != descriptor.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.host.clone(),
                what: format!("layer cache blob in {}", self.repository),
                expected: descriptor.digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Whether the repository has the layer's blob with its size, by HEAD (a mount reads no
    /// byte, so the size is what can be checked without downloading).
    pub fn has_blob(&self, blob: &LayerBlob) -> Result<bool, RegistryError> {
        let scopes = [scope(&self.repository, "pull")];
        let response = self.registry.send(&blob_request(
            self.registry,
            Method::HEAD,
            &self.repository,
            &blob.digest,
            &scopes,
        ))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let response = check(self.registry, response, &self.repository, "pull", || {
            format!("blob {}", blob.digest)
        })?;
        let size = response
            .headers()
            .get("Content-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(size == Some(blob.size))
    }

    /// Downloads the layer's blob into `cache`, where it lands only with its digest and size.
    pub fn download(&self, blob: &LayerBlob, cache: &Cache) -> Result<(), RegistryError> {
        let scopes = [scope(&self.repository, "pull")];
        let descriptor = Descriptor::new(
            layer_media_type(blob.compression),
            blob.digest.clone(),
            blob.size,
        );
        super::pull::fetch_blob(self.registry, &self.repository, &descriptor, &scopes, cache)
    }

    /// Publishes the record of `key`: the layer blob (skipped when there, mounted from a
    /// repository `known` names, else uploaded from `data`), the facts, the manifest by digest,
    /// then its tag. Returns the layer blob's bytes uploaded.
    ///
    /// Another writer publishing the same blobs at the same moment can make the registry refuse
    /// the manifest (docker-registry's filesystem storage writes a repository's link to a blob
    /// in place, and a manifest checked while it is half written is answered 400
    /// DIGEST_INVALID): the record is then written again, its blobs found present.
    pub fn publish(
        &self,
        key: &CacheKey,
        layer: &LayerBlob,
        data: BlobData,
        facts: Vec<u8>,
        known: &KnownBlobs,
    ) -> Result<u64, RegistryError> {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            match self.publish_once(key, layer, data.clone(), facts.clone(), known) {
                Err(RegistryError::Status { status, .. })
                    if status == StatusCode::BAD_REQUEST && attempt < ATTEMPTS =>
                {
                    tracing::debug!(repository = %self.repository, key = key.as_str(), attempt, "layer cache record refused, written again");
                    std::thread::sleep(self.registry.options.backoff * attempt);
                    attempt += 1;
                }
                Err(RegistryError::NotFound { .. }) if attempt < ATTEMPTS => {
                    tracing::debug!(repository = %self.repository, key = key.as_str(), attempt, "a blob of a layer cache record not found, written again");
                    std::thread::sleep(self.registry.options.backoff * attempt);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn publish_once(
        &self,
        key: &CacheKey,
        layer: &LayerBlob,
        data: BlobData,
        facts: Vec<u8>,
        known: &KnownBlobs,
    ) -> Result<u64, RegistryError> {
        let host = &self.registry.host;
        let repository = &self.repository;
        let layer_blob = Blob {
            descriptor: Descriptor::new(
                layer_media_type(layer.compression),
                layer.digest.clone(),
                layer.size,
            ),
            data,
        };
        let facts_blob = bytes_blob(FACTS_MEDIA_TYPE, facts);
        let empty = bytes_blob(EMPTY_MEDIA_TYPE, b"{}".to_vec());
        let mut uploaded = 0;
        for blob in [&layer_blob, &facts_blob, &empty] {
            let digest = &blob.descriptor.digest;
            let sources = known.sources(host, digest, repository);
            if let BlobOutcome::Uploaded(bytes) =
                push_blob(self.registry, repository, blob, &sources, &NoPushReport)?
                && digest == &layer.digest
            {
                uploaded += bytes;
            }
            known.record(host, digest, repository);
        }
        let manifest = record_manifest(
            key,
            layer,
            facts_blob.descriptor.clone(),
            empty.descriptor.clone(),
        );
        let manifest = bytes_blob(spec::OCI_MANIFEST, spec::to_json_bytes(&manifest));
        put_manifest(
            self.registry,
            repository,
            &manifest.descriptor.digest.to_string(),
            &manifest,
        )?;
        // The tag moves last: a reader sees the old record or this complete one.
        put_manifest(self.registry, repository, &tag_of(key), &manifest)?;
        Ok(uploaded)
    }
}

/// The record of `key`: the empty config, the layer and its facts, the diff_id and size in
/// annotations.
fn record_manifest(
    key: &CacheKey,
    layer: &LayerBlob,
    facts: Descriptor,
    empty: Descriptor,
) -> Manifest {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_KEY.to_owned(), key.as_str().to_owned());
    annotations.insert(ANNOTATION_DIFF_ID.to_owned(), layer.diff_id.to_string());
    annotations.insert(ANNOTATION_DIFF_SIZE.to_owned(), layer.diff_size.to_string());
    let layer = Descriptor::new(
        layer_media_type(layer.compression),
        layer.digest.clone(),
        layer.size,
    );
    Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.to_owned()),
        config: empty,
        layers: vec![layer, facts],
        annotations,
        extra: BTreeMap::from([(
            "artifactType".to_owned(),
            serde_json::Value::String(ARTIFACT_TYPE.to_owned()),
        )]),
    }
}

/// The layer a record names, checked to be one of ours for `key`; the error says what is
/// wrong with it.
fn record_layer(manifest: &Manifest, key: &CacheKey) -> Result<LayerBlob, String> {
    let tag = tag_of(key);
    let artifact_type = manifest.extra.get("artifactType").and_then(|v| v.as_str());
    if artifact_type != Some(ARTIFACT_TYPE)
        || manifest.annotations.get(ANNOTATION_KEY).map(String::as_str) != Some(key.as_str())
    {
        return Err(format!(
            "{tag} is not an oci-build layer record for that key"
        ));
    }
    let layer = manifest
        .layers
        .first()
        .ok_or_else(|| format!("record {tag} has no layer"))?;
    let compression = [Compression::Gzip, Compression::Zstd]
        .into_iter()
        .find(|c| layer_media_type(*c) == layer.media_type)
        .ok_or_else(|| {
            format!(
                "record {tag} has a layer of media type {}",
                layer.media_type
            )
        })?;
    let diff_id = manifest
        .annotations
        .get(ANNOTATION_DIFF_ID)
        .and_then(|d| d.parse::<Digest>().ok());
    let diff_size = manifest
        .annotations
        .get(ANNOTATION_DIFF_SIZE)
        .and_then(|s| s.parse::<u64>().ok());
    let (Some(diff_id), Some(diff_size)) = (diff_id, diff_size) else {
        return Err(format!("record {tag} lacks its diff_id or size"));
    };
    Ok(LayerBlob {
        digest: layer.digest.clone(),
        size: layer.size,
        diff_id,
        diff_size,
        compression,
    })
}

fn bytes_blob(media_type: &str, bytes: Vec<u8>) -> Blob {
    Blob {
        descriptor: Descriptor::new(media_type, Digest::of_bytes(&bytes), bytes.len() as u64),
        data: BlobData::Bytes(bytes.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::cache::CacheKeyBuilder;

    fn key(name: &str) -> CacheKey {
        CacheKeyBuilder::new(name).finish()
    }

    fn layer() -> LayerBlob {
        LayerBlob {
            digest: Digest::of_bytes(b"blob"),
            size: 4,
            diff_id: Digest::of_bytes(b"tar"),
            diff_size: 3,
            compression: Compression::Zstd,
        }
    }

    fn record(key: &CacheKey) -> Manifest {
        let facts = bytes_blob(FACTS_MEDIA_TYPE, b"{}".to_vec()).descriptor;
        let empty = bytes_blob(EMPTY_MEDIA_TYPE, b"{}".to_vec()).descriptor;
        let manifest = record_manifest(key, &layer(), facts, empty);
        // As a registry would serve it back.
        serde_json::from_slice(&spec::to_json_bytes(&manifest)).unwrap()
    }

    #[test]
    fn a_record_reads_back_as_its_layer_for_its_key_only() {
        let mine = key("a");
        assert_eq!(record_layer(&record(&mine), &mine), Ok(layer()));
        // A record tagged for one key but written for another is not used.
        assert!(record_layer(&record(&mine), &key("b")).is_err());

        let mut foreign = record(&mine);
        foreign.extra.insert(
            "artifactType".into(),
            serde_json::Value::String("application/vnd.example+json".into()),
        );
        assert!(record_layer(&foreign, &mine).is_err());

        let mut no_diff_id = record(&mine);
        no_diff_id
            .annotations
            .insert(ANNOTATION_DIFF_ID.into(), "sha256:../x".into());
        assert!(record_layer(&no_diff_id, &mine).is_err());

        let mut other_type = record(&mine);
        other_type.layers[0].media_type = spec::OCI_LAYER_TAR.into();
        assert!(record_layer(&other_type, &mine).is_err());
    }
}
