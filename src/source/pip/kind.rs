//! `pip` as a locked kind: pinned per image platform (`linux/amd64`), since wheels differ per
//! platform.

use std::fs;
use std::io::BufReader;
use std::path::Path;

use crate::digest::digest_reader;
use crate::image::spec::Platform;
use crate::layer::LayerTree;
use crate::layer::cache::{Bucket, Cache};
use crate::name::FileName;
use crate::source::SourceError;
use crate::source::locked::{
    Below, Input, InputKind, LockedSource, Needed, PrefetchContext, PrefetchJob,
    Prepared as LockPrepared, SpecContext, SpecProblem, bad_filename, cached_size,
    describe_package_file, package_input,
};

use super::requirements::{FormatControl, Requirements};
use super::{LockedWheel, PipSpec, Prepared};

/// `pip = { … }` layers.
pub struct Pip;

/// A wheel or sdist the lock pins.
pub(crate) const PIP: InputKind = InputKind::new("pip", 1);
/// The wheel built online from a pinned sdist, `built_from` the sdist's SHA256: an offline
/// site cannot install build requirements.
pub(crate) const PIP_BUILT: InputKind = InputKind::new("pip-built", 2);

impl LockedSource for Pip {
    const SECTION: &'static str = "pip";
    const KEY_FIELD: &'static str = "platform";
    const INPUT_KINDS: &'static [InputKind] = &[PIP, PIP_BUILT];
    type Pin = LockedWheel;
    type Spec = PipSpec;
    type Prepared = Prepared;

    fn check_spec(pip: &PipSpec, recipe: &SpecContext) -> Result<PipSpec, SpecProblem> {
        if pip.packages.is_empty() && pip.requirements.is_empty() {
            return Err(SpecProblem::new(
                "pip",
                format!(
                    "layer {}: `pip` names no `packages` and no `requirements` files",
                    recipe.layer
                ),
            ));
        }
        for line in &pip.packages {
            Requirements {
                root: recipe.root.to_owned(),
                ..Requirements::default()
            }
            .add_line(line, "pip packages")
            .map_err(|e| SpecProblem::new(line, e.to_string()))?;
        }
        for (name, source) in &pip.sources {
            if !super::is_distribution_name(name) {
                return Err(SpecProblem::new(
                    name,
                    format!(
                        "`sources` key `{}` is not a distribution name",
                        name.escape_debug()
                    ),
                ));
            }
            super::source_tree(source, recipe.root)
                .map_err(|problem| SpecProblem::new(problem.found, problem.message))?;
        }
        for value in &pip.only_binary {
            FormatControl::default()
                .add_only_binary(value, "the pip layer's `only_binary`")
                .map_err(|e| SpecProblem::new(value, e.to_string()))?;
        }
        let mut pip = pip.clone();
        for path in pip
            .requirements
            .iter_mut()
            .chain(pip.constraints.iter_mut())
            .chain(pip.wheelhouse.iter_mut())
        {
            let absolute = recipe.root.join(&*path);
            if !absolute.exists() {
                return Err(SpecProblem::new(
                    path.display().to_string(),
                    format!(
                        "`{}` does not exist (paths are relative to the project directory)",
                        path.display()
                    ),
                ));
            }
            *path = absolute;
        }
        pip.project_dir = recipe.root.to_owned();
        Ok(pip)
    }

    fn describe(spec: &PipSpec) -> String {
        let mut what: Vec<String> = spec.packages.clone();
        what.extend(
            spec.requirements
                .iter()
                .map(|p| format!("-r {}", p.file_name().unwrap_or_default().to_string_lossy())),
        );
        match &spec.venv {
            Some(venv) => format!("pip {} (venv {venv})", what.join(" ")),
            None => format!("pip {}", what.join(" ")),
        }
    }

    fn lock_key(platform: &Platform) -> Option<String> {
        Some(platform.to_string())
    }

