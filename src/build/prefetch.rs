//! A build's prefetch: the packages the lock pins for each layer of a target and of the
//! definitions it starts from, downloaded (checked against their pins) and extracted into the
//! cache by a few workers while the layers before them are built and compressed. A cold build
//! so overlaps its downloads and extraction with compression instead of running them as
//! stages; the layers still take their packages from the cache in order, and a layer's own
//! worker that reaches a package the prefetch is working on waits for it
//! ([`crate::workers::exclusive`]) instead of fetching it again.
//!
//! Nothing is fetched until a locked layer is built from its packages: a rebuild that finds
//! every layer in the cache under its locked key asks no archive or index, and downloads
//! nothing for packages deleted from the cache since.
//!
//! Only what the lock pins for the layer and platform is fetched, each file checked against
//! its pin before anything of it is extracted, as the build itself does. A pin whose inputs no
//! longer match the recipe is fetched all the same (the inputs are known only once the layers
//! below are built); the build then resolves the layer again, and the prefetched files stay in
//! the cache unused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use super::Builder;
use crate::image::spec::Platform;
use crate::recipe::{BaseRef, LayerSource, Recipe};
use crate::source::LockedSource;
use crate::source::kinds::SpecVisitor;
use crate::source::locked::{PrefetchContext, PrefetchJob};
use crate::workers::{self, WorkerPanicked};

/// Packages fetched at once: downloads wait on the network, extraction on the CPU, and the
/// layers being built and compressed meanwhile use the CPU too.
const PREFETCH_WORKERS: usize = 3;

/// Held shut until the first locked layer of the run is built from its packages; the
/// prefetch workers wait behind it.
#[derive(Default)]
pub(super) struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub(super) fn open(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !*open {
            *open = true;
            self.changed.notify_all();
        }
    }

    /// Wakes the waiters so that they see `done`, which the caller has set.
    fn finish(&self) {
        let _open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }

    /// Waits until the gate opens (true) or `done` is set (false).
    fn wait(&self, done: &AtomicBool) -> bool {
        let open = self
            .changed
            .wait_while(
                self.open.lock().unwrap_or_else(PoisonError::into_inner),
                |open| !*open && !done.load(Ordering::SeqCst),
            )
            .unwrap_or_else(PoisonError::into_inner);
        *open
    }
}

impl Builder<'_> {
    /// Runs `build` while workers prefetch what `recipe`'s layers and its bases' need for
    /// `platforms`, in the order the build takes them. The workers stop taking jobs once
    /// `build` returns; one running then finishes first.
    pub(super) fn with_prefetch<R>(
        &self,
        recipe: &Recipe,
        platforms: &[Platform],
        build: impl FnOnce() -> R,
    ) -> Result<R, WorkerPanicked> {
        if !self.prefetch_wanted() {
            return Ok(build());
        }
        let queue = OnceLock::new();
        let done = AtomicBool::new(false);
        let work = || {
            if !self.prefetch_gate.wait(&done) {
                return;
            }
            let queue = queue.get_or_init(|| {
                let jobs = self.prefetch_jobs(recipe, platforms);
                tracing::debug!(jobs = jobs.len(), "prefetching");
                Mutex::new(jobs.into_iter())
            });
            while !done.load(Ordering::SeqCst) {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some(job) = next else {
                    return;
                };
                // A bug in a job is the build's to meet and report, in order.
                if let Err(panicked) = workers::catch(job) {
                    tracing::debug!(message = panicked.message, "a prefetch job panicked");
                }
            }
        };
        workers::run_beside(PREFETCH_WORKERS, work, || {
            let result = build();
            done.store(true, Ordering::SeqCst);
            self.prefetch_gate.finish();
            result
        })
    }

    /// No prefetch where nothing would be downloaded (offline, resolving only) or where the
    /// lock is not to be used as it is (`--refresh`), and none with a registry layer cache,
    /// which may find whole layers whose packages are then never needed.
    fn prefetch_wanted(&self) -> bool {
        let options = &self.options;
        !(options.offline.is_some()
            || options.resolve_only
            || options.refresh_lock
            || options.registry_cache.is_on())
    }

    /// The jobs, in build order: the bases' layers first, each layer's packages in the lock's
    /// order.
    fn prefetch_jobs(&self, recipe: &Recipe, platforms: &[Platform]) -> Vec<PrefetchJob<'_>> {
        let base_of = |recipe: &Recipe| match &recipe.from {
            BaseRef::Definition(base) => Some(base.clone()),
            _ => None,
        };
        let mut bases: Vec<Recipe> = Vec::new();
        let mut next = base_of(recipe);
        while let Some(base) = next.take() {
            // A cycle or a missing base is the build's to report; the prefetch stops there.
            if base == recipe.target || bases.iter().any(|r| r.target == base) {
                break;
            }
            if let Ok(loaded) = self.project.load(&base) {
                next = base_of(&loaded);
                bases.push(loaded);
            }
        }
        let chain: Vec<&Recipe> = bases.iter().rev().chain([recipe]).collect();
        let has_debian = chain
            .iter()
            .flat_map(|r| &r.layers)
            .any(|l| matches!(&l.source, LayerSource::Locked(spec) if spec.key() == "debian"));
        let context = PrefetchContext {
            cache: &self.cache,
            archives: has_debian.then(|| self.archives().ok()).flatten(),
        };
        let mut jobs = Vec::new();
        for recipe in chain {
            for (index, layer) in recipe.layers.iter().enumerate() {
                let LayerSource::Locked(spec) = &layer.source else {
                    continue;
                };
                for platform in platforms {
                    jobs.extend(spec.visit(&mut LayerJobs {
                        builder: self,
                        context: &context,
                        target: &recipe.target,
                        layer: index + 1,
                        platform,
                    }));
                }
            }
        }
        jobs
    }
}

/// One layer's jobs, as its kind makes them from the lock's pins.
struct LayerJobs<'b, 'j, 's> {
    builder: &'b Builder<'s>,
    context: &'b PrefetchContext<'j>,
    target: &'b str,
    layer: usize,
    platform: &'b Platform,
}

impl<'j> SpecVisitor for LayerJobs<'_, 'j, '_> {
    type Output = Vec<PrefetchJob<'j>>;

    fn visit<K: LockedSource>(&mut self, spec: &K::Spec) -> Vec<PrefetchJob<'j>> {
        let Some(key) = K::lock_key(self.platform) else {
            return Vec::new();
        };
        let pins = self
            .builder
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pins_for_key::<K>(self.target, self.layer, &key)
            .map(<[_]>::to_vec);
        match pins {
            Some(pins) => K::prefetch(spec, pins, self.context),
            None => Vec::new(),
        }
    }
}
