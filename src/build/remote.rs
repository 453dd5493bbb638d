//! The registry layer cache (`build --cache-from`, `--cache-to`): layers looked for under
//! their portable key in the cache and in registry repositories before they are built, and
//! recorded there with what layers on top read of them (see
//! [`crate::registry::cache_repo`]).

use super::{BuildError, Builder, BuiltTarget, CachePublished, CacheToFailure, RegistryCounts};
use crate::image::{self, BlobData, ImageLayer};
use crate::layer::LayerBlob;
use crate::layer::cache::CacheKey;
use crate::reference::Reference;
use crate::registry::RegistryError;
use crate::source::pip::scan::LayerScan;

/// Why a registry cache record was not used (the layer is then built): said in a debug line.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordUnused {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("its facts are not what oci-build records")]
    Facts(#[from] serde_json::Error),
    #[error("its blob is missing from the repository, or of another size")]
    BlobMissing,
    #[error("its layer has another compression than this build's")]
    Compression,
    #[error("its facts name paths no layer scan gives (control characters, `..`)")]
    Implausible,
}

/// What a registry cache record keeps beside its layer: what the layers on top read of it, and
/// its packages for the SBOM, so a build on a layer it only mounts reads nothing of it.
#[derive(serde::Deserialize)]
struct RecordFacts {
    scan: LayerScan,
    packages: crate::sbom::scan::LayerPackages,
}

/// [`RecordFacts`] as written.
#[derive(serde::Serialize)]
struct RecordFactsOf<'a> {
    scan: &'a LayerScan,
    packages: &'a crate::sbom::scan::LayerPackages,
}

impl Builder<'_> {
    /// The layer under its portable key: in the cache, else in the first `--cache-from`
    /// repository that has a usable record. A record that is not (its blob gone or changed,
    /// the registry unreachable) is passed over with a debug line, and the layer is built.
    pub(super) fn find_layer(&self, key: &CacheKey) -> Option<(LayerBlob, RegistryCounts)> {
        if let Some(blob) = self.cache.lookup_layer(key) {
            tracing::debug!(key = key.as_str(), digest = %blob.digest, "portable layer key hit");
            return Some((blob, RegistryCounts::default()));
        }
        for reference in &self.options.registry_cache.from {
            let name = reference.to_string();
            if self.unusable.lock().expect("unusable").contains(&name) {
                continue;
            }
            match self.find_in_registry(reference, key) {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {
                    tracing::debug!(cache = %reference, key = key.as_str(), "no layer cache record");
                }
                // A repository that cannot be reached or read is not asked again in this run.
                Err(RecordUnused::Registry(
                    error @ (RegistryError::Unreachable { .. }
                    | RegistryError::Unauthorized { .. }
                    | RegistryError::Denied { .. }
                    | RegistryError::Tls { .. }
                    | RegistryError::Untrusted { .. }
                    | RegistryError::Credentials(_)),
                )) => {
                    tracing::warn!("layer cache {reference} not used in this build: {error}");
                    self.unusable.lock().expect("unusable").insert(name);
                }
                Err(error) => {
                    let cause = std::error::Error::source(&error)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    tracing::debug!(cache = %reference, key = key.as_str(), %error, cause, "layer cache record ignored; the layer is built");
                }
            }
        }
        None
    }

    fn find_in_registry(
        &self,
        reference: &Reference,
        key: &CacheKey,
    ) -> Result<Option<(LayerBlob, RegistryCounts)>, RecordUnused> {
        use crate::registry::cache_repo::CacheRepo;
        let registry = self.registries.get(&reference.registry)?;
        let repo = CacheRepo::new(&registry, &reference.repository);
        let Some(found) = repo.find(key)? else {
            return Ok(None);
        };
        let blob = found.blob;
        if blob.compression != self.options.compression {
            return Err(RecordUnused::Compression);
        }
        let RecordFacts { scan, packages } = serde_json::from_slice(&found.facts)?;
        if !scan.is_plausible() {
            return Err(RecordUnused::Implausible);
        }
        let mut counts = RegistryCounts {
            layers_found: 1,
            bytes_downloaded: 0,
        };
        let local = self.cache.blob_path(&blob.digest);
        if self.options.registry_cache.push_only_to.as_deref() == Some(&reference.registry) {
            // The push mounts it from here: only its presence and size can be checked.
            if !repo.has_blob(&blob)? {
                return Err(RecordUnused::BlobMissing);
            }
            self.known_blobs
                .record(&reference.registry, &blob.digest, &reference.repository);
        } else {
            if !image::is_regular_of_size(&local, blob.size) {
                repo.download(&blob, &self.cache)?;
                counts.bytes_downloaded = blob.size;
            }
            self.cache.store_layer(key, &blob).unwrap_or_else(|error| {
                tracing::debug!(%error, "portable layer key not stored");
            });
        }
        tracing::debug!(cache = %reference, key = key.as_str(), digest = %blob.digest, "layer found in a registry cache");
        self.scans
            .lock()
            .expect("layer scans")
            .entry(blob.diff_id.clone())
            .or_insert_with(|| std::sync::Arc::new(scan));
        self.attest.known_packages(&blob.diff_id, packages);
        self.found_in.lock().expect("found in").insert((
            key.as_str().to_owned(),
            format!("{}/{}", reference.registry, reference.repository),
        ));
        Ok(Some((blob, counts)))
    }

    /// `--cache-to`: records each layer of `target` under its portable key, once per run, with
    /// what layers on top read of it. Layers found there in this run are not written again.
    pub fn publish_layers(&self, target: &BuiltTarget) -> Result<CachePublished, BuildError> {
        let mut published = CachePublished::default();
        let Some(to) = &self.options.registry_cache.to else {
            return Ok(published);
        };
        let failed = |source: CacheToFailure| BuildError::CacheTo {
            target: target.recipe.target.clone(),
            reference: to.to_string(),
            source: Box::new(source),
        };
        let registry = self
            .registries
            .get(&to.registry)
            .map_err(|e| failed(e.into()))?;
        let repo = crate::registry::cache_repo::CacheRepo::new(&registry, &to.repository);
        let here = format!("{}/{}", to.registry, to.repository);
        for (key, blob) in &target.cache_records {
            let pair = (key.as_str().to_owned(), here.clone());
            if self.found_in.lock().expect("found in").contains(&pair)
                || !self
                    .published
                    .lock()
                    .expect("published")
                    .insert(key.as_str().to_owned())
            {
                continue;
            }
            let layer = ImageLayer {
                digest: blob.digest.clone(),
                size: blob.size,
                diff_id: blob.diff_id.clone(),
                compression: Some(blob.compression),
                data: BlobData::File(self.cache.blob_path(&blob.digest)),
            };
            let scan = self.scan(&layer).map_err(|e| failed(e.into()))?;
            let packages = self.layer_packages(&layer).map_err(|e| failed(e.into()))?;
            let facts = serde_json::to_vec(&RecordFactsOf {
                scan: &scan,
                packages: &packages,
            })
            .expect("layer facts serialise");
            published.bytes_uploaded += repo
                .publish(key, blob, layer.data, facts, &self.known_blobs)
                .map_err(|e| failed(e.into()))?;
            published.records += 1;
        }
        Ok(published)
    }
}