    fn prefetch<'s>(
        spec: &PipSpec,
        pins: Vec<LockedWheel>,
        context: &PrefetchContext<'s>,
    ) -> Vec<PrefetchJob<'s>> {
        super::prefetch_jobs(spec, pins, context.cache)
    }

    fn prepare(spec: &PipSpec, below: &dyn Below) -> Result<LockPrepared<Prepared>, SourceError> {
        let base = below.python_base()?;
        let platform = below.platform();
        let prepared = super::prepare(
            spec,
            &base,
            &platform.architecture,
            platform.variant.as_deref(),
        )?;
        Ok(LockPrepared {
            key: platform.to_string(),
            inputs: prepared.inputs.clone(),
            data: prepared,
        })
    }

    fn build_tree(
        spec: &PipSpec,
        prepared: &Prepared,
        pins: Option<&[LockedWheel]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<LockedWheel>), SourceError> {
        let (tree, pins) = super::layer_tree(
            spec,
            prepared,
            below.cache(),
            pins,
            below.install(),
            below.offline(),
            below.lock_required(),
        )?;
        Self::notes(prepared, &pins, below);
        Ok((tree, pins))
    }

    /// Each distribution of the layers below that a pin replaces, with where it came from.
    fn notes(prepared: &Prepared, pins: &[LockedWheel], below: &dyn Below) {
        for pin in pins {
            let (Some(old), Some(installed)) = (
                &pin.replaces,
                prepared.below.get(&super::wheel::normalize_name(&pin.name)),
            ) else {
                continue;
            };
            below.note(&format!(
                "{} {old} \u{2192} {} (in {})",
                pin.name, pin.version, installed.origin
            ));
        }
    }

    /// A direct reference's pin holds while its tree (a project directory), file or address
    /// hash is the one pinned.
    fn pins_current(prepared: &Prepared, pins: &[LockedWheel]) -> Result<bool, SourceError> {
        use super::direct::Location;
        for direct in &prepared.requirements.direct {
            let Some(pin) = pins
                .iter()
                .find(|p| p.direct.as_deref() == Some(&direct.shown))
            else {
                return Ok(false);
            };
            let current = match &direct.location {
                Location::Tree(tree) => {
                    let hash = tree.content_hash().map_err(super::PipError::from)?;
                    pin.tree_sha256.as_ref() == Some(&hash)
                }
                Location::File { path, .. } => {
                    let file = fs::File::open(path).map_err(|source| SourceError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let (hash, _) = digest_reader(BufReader::new(file)).map_err(|source| {
                        SourceError::Read {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    hash == pin.sha256
                }
                Location::Url { sha256, .. } => *sha256 == pin.sha256,
            };
            if !current {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Each wheel built from an sdist is pinned with its hash and build requirements, and each
    /// pin says what it replaces below as a build would now.
    fn pins_complete(prepared: &Prepared, pins: &[LockedWheel]) -> bool {
        pins.iter().all(|pin| {
            let built_pinned = pin.filename.ends_with(".whl")
                || (pin.built_sha256.is_some() && !pin.build_requires.is_empty());
            built_pinned && pin.replaces == super::replaced_version(prepared, pin)
        })
    }

    fn needs(pins: &[LockedWheel], cache: &Cache) -> Vec<Needed> {
        pins.iter()
            .map(|pin| Needed {
                input: pip_input(pin, 0),
                // The lock has no sizes for pip files.
                size_unknown: true,
                derived: (!pin.filename.ends_with(".whl")
                    && super::sdist::built_wheel(cache, &pin.sha256).is_none())
                .then_some(PIP_BUILT),
            })
            .collect()
    }

    /// The pinned files, and for each sdist the wheel built from it.
    fn used(pins: &[LockedWheel], cache: &Cache) -> Vec<Input> {
        let mut inputs = Vec::new();
        for pin in pins {
            let size = cached_size(cache, &pin.sha256);
            inputs.push(pip_input(pin, size));
            if pin.filename.ends_with(".whl") {
                continue;
            }
            let Some(wheel) = super::sdist::built_wheel(cache, &pin.sha256) else {
                continue;
            };
            // A pin that records the built wheel's hash holds only that wheel (a build of
            // another is refused), so the wheel is not hashed again on every build.
            let known = pin
                .built_sha256
                .clone()
                .map(|digest| fs::metadata(&wheel).map(|meta| (digest, meta.len())));
            let hashed = || fs::File::open(&wheel).and_then(|f| digest_reader(BufReader::new(f)));
            let Ok((digest, size)) = known.unwrap_or_else(hashed) else {
                continue;
            };
            inputs.push(Input {
                kind: PIP_BUILT,
                filename: wheel
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: digest,
                size,
                built_from: Some(pin.sha256.clone()),
                ..pip_input(pin, size)
            });
        }
        inputs
    }

    fn describe_input(input: &Input) -> String {
        if input.kind == PIP_BUILT {
            return format!(
                "the wheel built from the sdist of {} {} (sdist sha256 {}…)",
                input.name,
                input.version,
                input.built_from.as_ref().map_or("", |d| &d.hex()[..12])
            );
        }
        describe_package_file("pip file", input)
    }

    fn check_input(input: &Input) -> Result<(), String> {
        FileName::new(&input.filename).map_err(|e| bad_filename(input, e))?;
        if input.kind == PIP_BUILT {
            if super::wheel::parse_wheel_filename(&input.filename).is_err() {
                return Err(bad_filename(input, "is not a wheel file name"));
            }
            if input.built_from.is_none() {
                return Err("it does not say which sdist it was built from".to_owned());
            }
        }
        Ok(())
    }

    /// The built wheel goes where the pip source looks for the wheel of its sdist.
    fn place_derived(cache: &Cache, built: &Input, blob: &Path) -> Result<(), SourceError> {
        let Some(sdist) = &built.built_from else {
            unreachable!("`check_input` refuses a pip-built input without `built_from`")
        };
        let parent = cache.bucket(Bucket::PipBuilt);
        let write = |path: &Path| {
            let path = path.to_owned();
            move |source| SourceError::Write { path, source }
        };
        fs::create_dir_all(&parent).map_err(write(&parent))?;
        let temp = tempfile::tempdir_in(&parent).map_err(write(&parent))?;
        // `check_input` made sure this is a wheel file name: one component.
        let wheel = temp.path().join(&built.filename);
        fs::copy(blob, &wheel).map_err(write(&wheel))?;
        crate::fsutil::publish_dir(temp, &parent.join(sdist.hex()));
        Ok(())
    }
}

fn pip_input(pin: &LockedWheel, size: u64) -> Input {
    package_input(
        PIP,
        &pin.name,
        &pin.version,
        &pin.filename,
        &pin.sha256,
        size,
    )
}
