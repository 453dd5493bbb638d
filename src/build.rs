//! Drives targets through the pipeline: recipe → base → layers → image.
//!
//! Bases that are recipes or layers/ definitions are built first (once per build, whatever
//! number of targets start from them); a layer whose inputs are unchanged comes from the cache
//! without being read or compressed again. Package layers (Debian, pip, conda) come through
//! [`crate::source`]: pinned by the lock file where it pins them for the layer's inputs, else
//! resolved (unless the build requires a lock) and recorded for [`crate::lock`].

use std::collections::{BTreeMap, HashMap};

use crate::digest::Digest;
use crate::image::layout::{Layout, LayoutError};
use crate::image::spec::{self, ContainerConfig, History, ImageConfig, Index, Manifest, Platform};
use crate::image::{self, BlobData, ImageArtifact, ImageLayer, MediaTypes, PlatformImage};
use crate::layer::below::DirsBelow;
use crate::layer::cache::Cache;
use crate::layer::cache::CacheKey;
use crate::layer::{self, AssembleOptions, Compression, LayerBlob, LayerError, LayerTree};
use crate::progress::{LayerStep, Reporter};
use crate::recipe::{BaseRef, ConfigSpec, Layer, Project, Recipe, RecipeError};
use crate::reference::Reference;
use crate::registry::push::KnownBlobs;
use crate::registry::{ClientOptions, Registries, RegistryError, pull};
use crate::source::locked::Below;
use crate::source::pip::{self, scan::LayerScan};
use crate::source::{self, LockedSource, SourceError, debian};

mod attest;
mod facts;
mod prefetch;
mod remote;

/// PATH of an image whose base sets none, as docker and buildkit use.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub compression: Compression,
    pub media_types: MediaTypes,
    /// SOURCE_DATE_EPOCH: the time of every entry, config and history record. 0 when unset.
    pub source_date_epoch: u64,
    /// Replaces the recipes' `platforms`.
    pub platforms: Option<Vec<Platform>>,
    pub threads: usize,
    /// Resolve `debian` and `pip` layers from the indexes even where the lock file pins them.
    pub refresh_lock: bool,
    /// Only resolve: `pip` layers hold their distributions' names, not their files, so that
    /// locking a family of images downloads no wheels.
    pub resolve_only: bool,
    /// How registries are reached for `docker://` bases.
    pub client: ClientOptions,
    /// `build --offline`: no connection is opened (no apt configuration, index, archive or
    /// registry); locked inputs come from the cache and, when given, a directory that
    /// `oci-build fetch` wrote. None: online.
    pub offline: Option<crate::offline::Offline>,
    /// Resolve nothing: a `debian`, `pip` or `conda` layer the lock does not pin fails
    /// (`build --locked` in CI, so that an outdated lock fails instead of drifting;
    /// `oci-build fetch`; offline builds always).
    pub require_lock: bool,
    /// The SBOM format attached to each platform manifest with a provenance statement; None
    /// (`--no-sbom`) attaches neither.
    pub sbom: Option<crate::sbom::SbomFormat>,
    /// `build --cache-from`, `--cache-to`: a layer cache in registry repositories.
    pub registry_cache: RegistryCache,
    /// `oci-build fetch`: every locked input is gathered, so a package layer is listed (its
    /// inputs downloaded) even where the cache has its blob under its locked key.
    pub gather_inputs: bool,
}

/// Where a build looks for layers in registries before building them, and records them after.
#[derive(Clone, Debug, Default)]
pub struct RegistryCache {
    /// Repositories searched, in order, for a layer before it is built.
    pub from: Vec<Reference>,
    /// The repository every layer of the build is recorded in.
    pub to: Option<Reference>,
    /// The registry every image of the run is pushed to, when none is written locally: a layer
    /// found in a repository there is mounted by the push, never downloaded.
    pub push_only_to: Option<String>,
}

impl RegistryCache {
    fn is_on(&self) -> bool {
        !self.from.is_empty() || self.to.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A panic while building: a bug, but still one sentence and exit code 1, not 101.
    #[error("building {target} stopped with an internal error ({message}); please report it")]
    Internal { target: String, message: String },
    #[error("{target} ({file}), layer {number} ({description})")]
    Layer {
        target: String,
        file: String,
        number: usize,
        description: String,
        #[source]
        source: Box<LayerFailure>,
    },
    #[error("{target}: pulling its base {reference}")]
    Pull {
        target: String,
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("{target}: reading its base")]
    Base {
        target: String,
        #[source]
        source: LayoutError,
    },
    #[error(
        "{target}: its base {base} has no image for {platform} (it has {available}); set `platforms` or --platform to one of those"
    )]
    MissingPlatform {
        target: String,
        base: String,
        platform: String,
        available: String,
    },
    #[error(
        "Docker schema2 media types have no zstd layer type (for this build's layers or its base's); use gzip layers with --docker-media-types"
    )]
    ZstdWithDockerTypes,
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{target}: reading its layers for its SBOM")]
    Attest {
        target: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("{target}: cannot read its recipe `{file}` for its provenance")]
    RecipeFile {
        target: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recording the layers of {target} in the layer cache {reference}")]
    CacheTo {
        target: String,
        reference: String,
        #[source]
        source: Box<CacheToFailure>,
    },
    #[error("{target}: its base")]
    OfflineBase {
        target: String,
        #[source]
        source: Box<crate::offline::OfflineError>,
    },
}

