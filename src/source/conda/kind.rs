//! `conda` as a locked kind: pinned per conda subdir (`linux-64`).

use crate::layer::cache::{Cache, CacheKeyBuilder};
use crate::layer::{ImagePath, LayerTree};
use crate::name::FileName;
use crate::source::SourceError;
use crate::source::locked::{
    Below, Input, InputKind, LockedSource, Needed, Prepared, SpecContext, SpecProblem,
    bad_filename, cached_size, describe_package_file, package_input,
};

use super::{CondaSpec, LockedConda};

/// `conda = { … }` layers.
pub struct Conda;

/// A conda package the lock pins.
pub(crate) const CONDA: InputKind = InputKind::new("conda", 4);

impl LockedSource for Conda {
    const SECTION: &'static str = "conda";
    const KEY_FIELD: &'static str = "subdir";
    const INPUT_KINDS: &'static [InputKind] = &[CONDA];
    type Pin = LockedConda;
    type Spec = CondaSpec;
    /// The conda subdir.
    type Prepared = String;

    fn check_spec(conda: &CondaSpec, recipe: &SpecContext) -> Result<CondaSpec, SpecProblem> {
        if conda.specs.iter().all(|s| s.trim().is_empty()) {
            return Err(SpecProblem::new(
                "conda",
                format!("layer {}: `conda` names no specs", recipe.layer),
            ));
        }
        if !conda.prefix.starts_with('/') || ImagePath::new(&conda.prefix).is_err() {
            return Err(SpecProblem::new(
                &conda.prefix,
                format!(
                    "layer {}: conda prefix `{}` must be an absolute path without `..`",
                    recipe.layer, conda.prefix
                ),
            ));
        }
        Ok(conda.clone())
    }

    fn describe(spec: &CondaSpec) -> String {
        format!("conda {}: {}", spec.prefix, spec.specs.join(" "))
    }

    /// A conda environment is used through its bin/, as `conda activate` would.
    fn path_prepend(spec: &CondaSpec) -> Vec<String> {
        vec![format!("{}/bin", spec.prefix.trim_end_matches('/'))]
    }

    fn prepare(spec: &CondaSpec, below: &dyn Below) -> Result<Prepared<String>, SourceError> {
        let platform = below.platform();
        let subdir = super::conda_subdir(&platform.os, &platform.architecture)?;
        // What the solve depends on: the spec, the subdir and the assumed virtual packages.
        let mut key = CacheKeyBuilder::new("conda-lock-v1");
        key.field(
            serde_json::to_string(spec)
                .expect("specs serialise")
                .as_bytes(),
        )
        .field(subdir.as_bytes())
        .field(super::solve_inputs(&subdir).as_bytes());
        Ok(Prepared {
            key: subdir.clone(),
            inputs: key.finish().as_str().to_owned(),
            data: subdir,
        })
    }

    fn build_tree(
        spec: &CondaSpec,
        subdir: &String,
        pins: Option<&[LockedConda]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<LockedConda>), SourceError> {
        let (cache, epoch) = (below.cache(), below.source_date_epoch());
        Ok(super::layer_tree(spec, subdir, cache, pins, epoch)?)
    }

    fn needs(pins: &[LockedConda], _cache: &Cache) -> Vec<Needed> {
        pins.iter()
            .map(|package| Needed {
                input: conda_input(package, package.size.unwrap_or(0)),
                size_unknown: package.size.is_none(),
                derived: None,
            })
            .collect()
    }

    fn used(pins: &[LockedConda], cache: &Cache) -> Vec<Input> {
        pins.iter()
            .map(|package| {
                let size = package
                    .size
                    .unwrap_or_else(|| cached_size(cache, &package.sha256));
                conda_input(package, size)
            })
            .collect()
    }

    fn describe_input(input: &Input) -> String {
        describe_package_file("conda package", input)
    }

    fn check_input(input: &Input) -> Result<(), String> {
        FileName::new(&input.filename).map_err(|e| bad_filename(input, e))?;
        if !(input.filename.ends_with(".conda") || input.filename.ends_with(".tar.bz2")) {
            return Err(bad_filename(input, "is not a conda package file name"));
        }
        Ok(())
    }
}

fn conda_input(package: &LockedConda, size: u64) -> Input {
    package_input(
        CONDA,
        &package.name,
        &package.version,
        &package.filename,
        &package.sha256,
        size,
    )
}
