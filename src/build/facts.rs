//! What a layer holds for the layers on top ([`LayerScan`]) and for the SBOM
//! ([`LayerPackages`]), kept in the cache by diff_id so that a rebuild reads small records
//! instead of the layers.
//!
//! A layer's tar decides these facts, so its diff_id is their key; but a base's diff_id is only
//! its config's claim. Facts read from a layer's tar are therefore recorded only when the tar
//! hashes to the diff_id it was read under (checked in the same read); facts of a tree this
//! build wrote are recorded under the diff_id the build computed. A record is outside input:
//! [`Cache::lookup_facts`] refuses one that is too large, malformed or made for another diff_id,
//! and a scan that names paths no scan gives is refused here; the layer is then read again.

use std::io::{self, Read};
use std::sync::Arc;

use super::{Builder, layer_reader};
use crate::digest::{Digest, HashingReader};
use crate::image::ImageLayer;
use crate::layer::LayerTree;
use crate::layer::cache::{Cache, FactsKind};
use crate::sbom::scan::LayerPackages;
use crate::source::SourceError;
use crate::source::pip::scan::LayerScan;

/// Reads `layer`'s tar into facts with `read`; records them under the diff_id when the tar
/// is the content the diff_id names.
fn read_layer<T: serde::Serialize>(
    cache: &Cache,
    kind: FactsKind,
    layer: &ImageLayer,
    read: impl FnOnce(&mut dyn Read) -> io::Result<T>,
) -> Result<T, SourceError> {
    let failed = |source| SourceError::BaseLayers {
        layer: layer.digest.clone(),
        source,
    };
    tracing::debug!(layer = %layer.digest, ?kind, "reading a layer for its facts");
    let mut tar = HashingReader::new(layer_reader(layer).map_err(failed)?);
    let facts = read(&mut tar).map_err(failed)?;
    let found = tar.finish().map_err(failed)?;
    if found == layer.diff_id {
        store(cache, kind, &layer.diff_id, &facts);
    } else {
        tracing::debug!(layer = %layer.digest, claimed = %layer.diff_id, %found, "layer facts not recorded: the tar is not its diff_id");
    }
    Ok(facts)
}

fn store<T: serde::Serialize>(cache: &Cache, kind: FactsKind, diff_id: &Digest, facts: &T) {
    cache
        .store_facts(kind, diff_id, facts)
        .unwrap_or_else(|error| tracing::debug!(%error, "layer facts not recorded"));
}

impl Builder<'_> {
    /// What `layer` holds for the layers on top: known in this run, else recorded in the cache,
    /// else read from its tar (and recorded).
    pub(super) fn scan(&self, layer: &ImageLayer) -> Result<Arc<LayerScan>, SourceError> {
        let known = self
            .scans
            .lock()
            .expect("layer scans")
            .get(&layer.diff_id)
            .cloned();
        if let Some(scan) = known {
            return Ok(scan);
        }
        let recorded = self
            .cache
            .lookup_facts::<LayerScan>(FactsKind::Scan, &layer.diff_id)
            .filter(|scan| {
                let plausible = scan.is_plausible();
                if !plausible {
                    tracing::debug!(layer = %layer.digest, "layer scan record ignored: implausible paths");
                }
                plausible
            });
        let scan = match recorded {
            Some(scan) => scan,
            None => read_layer(&self.cache, FactsKind::Scan, layer, |tar| {
                LayerScan::of_tar(tar)
            })?,
        };
        let scan = Arc::new(scan);
        self.scans
            .lock()
            .expect("layer scans")
            .insert(layer.diff_id.clone(), scan.clone());
        Ok(scan)
    }

    /// What `layer` holds for the SBOM: known in this run, else recorded, else read from its
    /// tar (and recorded).
    pub(super) fn layer_packages(
        &self,
        layer: &ImageLayer,
    ) -> Result<Arc<LayerPackages>, SourceError> {
        if let Some(packages) = self.attest.packages_of(&layer.diff_id) {
            return Ok(packages);
        }
        let packages = match self
            .cache
            .lookup_facts::<LayerPackages>(FactsKind::Packages, &layer.diff_id)
        {
            Some(packages) => packages,
            None => read_layer(&self.cache, FactsKind::Packages, layer, |tar| {
                LayerPackages::of_tar(tar)
            })?,
        };
        Ok(self.attest.known_packages(&layer.diff_id, packages))
    }

    /// Keeps what a tree this build wrote (or found in the cache) holds, under its diff_id: in
    /// the cache where no record is there yet, else left to be read from the record when a
    /// layer on top asks. The SBOM's facts only when the build makes an SBOM.
    pub(super) fn tree_facts(&self, diff_id: &Digest, tree: &LayerTree) {
        let known = self
            .scans
            .lock()
            .expect("layer scans")
            .contains_key(diff_id);
        if !known && !self.cache.has_facts(FactsKind::Scan, diff_id) {
            let scan = LayerScan::of_tree(tree);
            store(&self.cache, FactsKind::Scan, diff_id, &scan);
            self.scans
                .lock()
                .expect("layer scans")
                .insert(diff_id.clone(), Arc::new(scan));
        }
        if self.options.sbom.is_some()
            && self.attest.packages_of(diff_id).is_none()
            && !self.cache.has_facts(FactsKind::Packages, diff_id)
        {
            let packages = LayerPackages::of_tree(tree);
            store(&self.cache, FactsKind::Packages, diff_id, &packages);
            self.attest.known_packages(diff_id, packages);
        }
    }
}
