//! Building several targets at once: `--jobs` targets at a time on one [`Builder`].
//!
//! Inputs: a builder and target names. Output: one result per target, in the order given.
//! The dependency order between targets needs no planning here: [`Builder::build`] builds a
//! base shared by several targets once, and a target that needs a base another is building
//! waits for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::build::{BuildError, Builder, BuiltTarget};
use crate::workers::{self, WorkerPanicked};

/// Builds `targets` on `jobs` threads; results in the order of `targets`. A target whose build
/// panics (a bug) fails with an error sentence like any other, and the others still build.
pub fn build_targets(
    builder: &Builder<'_>,
    targets: &[String],
    jobs: usize,
) -> Vec<Result<BuiltTarget, BuildError>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<_>>> = targets.iter().map(|_| Mutex::new(None)).collect();
    let internal = |target: &str, panicked: WorkerPanicked| BuildError::Internal {
        target: target.to_owned(),
        message: panicked.message,
    };
    // Each worker takes the next unbuilt target until none is left, so a slow target holds up
    // only its own thread.
    let pool = workers::run(jobs.min(targets.len()), || {
        loop {
            let index = next.fetch_add(1, Ordering::SeqCst);
            let Some(target) = targets.get(index) else {
                return;
            };
            let result = workers::catch(|| builder.build(target))
                .unwrap_or_else(|panicked| Err(internal(target, panicked)));
            *results[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(result);
        }
    });
    // Only a panic outside a build leaves a slot empty; its message is the one to show.
    let lost = pool.err().unwrap_or_else(|| WorkerPanicked {
        message: "its worker ended early".to_owned(),
    });
    results
        .into_iter()
        .zip(targets)
        .map(|(slot, target)| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| Err(internal(target, lost.clone())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::BuildOptions;
    use crate::image::MediaTypes;
    use crate::layer::Compression;
    use crate::layer::cache::Cache;
    use crate::progress::Silent;
    use crate::recipe::Project;

    #[test]
    fn results_keep_the_order_of_the_targets_and_one_failure_stops_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(root.join("recipes")).unwrap();
        for name in ["one", "two", "three"] {
            std::fs::write(root.join(format!("{name}.txt")), name).unwrap();
            std::fs::write(
                root.join(format!("recipes/{name}.toml")),
                format!("[[layer]]\nfiles = [{{ src = \"{name}.txt\", dest = \"/{name}\" }}]\n"),
            )
            .unwrap();
        }
        let project = Project::open(&root).unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let options = BuildOptions {
            compression: Compression::Gzip,
            media_types: MediaTypes::Oci,
            source_date_epoch: 0,
            platforms: None,
            threads: 1,
            refresh_lock: false,
            resolve_only: false,
            client: Default::default(),
            offline: None,
            require_lock: false,
            sbom: None,
            registry_cache: Default::default(),
            gather_inputs: false,
        };
        let builder = Builder::new(&project, cache, options, &Silent).unwrap();
        let targets = ["three", "missing", "one", "two"].map(String::from);
        let results = build_targets(&builder, &targets, 2);
        assert_eq!(results.len(), 4);
        for (target, result) in targets.iter().zip(&results) {
            match result {
                Ok(built) => assert_eq!(&built.recipe.target, target),
                Err(error) => {
                    assert_eq!(target, "missing");
                    assert!(error.to_string().contains("no target `missing`"), "{error}");
                }
            }
        }
        assert!(results[1].is_err());
        assert!(build_targets(&builder, &[], 2).is_empty());
    }
}
