//! The SBOM and provenance of a built image, attached to each platform manifest as referrers
//! (see [`crate::sbom`]).
//!
//! Package facts come from the trees the build wrote (no layer is read back) and, for a base's
//! layers, from their tars, read once and then recorded in the cache (see `facts`). The locked inputs a layer was made from are
//! recorded by layer, so an image's are those of its layers, whichever target built them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::{BuildError, Builder, LayerInProgress};
use crate::digest::Digest;
use crate::image::spec::{self, Platform};
use crate::image::{ImageArtifact, PlatformImage};
use crate::recipe::Recipe;
use crate::sbom::provenance::{self, BuildFacts};
use crate::sbom::scan::{self, LayerPackages};
use crate::sbom::{self as sboms, ImageSubject, LayerSubject, SbomFormat};
use crate::source::locked::Input;

/// A layer being built: target, layer number, platform.
type PendingKey = (String, usize, Platform);

/// What the run knows of each layer for its SBOM and provenance, by diff_id.
#[derive(Default)]
pub(super) struct LayerFacts {
    packages: Mutex<HashMap<Digest, Arc<LayerPackages>>>,
    inputs: Mutex<HashMap<Digest, BTreeSet<Input>>>,
    /// Inputs of a layer whose tree is built and whose blob is not made yet.
    pending: Mutex<HashMap<PendingKey, Vec<Input>>>,
}

impl LayerFacts {
    /// The locked inputs a layer's source used, before its blob (and diff_id) exists.
    pub(super) fn record_inputs(
        &self,
        (target, number, platform): (&str, usize, &Platform),
        inputs: Vec<Input>,
    ) {
        self.pending
            .lock()
            .expect("pending inputs")
            .insert((target.to_owned(), number, platform.clone()), inputs);
    }

    /// A layer's packages known without reading it (from a registry cache record, a record
    /// in the cache or this run's tree); the ones known first are kept.
    pub(super) fn known_packages(
        &self,
        diff_id: &Digest,
        packages: LayerPackages,
    ) -> Arc<LayerPackages> {
        self.packages
            .lock()
            .expect("layer packages")
            .entry(diff_id.clone())
            .or_insert_with(|| Arc::new(packages))
            .clone()
    }

    /// A layer's packages, if this run knows them.
    pub(super) fn packages_of(&self, diff_id: &Digest) -> Option<Arc<LayerPackages>> {
        self.packages
            .lock()
            .expect("layer packages")
            .get(diff_id)
            .cloned()
    }

    /// A base image's layer: made from the base.
    pub(super) fn record_base(&self, diff_id: &Digest, base: &Input) {
        self.inputs
            .lock()
            .expect("layer inputs")
            .entry(diff_id.clone())
            .or_default()
            .insert(base.clone());
    }
}

impl Builder<'_> {
    /// Keeps what a layer just built was made from, under its diff_id (what it holds is kept
    /// by [`Builder::tree_facts`]).
    pub(super) fn record_layer_inputs(
        &self,
        image: &PlatformImage,
        layer: &LayerInProgress,
        diff_id: &Digest,
    ) {
        let facts = &self.attest;
        let key = (
            layer.recipe.target.clone(),
            layer.number,
            image.platform.clone(),
        );
        if let Some(inputs) = facts.pending.lock().expect("pending inputs").remove(&key) {
            facts
                .inputs
                .lock()
                .expect("layer inputs")
                .entry(diff_id.clone())
                .or_default()
                .extend(inputs);
        }
    }

    /// Attaches an SBOM in `format` and a provenance statement to each platform manifest of
    /// `artifact` (made from `images`, in the same order).
    pub(super) fn attest(
        &self,
        recipe: &Recipe,
        images: &[PlatformImage],
        artifact: &mut ImageArtifact,
        format: SbomFormat,
    ) -> Result<(), BuildError> {
        let created = self.created();
        let facts = self.build_facts(recipe)?;
        let manifests: Vec<_> = artifact
            .manifests
            .iter()
            .map(|m| m.manifest.clone())
            .collect();
        for (image, manifest) in images.iter().zip(manifests) {
            let layers = image
                .layers
                .iter()
                .map(|layer| self.layer_packages(layer))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| BuildError::Attest {
                    target: recipe.target.clone(),
                    source: Box::new(source),
                })?;
            let mut packages = scan::contents(&layers);
            let inputs: Vec<Input> = {
                let known = self.attest.inputs.lock().expect("layer inputs");
                let mut all = BTreeSet::new();
                for layer in &image.layers {
                    all.extend(known.get(&layer.diff_id).into_iter().flatten().cloned());
                }
                all.into_iter().collect()
            };
            sboms::add_inputs(&mut packages, &inputs);
            let subject = ImageSubject {
                name: recipe.reference.to_string(),
                platform: image.platform.clone(),
                manifest: manifest.digest.clone(),
                layers: LayerSubject::of_image(
                    image.layers.iter().map(|l| &l.digest),
                    &image.config.history,
                ),
            };
            let annotations = std::collections::BTreeMap::from([(
                spec::ANNOTATION_CREATED.to_owned(),
                created.clone(),
            )]);
            let sbom = sboms::sbom_document(format, &subject, &packages, &created);
            artifact.attach(&manifest, format.media_type(), sbom, annotations.clone());
            let facts = BuildFacts {
                inputs,
                ..facts.clone()
            };
            let statement = provenance::statement(&subject, &facts);
            artifact.attach(&manifest, sboms::IN_TOTO_MEDIA_TYPE, statement, annotations);
        }
        Ok(())
    }

    /// The recipe file and lock file with their digests, for provenance.
    fn build_facts(&self, recipe: &Recipe) -> Result<BuildFacts, BuildError> {
        let root = self.project.root();
        let file = |path: &std::path::Path| -> Option<(String, Digest)> {
            let bytes = std::fs::read(path).ok()?;
            let shown = path.strip_prefix(root).unwrap_or(path);
            Some((shown.display().to_string(), Digest::of_bytes(&bytes)))
        };
        // Recipes name their file relative to the project.
        let path = root.join(&recipe.file);
        let bytes = std::fs::read(&path).map_err(|source| BuildError::RecipeFile {
            target: recipe.target.clone(),
            file: recipe.file.display().to_string(),
            source,
        })?;
        let shown = path.strip_prefix(root).unwrap_or(&path);
        let recipe_file = (shown.display().to_string(), Digest::of_bytes(&bytes));
        Ok(BuildFacts {
            target: recipe.target.clone(),
            recipe: recipe_file,
            lock: file(&crate::lock::Lockfile::path(root)),
            source_date_epoch: self.options.source_date_epoch,
            inputs: Vec::new(),
        })
    }
}