/// Why a layer could not be made: its source could not be listed, or its blob not written.
#[derive(Debug, thiserror::Error)]
pub enum LayerFailure {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Assemble(#[from] LayerError),
    /// The layer is not locked, or an offline build lacks one of its pinned inputs.
    #[error(transparent)]
    Offline(#[from] crate::offline::OfflineError),
}

/// Why a layer could not be recorded in a registry cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheToFailure {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// What layers on top read of it could not be read from the layer.
    #[error(transparent)]
    Scan(#[from] SourceError),
}

/// Images of one definition for a list of platforms, with how many layers were made.
#[derive(Clone, Debug, Default)]
struct BuiltImages {
    images: Vec<PlatformImage>,
    layers_built: usize,
    layers_cached: usize,
    registry: RegistryCounts,
    /// Each layer under its portable key, for `--cache-to`.
    cache_records: Vec<(CacheKey, LayerBlob)>,
}

/// What a target took from registry caches.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RegistryCounts {
    /// Layers found in a `--cache-from` repository instead of being built.
    pub layers_found: usize,
    /// Bytes of those layers downloaded (none where the push mounts them).
    pub bytes_downloaded: u64,
}

/// A definition and the platforms it was built for.
type BuiltKey = (String, Vec<Platform>);

/// A target built for every platform it asked for.
#[derive(Clone, Debug)]
pub struct BuiltTarget {
    pub recipe: Recipe,
    pub artifact: ImageArtifact,
    pub layers_built: usize,
    pub layers_cached: usize,
    /// Layers (of `layers_cached`) found in a registry cache.
    pub registry_cache: RegistryCounts,
    cache_records: Vec<(CacheKey, LayerBlob)>,
}

/// What `--cache-to` recorded for a target.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CachePublished {
    /// Records written (each layer once per run).
    pub records: usize,
    /// Layer bytes uploaded (a layer already in the registry is mounted or skipped).
    pub bytes_uploaded: u64,
}

pub struct Builder<'a> {
    project: &'a Project,
    cache: Cache,
    options: BuildOptions,
    reporter: &'a dyn Reporter,
    /// Registry connections for pulling bases (and, through the caller, pushing).
    pub registries: Registries,
    /// Which repositories hold which blobs, so a push can mount instead of upload.
    pub known_blobs: KnownBlobs,
    archives: std::sync::OnceLock<debian::Archives>,
    lock: std::sync::Mutex<crate::lock::Lockfile>,
    /// The lock file as this run read it: saving writes only what changed since.
    loaded_lock: crate::lock::Lockfile,
    lock_changed: std::sync::atomic::AtomicBool,
    /// Images already built in this run, by definition name and platform list.
    built:
        std::sync::Mutex<HashMap<BuiltKey, std::sync::Arc<std::sync::Mutex<Option<BuiltImages>>>>>,
    /// What each layer holds for Python installs, by diff_id, read once per run.
    scans: std::sync::Mutex<HashMap<Digest, std::sync::Arc<LayerScan>>>,
    /// Where each layer came from (a base's reference, a recipe's layer), by diff_id, for
    /// messages about what a layer on top changes.
    origins: std::sync::Mutex<HashMap<Digest, String>>,
    /// Every locked input this run used (for `oci-build fetch`).
    used: std::sync::Mutex<crate::offline::Used>,
    /// What each layer holds for the SBOM, and which locked inputs made it (see `attest`).
    attest: attest::LayerFacts,
    /// Portable keys found in a registry cache, with the repository (`host/name`) found in.
    found_in: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Portable keys `--cache-to` recorded in this run.
    published: std::sync::Mutex<std::collections::HashSet<String>>,
    /// `--cache-from` repositories that could not be reached or read, not asked again.
    unusable: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Opened when a locked layer is built from its packages (see `prefetch`).
    prefetch_gate: prefetch::Gate,
}

impl<'a> Builder<'a> {
    pub fn new(
        project: &'a Project,
        cache: Cache,
        options: BuildOptions,
        reporter: &'a dyn Reporter,
    ) -> Result<Self, BuildError> {
        if options.compression == Compression::Zstd && options.media_types == MediaTypes::Docker {
            return Err(BuildError::ZstdWithDockerTypes);
        }
        let loaded_lock =
            crate::lock::Lockfile::load(&crate::lock::Lockfile::path(project.root()))?;
        Ok(Builder {
            project,
            cache,
            registries: Registries::new(options.client.clone()),
            known_blobs: KnownBlobs::default(),
            archives: std::sync::OnceLock::new(),
            lock: std::sync::Mutex::new(loaded_lock.clone()),
            loaded_lock,
            lock_changed: std::sync::atomic::AtomicBool::new(false),
            options,
            reporter,
            built: std::sync::Mutex::new(HashMap::new()),
            scans: std::sync::Mutex::new(HashMap::new()),
            origins: Default::default(),
            used: Default::default(),
            attest: Default::default(),
            found_in: Default::default(),
            published: Default::default(),
            unusable: Default::default(),
            prefetch_gate: Default::default(),
        })
    }

    /// Every locked input the builds of this run used: packages, files, base images.
    pub fn used_inputs(&self) -> crate::offline::Used {
        self.used.lock().expect("used inputs").clone()
    }

    fn lock_required(&self) -> bool {
        self.options.require_lock || self.options.offline.is_some()
    }

    /// Whether package layers are looked for in the local cache, and recorded there, under
    /// their locked key (see [`layer::portable`], made [`layer::portable::for_this_executable`]),
    /// so that a rebuild finds a pinned layer before it lists its tree, which reads every
    /// package's listing and stats every file. Not where the tree is wanted for itself: `lock`
    /// (names only) and `fetch` (its inputs).
    fn keys_locked_layers(&self) -> bool {
        !(self.options.resolve_only || self.options.gather_inputs)
    }

    /// What the lock file pins for a layer of kind `S` (None: resolve it, or with --refresh
    /// resolve it again); an error where the layer must be locked and is not.
    fn pinned<S: LockedSource>(
        &self,
        target: &str,
        layer: usize,
        key: &str,
        inputs: &str,
    ) -> Result<Option<Vec<S::Pin>>, crate::offline::OfflineError> {
        let pinned = (!self.options.refresh_lock)
            .then(|| {
                self.lock
                    .lock()
                    .expect("lock file lock")
                    .pins::<S>(target, layer, key, inputs)
                    .map(<[_]>::to_vec)
            })
            .flatten();
        if self.lock_required() && pinned.is_none() {
            return Err(crate::offline::OfflineError::NotLocked);
        }
        // Offline, the pins' inputs go into the cache before the source runs on them.
        if let (Some(offline), Some(pins)) = (&self.options.offline, &pinned) {
            offline.provide_pins::<S>(&self.cache, pins)?;
        }
        Ok(pinned)
    }

    /// Pins a layer (target and number) of kind `S` in the lock, marking the lock changed
    /// unless it already had these pins for these inputs.
    fn record_pins<S: LockedSource>(
        &self,
        (target, layer): (&str, usize),
        key: &str,
        inputs: String,
        packages: Vec<S::Pin>,
    ) {
        let mut lock = self.lock.lock().expect("lock file lock");
        if lock.pins::<S>(target, layer, key, &inputs) != Some(&packages[..]) {
            lock.record::<S>(crate::lock::LayerLock {
                target: target.to_owned(),
                layer,
                key: key.to_owned(),
                inputs,
                packages,
            });
            self.lock_changed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Writes the lock file if this run pinned anything new. Returns its path when written.
    pub fn save_lock(&self) -> Result<Option<std::path::PathBuf>, BuildError> {
        if !self.lock_changed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let path = crate::lock::Lockfile::path(self.project.root());
        self.lock
            .lock()
            .expect("lock file lock")
            .save_changes(&self.loaded_lock, &path)?;
        Ok(Some(path))
    }

    /// Builds `target` (and whatever it starts from) into an artifact ready to be written.
    /// Several targets may build at once on one builder: a base they share is built by the
    /// first that needs it while the others wait for it.
    pub fn build(&self, target: &str) -> Result<BuiltTarget, BuildError> {
        let recipe = self.project.load(target)?;
        let platforms = self.platforms_of(&recipe, &mut Vec::new())?;
        self.with_prefetch(&recipe, &platforms, || {
            self.build_loaded(recipe.clone(), &platforms)
        })
        .unwrap_or_else(|panicked| {
            Err(BuildError::Internal {
                target: target.to_owned(),
                message: panicked.message,
            })
        })
    }

    fn build_loaded(
        &self,
        recipe: Recipe,
        platforms: &[Platform],
    ) -> Result<BuiltTarget, BuildError> {
        let BuiltImages {
            images,
            layers_built,
            layers_cached,
            registry,
            cache_records,
        } = self.build_images(&recipe, platforms, &mut Vec::new())?;
        // Base layers keep their compression: a zstd base has no Docker schema2 media type.
        if self.options.media_types == MediaTypes::Docker
            && images
                .iter()
                .flat_map(|i| &i.layers)
                .any(|l| l.compression == Some(Compression::Zstd))
        {
            return Err(BuildError::ZstdWithDockerTypes);
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(spec::ANNOTATION_CREATED.to_owned(), self.created());
        annotations.insert(
            spec::ANNOTATION_VERSION.to_owned(),
            recipe.reference.tag_or_latest().to_owned(),
        );
        annotations.extend(recipe.annotations.clone());
        let mut artifact =
            image::assemble_artifact(&images, self.options.media_types, &annotations);
        if let Some(format) = self.options.sbom {
            self.attest(&recipe, &images, &mut artifact, format)?;
        }
        Ok(BuiltTarget {
            recipe,
            artifact,
            layers_built,
            layers_cached,
            registry_cache: registry,
            cache_records,
        })
    }

    fn created(&self) -> String {
        crate::time::rfc3339(self.options.source_date_epoch)
    }

    /// The platforms to build: --platform, else the recipe's, else its base's, else the host's.
    fn platforms_of(
        &self,
        recipe: &Recipe,
        chain: &mut Vec<String>,
    ) -> Result<Vec<Platform>, BuildError> {
        if let Some(platforms) = &self.options.platforms {
            return Ok(platforms.clone());
        }
        if let Some(platforms) = &recipe.platforms {
            return Ok(platforms.clone());
        }
        if let BaseRef::Definition(base) = &recipe.from {
            check_cycle(chain, &recipe.target, base)?;
            let base_recipe = self.project.load(base)?;
            chain.push(recipe.target.clone());
            let platforms = self.platforms_of(&base_recipe, chain);
            chain.pop();
            return platforms;
        }
        Ok(vec![Platform::host()])
    }

    fn build_images(
        &self,
        recipe: &Recipe,
        platforms: &[Platform],
        chain: &mut Vec<String>,
    ) -> Result<BuiltImages, BuildError> {
        let memo_key = (recipe.target.clone(), platforms.to_vec());
        let slot = self
            .built
            .lock()
            .expect("built images")
            .entry(memo_key)
            .or_default()
            .clone();
        // Held while this definition builds: another target that needs it waits here.
        let mut slot = slot.lock().expect("built image slot");
        if let Some(done) = slot.as_ref() {
            return Ok(done.clone());
        }
        let mut result = self.base_images(recipe, platforms, chain)?;
        self.add_layers(recipe, &mut result)?;
        for image in &mut result.images {
            apply_config(&mut image.config, &recipe.config);
            image.config.created = Some(self.created());
        }
        *slot = Some(result.clone());
        Ok(result)
    }

    /// The images the recipe starts from, one per platform; a definition's are built first.
    fn base_images(
        &self,
        recipe: &Recipe,
        platforms: &[Platform],
        chain: &mut Vec<String>,
    ) -> Result<BuiltImages, BuildError> {
        let fresh = |images| BuiltImages {
            images,
            ..Default::default()
        };
        let result = match &recipe.from {
            BaseRef::Scratch => fresh(platforms.iter().map(|p| self.scratch(p)).collect()),
            BaseRef::Layout { dir, tag } => fresh(
                platforms
                    .iter()
                    .map(|p| read_layout_base(&recipe.target, dir, tag.as_deref(), p))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            BaseRef::Definition(base) => {
                check_cycle(chain, &recipe.target, base)?;
                let base_recipe = self.project.load(base)?;
                chain.push(recipe.target.clone());
                let result = self.build_images(&base_recipe, platforms, chain);
                chain.pop();
                result?
            }
            BaseRef::Registry(reference) => fresh(
                platforms
                    .iter()
                    .map(|p| self.pull_base(&recipe.target, reference, p))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let origin = match &recipe.from {
            BaseRef::Layout { dir, tag } => Some(match tag {
                Some(tag) => format!("oci:{}:{tag}", dir.display()),
                None => format!("oci:{}", dir.display()),
            }),
            BaseRef::Registry(reference) => Some(reference.to_string()),
            BaseRef::Scratch | BaseRef::Definition(_) => None,
        };
        if let Some(origin) = origin {
            let mut origins = self.origins.lock().expect("layer origins");
            for layer in result.images.iter().flat_map(|i| &i.layers) {
                origins
                    .entry(layer.diff_id.clone())
                    .or_insert_with(|| origin.clone());
            }
        }
        Ok(result)
    }

    /// The recipe's layers on top of each platform's image.
    fn add_layers(&self, recipe: &Recipe, result: &mut BuiltImages) -> Result<(), BuildError> {
        let assemble_options = AssembleOptions {
            mtime: self.options.source_date_epoch,
            compression: self.options.compression,
            threads: self.options.threads,
        };
        // The directories each platform's image holds so far, read when a layer first implies
        // one and then kept up to date layer by layer, so no layer is read twice.
        let mut dirs_below: Vec<(usize, DirsBelow)> =
            vec![(0, DirsBelow::default()); result.images.len()];
        // Layers in order; within a layer, each platform (a Debian layer differs per
        // architecture; a files layer is the same tree, so later platforms hit the cache).
        for (index, spec) in recipe.layers.iter().enumerate() {
            let mut layer = LayerInProgress {
                recipe,
                number: index + 1,
                spec,
                description: source::describe(spec),
                assemble_options: &assemble_options,
                done: Vec::new(),
                built: 0,
                cached: 0,
                registry: RegistryCounts::default(),
            };
            for (image, dirs) in result.images.iter_mut().zip(&mut dirs_below) {
                let started = std::time::Instant::now();
                let made = self.layer_tree_for(&mut layer, image, dirs)?;
                // Where a cold build's time goes, for `OCI_BUILD_LOG=debug`.
                tracing::debug!(
                    target_name = recipe.target,
                    layer = layer.number,
                    ms = started.elapsed().as_millis() as u64,
                    "layer tree ready"
                );
                let (blob, portable) = match made {
                    Made::Found(blob, key) => {
                        self.reporter
                            .layer_finished(&recipe.target, layer.step(), &blob, true);
                        layer.cached += 1;
                        // What it holds comes from the cache's records (or its blob) if asked.
                        self.record_layer_inputs(image, &layer, &blob.diff_id);
                        (blob, Some(key))
                    }
                    Made::Tree {
                        tree,
                        portable,
                        search,
                    } => {
                        let search = portable.as_ref().filter(|_| search);
                        let started = std::time::Instant::now();
                        let blob = self.layer_blob(&mut layer, &tree, search)?;
                        tracing::debug!(
                            target_name = recipe.target,
                            layer = layer.number,
                            ms = started.elapsed().as_millis() as u64,
                            "layer blob ready"
                        );
                        if let Some(key) = &portable {
                            self.cache.store_layer(key, &blob).unwrap_or_else(|error| {
                                tracing::debug!(%error, "portable layer key not stored");
                            });
                        }
                        self.tree_facts(&blob.diff_id, &tree);
                        self.record_layer_inputs(image, &layer, &blob.diff_id);
                        (blob, portable)
                    }
                };
                if let Some(key) = portable
                    && self.options.registry_cache.to.is_some()
                {
                    result.cache_records.push((key, blob.clone()));
                }
                self.add_layer_to_image(image, &layer, blob);
            }
            result.layers_built += layer.built;
            result.layers_cached += layer.cached;
            result.registry.layers_found += layer.registry.layers_found;
            result.registry.bytes_downloaded += layer.registry.bytes_downloaded;
        }
        Ok(())
    }

    /// The layer's tree as it is built on top of `image`, or its blob where a package layer's
    /// portable key finds it (in the cache, or a registry cache) before its tree is listed.
    fn layer_tree_for(
        &self,
        layer: &mut LayerInProgress,
        image: &PlatformImage,
        dirs: &mut (usize, DirsBelow),
    ) -> Result<Made, BuildError> {
        let below = ImageBelow {
            builder: self,
            image,
            target: &layer.recipe.target,
        };
        let mut locked = Locked {
            builder: self,
            below: &below,
            layer: (&layer.recipe.target, layer.number),
            spec: layer.spec,
            options: layer.assemble_options,
            portable: None,
            found: None,
        };
        // Locking reads no copied file: a platform's binary not built yet does not stop it.
        let lockable = (self.options.resolve_only)
            .then(|| layer.spec.without_missing_files())
            .flatten();
        let spec = lockable.as_ref().unwrap_or(layer.spec);
        let mut tree = source::layer_tree(spec, &image.platform, &mut locked, |specs| {
            let base = below.python_base()?;
            let files = source::accounts::merge_files(&base.account_files);
            Ok(source::accounts::layer_tree(specs, &files).map_err(SourceError::from)?)
        })
        .map_err(|failure| layer.error(failure))?;
        let (portable, found) = (locked.portable, locked.found);
        if let (Some(key), Some((blob, counts))) = (&portable, found) {
            layer.registry.layers_found += counts.layers_found;
            layer.registry.bytes_downloaded += counts.bytes_downloaded;
            return Ok(Made::Found(blob, key.clone()));
        }
        // An implied directory keeps what the layers below made it (issue 14).
        if !tree.implied_dirs().is_empty() {
            self.update_dirs_below(image, dirs)
                .map_err(|e| layer.error(e.into()))?;
            tree.inherit_implied(|dir| dirs.1.dir(dir));
        }
        // A package layer's key came from its pins; any other tree is cheap to list and is
        // keyed as listed, then looked for before it is written.
        let is_package = matches!(layer.spec.source, crate::recipe::LayerSource::Locked(_));
        if is_package || !self.options.registry_cache.is_on() {
            return Ok(Made::Tree {
                tree,
                portable,
                search: false,
            });
        }
        let platform = image.platform.to_string();
        let portable = layer::portable::tree_key(&tree, layer.assemble_options, &platform)
            .inspect_err(|error| tracing::debug!(%error, "no portable key: a file is unreadable"))
            .ok();
        Ok(Made::Tree {
            tree,
            portable,
            search: true,
        })
    }

    /// The tree's blob: one an earlier platform made for the same tree, else assembled (or
    /// found in the cache) and counted. Where the cache lacks it, it is first looked for
    /// under `search`, its portable key, in the registry caches.
    fn layer_blob(
        &self,
        layer: &mut LayerInProgress,
        tree: &LayerTree,
        search: Option<&CacheKey>,
    ) -> Result<LayerBlob, BuildError> {
        let key = layer::layer_key(tree, layer.assemble_options);
        if let Some((_, blob)) = layer.done.iter().find(|(k, _)| *k == key) {
            return Ok(blob.clone());
        }
        let target = &layer.recipe.target;
        if let Some(portable) = search
            && self.cache.lookup_layer(&key).is_none()
            && let Some((blob, counts)) = self.find_layer(portable)
        {
            self.reporter
                .layer_finished(target, layer.step(), &blob, true);
            layer.cached += 1;
            layer.registry.layers_found += counts.layers_found;
            layer.registry.bytes_downloaded += counts.bytes_downloaded;
            layer.done.push((key, blob.clone()));
            return Ok(blob);
        }
        self.reporter
            .layer_started(target, layer.step(), tree.content_size());
        let reporter = self.reporter;
        let (blob, was_cached) =
            layer::assemble(tree, layer.assemble_options, &self.cache, &mut |bytes| {
                reporter.layer_bytes(bytes)
            })
            .map_err(|e| layer.error(e.into()))?;
        self.reporter
            .layer_finished(target, layer.step(), &blob, was_cached);
        if was_cached {
            layer.cached += 1;
        } else {
            layer.built += 1;
        }
        layer.done.push((key, blob.clone()));
        Ok(blob)
    }

    /// The blob as the image's next layer, with its history record and the PATH its kind adds.
    fn add_layer_to_image(
        &self,
        image: &mut PlatformImage,
        layer: &LayerInProgress,
        blob: LayerBlob,
    ) {
        self.origins
            .lock()
            .expect("layer origins")
            .entry(blob.diff_id.clone())
            .or_insert_with(|| format!("{} layer {}", layer.recipe.target, layer.number));
        image.config.rootfs.diff_ids.push(blob.diff_id.clone());
        image.config.history.push(History {
            created: Some(self.created()),
            created_by: Some(format!("oci-build: {}", layer.description)),
            comment: layer.spec.comment.clone(),
            ..Default::default()
        });
        image.layers.push(ImageLayer {
            data: BlobData::File(self.cache.blob_path(&blob.digest)),
            digest: blob.digest,
            size: blob.size,
            diff_id: blob.diff_id,
            compression: Some(blob.compression),
        });
        // A layer may put its kind's directories on PATH (a conda environment's bin/).
        if let crate::recipe::LayerSource::Locked(locked) = &layer.spec.source {
            let path_prepend = locked.path_prepend();
            if !path_prepend.is_empty() {
                apply_config(
                    &mut image.config,
                    &ConfigSpec {
                        path_prepend,
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Pulls a registry base for one platform into the cache.
    fn pull_base(
        &self,
        target: &str,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<PlatformImage, BuildError> {
        let pull_err = |source| BuildError::Pull {
            target: target.to_owned(),
            reference: reference.to_string(),
            source: Box::new(source),
        };
        let offline_err = |source| BuildError::OfflineBase {
            target: target.to_owned(),
            source: Box::new(source),
        };
        let mut base_input = None;
        let pulled = match &self.options.offline {
            Some(offline) => offline
                .pull_base(&self.cache, reference, platform)
                .map_err(offline_err)?,
            None => {
                let registry = self.registries.get(&reference.registry).map_err(pull_err)?;
                let pulled =
                    pull::pull(&registry, reference, platform, &self.cache).map_err(pull_err)?;
                let remembered =
                    crate::offline::remember_base(&self.cache, reference, platform, &pulled)
                        .map_err(offline_err)?;
                base_input = Some(remembered.clone());
                self.used
                    .lock()
                    .expect("used inputs")
                    .record_base(remembered);
                pulled
            }
        };
        if pulled.manifest.layers.len() != pulled.config.rootfs.diff_ids.len() {
            return Err(pull_err(RegistryError::Protocol {
                registry: reference.registry.clone(),
                message: format!(
                    "{reference} lists {} layers but its config {} diff_ids",
                    pulled.manifest.layers.len(),
                    pulled.config.rootfs.diff_ids.len()
                ),
            }));
        }
        self.reporter.base_pulled(
            target,
            &reference.to_string(),
            &platform.to_string(),
            pulled.downloaded,
        );
        let mut layers = Vec::new();
        for (layer, diff_id) in pulled
            .manifest
            .layers
            .iter()
            .zip(&pulled.config.rootfs.diff_ids)
        {
            self.known_blobs
                .record(&reference.registry, &layer.digest, &reference.repository);
            if let Some(base) = &base_input {
                self.attest.record_base(diff_id, base);
            }
            layers.push(ImageLayer {
                digest: layer.digest.clone(),
                size: layer.size,
                diff_id: diff_id.clone(),
                compression: image::layer_compression(&layer.media_type),
                data: BlobData::File(self.cache.blob_path(&layer.digest)),
            });
        }
        Ok(PlatformImage {
            platform: platform.clone(),
            config: pulled.config,
            layers,
        })
    }

    /// What the image's layers hold for a `pip` layer on top: its Python, C library and
    /// installed distributions. Each layer is read once per run.
    fn python_base(&self, image: &PlatformImage) -> Result<pip::scan::PythonBase, SourceError> {
        let scans = image
            .layers
            .iter()
            .map(|layer| {
                let origin = self
                    .origins
                    .lock()
                    .expect("layer origins")
                    .get(&layer.diff_id)
                    .cloned();
                Ok((
                    self.scan(layer)?,
                    origin.unwrap_or_else(|| "the base".to_owned()),
                ))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        let env = image
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        Ok(pip::scan::PythonBase::merge(&scans, &env))
    }

    /// Brings `dirs` (the directories of the image's first `dirs.0` layers) up to all of the
    /// image's layers, reading only the layers it has not seen.
    fn update_dirs_below(
        &self,
        image: &PlatformImage,
        dirs: &mut (usize, DirsBelow),
    ) -> Result<(), SourceError> {
        for layer in &image.layers[dirs.0..] {
            dirs.1.apply(&self.scan(layer)?.dirs);
            dirs.0 += 1;
        }
        Ok(())
    }

    /// `/var/lib/dpkg/status` as the image's layers leave it: the topmost layer that has one
    /// wins. Each layer's comes from its scan (see [`Builder::scan`]), which refuses a layer
    /// with a member that leaves the root, or whose status is not a regular file (the error
    /// names the layer and the member).
    fn dpkg_status(&self, image: &PlatformImage) -> Result<String, SourceError> {
        for layer in image.layers.iter().rev() {
            if let Some(text) = &self.scan(layer)?.dpkg_status {
                return Ok(text.clone());
            }
        }
        Ok(String::new())
    }

    /// The Debian archives, read from the host's apt configuration on first use.
    fn archives(&self) -> Result<&debian::Archives, source::SourceError> {
        if let Some(archives) = self.archives.get() {
            return Ok(archives);
        }
        let archives = match self.options.offline {
            Some(_) => debian::Archives::offline()?,
            None => debian::Archives::new(std::path::Path::new("/"))?,
        };
        Ok(self.archives.get_or_init(|| archives))
    }

    fn scratch(&self, platform: &Platform) -> PlatformImage {
        PlatformImage {
            platform: platform.clone(),
            config: ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                config: Some(ContainerConfig::default()),
                ..Default::default()
            },
            layers: Vec::new(),
        }
    }
}

/// A layer as [`Builder::layer_tree_for`] leaves it.
enum Made {
    /// Found under its portable key before its tree was listed.
    Found(LayerBlob, CacheKey),
    /// Listed; `search` says whether to look for it under `portable` before writing it.
    Tree {
        tree: LayerTree,
        portable: Option<CacheKey>,
        search: bool,
    },
}

/// One recipe layer being built for each platform of the recipe.
struct LayerInProgress<'r> {
    recipe: &'r Recipe,
    /// 1-based, as messages count layers.
    number: usize,
    spec: &'r Layer,
    description: String,
    assemble_options: &'r AssembleOptions,
    /// The blobs made so far, by tree: a platform whose tree is the same reuses one.
    done: Vec<(CacheKey, LayerBlob)>,
    built: usize,
    cached: usize,
    registry: RegistryCounts,
}

impl LayerInProgress<'_> {
    fn step(&self) -> LayerStep<'_> {
        LayerStep {
            number: self.number,
            of: self.recipe.layers.len(),
            description: &self.description,
        }
    }

    fn error(&self, failure: LayerFailure) -> BuildError {
        BuildError::Layer {
            target: self.recipe.target.clone(),
            file: self.recipe.file.display().to_string(),
            number: self.number,
            description: self.description.clone(),
            source: Box::new(failure),
        }
    }
}

/// The image a layer goes on, as locked sources ask about it.
struct ImageBelow<'b, 'a> {
    builder: &'b Builder<'a>,
    image: &'b PlatformImage,
    /// The recipe whose layer this is, for its notes.
    target: &'b str,
}

impl source::locked::Below for ImageBelow<'_, '_> {
    fn platform(&self) -> &Platform {
        &self.image.platform
    }
    fn dpkg_status(&self) -> Result<String, SourceError> {
        self.builder.dpkg_status(self.image)
    }
    fn python_base(&self) -> Result<pip::scan::PythonBase, SourceError> {
        self.builder.python_base(self.image)
    }
    fn archives(&self) -> Result<&debian::Archives, SourceError> {
        self.builder.archives()
    }
    fn cache(&self) -> &Cache {
        &self.builder.cache
    }
    fn source_date_epoch(&self) -> u64 {
        self.builder.options.source_date_epoch
    }
    fn install(&self) -> bool {
        !self.builder.options.resolve_only
    }
    fn offline(&self) -> bool {
        self.builder.options.offline.is_some()
    }
    fn lock_required(&self) -> bool {
        self.builder.lock_required()
    }
    fn note(&self, text: &str) {
        self.builder.reporter.note(self.target, text);
    }
}

/// Builds the layers of locked kinds, the same way for each: prepare, read the pins (and,
/// offline, provide their inputs), build the tree, then record what it used and pinned.
struct Locked<'b, 'a> {
    builder: &'b Builder<'a>,
    below: &'b ImageBelow<'b, 'a>,
    /// Target and layer number.
    layer: (&'b str, usize),
    spec: &'b Layer,
    options: &'b AssembleOptions,
    /// Set by `build`: the layer's portable key, from the pins as the lock holds them after
    /// this build (None where [`Builder::keys_locked_layers`] says no).
    portable: Option<CacheKey>,
    /// Set by `build` where the portable key found the layer (its tree is then empty).
    found: Option<(LayerBlob, RegistryCounts)>,
}

impl source::LockedLayer for Locked<'_, '_> {
    type Error = LayerFailure;

    fn build<S: LockedSource>(&mut self, spec: &S::Spec) -> Result<LayerTree, LayerFailure> {
        let builder = self.builder;
        let (target, number) = self.layer;
        let prepared = S::prepare(spec, self.below)?;
        let pinned = builder.pinned::<S>(target, number, &prepared.key, &prepared.inputs)?;
        let remote = builder.options.registry_cache.is_on();
        let keyed = remote || builder.keys_locked_layers();
        let portable_key = |pins: &[S::Pin]| -> Option<CacheKey> {
            let pins = serde_json::to_string(pins).expect("pins serialise");
            let locked = layer::portable::LockedLayer {
                kind: S::SECTION,
                lock_key: &prepared.key,
                inputs: &prepared.inputs,
                pins: &pins,
                remove: &self.spec.remove,
                replace: &self.spec.replace,
            };
            let image = self.below.image;
            let key = layer::portable::locked_key(
                &locked,
                &image.config.rootfs.diff_ids,
                self.options,
                &image.platform.to_string(),
            );
            match remote {
                true => Some(key),
                false => layer::portable::for_this_executable(&key),
            }
        };
        // A pinned layer is looked for before anything of it is downloaded or listed.
        if keyed
            && let Some(pins) = &pinned
            && S::pins_current(&prepared.data, pins)?
            && (builder.lock_required() || S::pins_complete(&prepared.data, pins))
            && let Some(key) = portable_key(pins)
            && let Some(found) = builder.find_layer(&key)
        {
            S::notes(&prepared.data, pins, self.below);
            // The provenance names what the layer was made from, found or built.
            builder.attest.record_inputs(
                (target, number, self.below.platform()),
                S::used(pins, &builder.cache),
            );
            self.portable = Some(key);
            self.found = Some(found);
            return Ok(LayerTree::default());
        }
        builder.prefetch_gate.open();
        let (tree, pins) = S::build_tree(spec, &prepared.data, pinned.as_deref(), self.below)?;
        if keyed {
            // Keyed by the pins the lock holds once this build saves it, which the next build
            // (on any machine, from that lock) looks for.
            let kept = match &pinned {
                Some(pinned) if builder.lock_required() => pinned,
                _ => &pins,
            };
            self.portable = portable_key(kept);
        }
        builder
            .used
            .lock()
            .expect("used inputs")
            .record::<S>(&builder.cache, &pins);
        builder.attest.record_inputs(
            (target, number, self.below.platform()),
            S::used(&pins, &builder.cache),
        );
        // A build that must keep to the lock (`--locked`, `--offline`, `fetch`) leaves the file
        // as it is, even where it could add to a pin (the hash of a wheel built from an sdist).
        if !builder.lock_required() {
            builder.record_pins::<S>(self.layer, &prepared.key, prepared.inputs, pins);
        }
        Ok(tree)
    }
}

/// The uncompressed tar stream of `layer`.
fn layer_reader(layer: &ImageLayer) -> std::io::Result<Box<dyn std::io::Read>> {
    let reader: Box<dyn std::io::Read> = match &layer.data {
        BlobData::File(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
        BlobData::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
    };
    crate::layer::compress::decoder(layer.compression, reader)
}

fn check_cycle(chain: &[String], target: &str, base: &str) -> Result<(), BuildError> {
    if base == target || chain.iter().any(|t| t == base) {
        let mut path: Vec<&str> = chain.iter().map(String::as_str).collect();
        path.push(target);
        path.push(base);
        return Err(BuildError::Recipe(RecipeError::Cycle(path.join(" -> "))));
    }
    Ok(())
}

/// Reads the image for `platform` from an OCI layout, verifying every blob it uses.
fn read_layout_base(
    target: &str,
    dir: &std::path::Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<PlatformImage, BuildError> {
    let base_err = |source| BuildError::Base {
        target: target.to_owned(),
        source,
    };
    tracing::debug!(dir = %dir.display(), ?tag, %platform, "reading base from an OCI layout");
    let layout = Layout::open(dir).map_err(base_err)?;
    let mut descriptor = layout.resolve(tag).map_err(base_err)?;
    if spec::is_index(&descriptor.media_type) {
        let (index, _): (Index, _) = layout.read_document(&descriptor).map_err(base_err)?;
        descriptor =
            index
                .manifest_for(platform)
                .cloned()
                .ok_or_else(|| BuildError::MissingPlatform {
                    target: target.to_owned(),
                    base: format!("oci:{}", dir.display()),
                    platform: platform.to_string(),
                    available: index.platform_list(),
                })?;
    }
    let (manifest, _): (Manifest, _) = layout.read_document(&descriptor).map_err(base_err)?;
    let (config, _): (ImageConfig, _) = layout.read_document(&manifest.config).map_err(base_err)?;
    let config_platform = config.platform();
    if !platform.matches(&config_platform) {
        return Err(BuildError::MissingPlatform {
            target: target.to_owned(),
            base: format!("oci:{}", dir.display()),
            platform: platform.to_string(),
            available: config_platform.to_string(),
        });
    }
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(BuildError::MissingPlatform {
            target: target.to_owned(),
            base: format!("oci:{}", dir.display()),
            platform: platform.to_string(),
            available: format!(
                "none usable: its manifest lists {} layers but its config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        layout.verify_blob(layer).map_err(base_err)?;
        layers.push(ImageLayer {
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: diff_id.clone(),
            compression: image::layer_compression(&layer.media_type),
            data: BlobData::File(layout.blob_path(&layer.digest)),
        });
    }
    Ok(PlatformImage {
        platform: platform.clone(),
        config,
        layers,
    })
}

/// Applies a recipe's `[config]` on top of the base's, as Dockerfile instructions would:
/// scalars replace, maps and sets merge, and a new entrypoint clears an inherited cmd.
pub fn apply_config(image: &mut ImageConfig, spec: &ConfigSpec) {
    let config = image.config.get_or_insert_with(ContainerConfig::default);
    let mut env: Vec<(String, String)> = config
        .env
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv, String::new()),
        })
        .collect();
    fn set(env: &mut Vec<(String, String)>, key: &str, value: String) {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => env.push((key.to_owned(), value)),
        }
    }
    for (key, value) in &spec.env {
        set(&mut env, key, value.clone());
    }
    let current_path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    if current_path.is_none() || !spec.path_prepend.is_empty() || !spec.path_append.is_empty() {
        let mut parts: Vec<String> = spec.path_prepend.clone();
        let base = current_path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
        for dir in base.split(':').filter(|d| !d.is_empty()) {
            if !parts.iter().any(|p| p == dir) && !spec.path_append.iter().any(|p| p == dir) {
                parts.push(dir.to_owned());
            }
        }
        parts.extend(spec.path_append.iter().cloned());
        set(&mut env, "PATH", parts.join(":"));
    }
    config.env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());

    if let Some(entrypoint) = &spec.entrypoint {
        config.entrypoint = Some(entrypoint.clone());
        if spec.cmd.is_none() {
            config.cmd = None;
        }
    }
    if let Some(cmd) = &spec.cmd {
        config.cmd = Some(cmd.clone());
    }
    if let Some(workdir) = &spec.workdir {
        config.working_dir = Some(workdir.clone());
    }
    if let Some(user) = &spec.user {
        config.user = Some(user.clone());
    }
    if let Some(signal) = &spec.stop_signal {
        config.stop_signal = Some(signal.clone());
    }
    if !spec.labels.is_empty() {
        config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(spec.labels.clone());
    }
    for port in &spec.ports {
        let port = if port.contains('/') {
            port.clone()
        } else {
            format!("{port}/tcp")
        };
        config
            .exposed_ports
            .get_or_insert_with(BTreeMap::new)
            .insert(port, serde_json::json!({}));
    }
    for volume in &spec.volumes {
        config
            .volumes
            .get_or_insert_with(BTreeMap::new)
            .insert(volume.clone(), serde_json::json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_prepended_once_and_entrypoint_clears_cmd() {
        let mut image = ImageConfig {
            config: Some(ContainerConfig {
                env: Some(vec!["PATH=/usr/bin:/bin".into(), "LANG=C.UTF-8".into()]),
                cmd: Some(vec!["bash".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = ConfigSpec {
            path_prepend: vec!["/opt/venv/bin".into(), "/usr/bin".into()],
            entrypoint: Some(vec!["tini".into()]),
            env: BTreeMap::from([("LANG".into(), "en_US.UTF-8".into())]),
            ..Default::default()
        };
        apply_config(&mut image, &spec);
        let config = image.config.unwrap();
        assert_eq!(
            config.env.unwrap(),
            ["PATH=/opt/venv/bin:/usr/bin:/bin", "LANG=en_US.UTF-8"]
        );
        assert_eq!(config.cmd, None);
        assert_eq!(config.entrypoint.unwrap(), ["tini"]);
    }

    #[test]
    fn scratch_images_get_the_default_path() {
        let mut image = ImageConfig::default();
        apply_config(&mut image, &ConfigSpec::default());
        assert_eq!(
            image.config.unwrap().env.unwrap(),
            [format!("PATH={DEFAULT_PATH}")]
        );
    }
}
