//! `debian` as a locked kind: pinned per Debian architecture (`amd64`).

use std::collections::BTreeMap;

use crate::image::spec::Platform;
use crate::layer::LayerTree;
use crate::layer::cache::{Cache, CacheKeyBuilder};
use crate::name::RelPath;
use crate::source::SourceError;
use crate::source::locked::{
    Below, Input, InputKind, LockedSource, Needed, PrefetchContext, PrefetchJob, Prepared,
    SpecContext, SpecProblem, bad_filename, package_input,
};

use super::{DebianSpec, LockedDeb};

/// `debian = { … }` layers.
pub struct Debian;

/// A `.deb` the lock pins.
pub(crate) const DEB: InputKind = InputKind::new("deb", 0);

impl LockedSource for Debian {
    const SECTION: &'static str = "debian";
    const KEY_FIELD: &'static str = "arch";
    const INPUT_KINDS: &'static [InputKind] = &[DEB];
    type Pin = LockedDeb;
    type Spec = DebianSpec;
    /// The architecture, the dpkg status and the symlinks below.
    type Prepared = (String, String, BTreeMap<String, String>);

    fn check_spec(spec: &DebianSpec, recipe: &SpecContext) -> Result<DebianSpec, SpecProblem> {
        if spec.packages.is_empty() && !spec.required {
            return Err(SpecProblem::new(
                "debian",
                format!(
                    "layer {}: `debian` names no packages (and not `required = true`)",
                    recipe.layer
                ),
            ));
        }
        for request in &spec.packages {
            super::version::parse_relations(request).map_err(|e| {
                SpecProblem::new(request, format!("package request `{request}`: {e}"))
            })?;
        }
        let mut spec = spec.clone();
        for source in &mut spec.sources {
            let keyring = recipe.root.join(&source.keyring);
            if !keyring.is_file() {
                return Err(SpecProblem::new(
                    source.keyring.display().to_string(),
                    format!(
                        "keyring `{}` does not exist (paths are relative to the project directory)",
                        source.keyring.display()
                    ),
                ));
            }
            source.keyring = keyring;
        }
        Ok(spec)
    }

    fn describe(spec: &DebianSpec) -> String {
        let mut what = spec.packages.join(" ");
        if spec.required {
            what = format!("required set {what}").trim_end().to_owned();
        }
        match &spec.release {
            Some(release) => format!("debian {release}: {what}"),
            None => format!("debian {what}"),
        }
    }

    fn lock_key(platform: &Platform) -> Option<String> {
        Some(super::debian_arch(
            &platform.architecture,
            platform.variant.as_deref(),
        ))
    }

    fn prefetch<'s>(
        spec: &DebianSpec,
        pins: Vec<LockedDeb>,
        context: &PrefetchContext<'s>,
    ) -> Vec<PrefetchJob<'s>> {
        let Some(archives) = context.archives else {
            return Vec::new();
        };
        let bases = match super::archive_bases(spec, archives) {
            Ok(bases) => std::sync::Arc::new(bases),
            Err(error) => {
                tracing::debug!(%error, "debian layer not prefetched");
                return Vec::new();
            }
        };
        let cache = context.cache;
        pins.into_iter()
            // What an earlier build extracted costs nothing to skip here.
            .filter(|deb| !super::install::is_extracted(cache, deb))
            .map(|deb| {
                let bases = bases.clone();
                Box::new(move || {
                    if let Err(error) = super::fetch_unpacked(archives, cache, &deb, &bases) {
                        tracing::debug!(%error, package = deb.name, "not prefetched");
                    }
                }) as PrefetchJob<'s>
            })
            .collect()
    }

    fn prepare(
        spec: &DebianSpec,
        below: &dyn Below,
    ) -> Result<Prepared<Self::Prepared>, SourceError> {
        let platform = below.platform();
        let arch = super::debian_arch(&platform.architecture, platform.variant.as_deref());
        let base_status = below.dpkg_status()?;
        let base_links = below.python_base()?.symlinks;
        // What resolving depends on: the spec, the architecture and the packages below.
        let mut key = CacheKeyBuilder::new("debian-lock-v1");
        key.field(
            serde_json::to_string(spec)
                .expect("specs serialise")
                .as_bytes(),
        )
        .field(arch.as_bytes())
        .field(base_status.as_bytes());
        Ok(Prepared {
            key: arch.clone(),
            inputs: key.finish().as_str().to_owned(),
            data: (arch, base_status, base_links),
        })
    }

    fn build_tree(
        spec: &DebianSpec,
        (arch, base_status, base_links): &Self::Prepared,
        pins: Option<&[LockedDeb]>,
        below: &dyn Below,
    ) -> Result<(LayerTree, Vec<LockedDeb>), SourceError> {
        let archives = below.archives()?;
        let cache = below.cache();
        Ok(super::layer_tree(
            spec,
            arch,
            base_status,
            base_links,
            archives,
            cache,
            pins,
        )?)
    }

    fn needs(pins: &[LockedDeb], cache: &Cache) -> Vec<Needed> {
        Self::used(pins, cache)
            .into_iter()
            .map(Needed::known)
            .collect()
    }

    fn used(pins: &[LockedDeb], _cache: &Cache) -> Vec<Input> {
        pins.iter()
            .map(|deb| {
                package_input(
                    DEB,
                    &deb.name,
                    &deb.version,
                    &deb.filename,
                    &deb.sha256,
                    deb.size,
                )
            })
            .collect()
    }

    fn describe_input(input: &Input) -> String {
        format!(
            "Debian package {} {} ({}, sha256 {}…)",
            input.name,
            input.version,
            input.filename,
            &input.sha256.hex()[..12]
        )
    }

    fn check_input(input: &Input) -> Result<(), String> {
        // Archive paths (`pool/main/…`): relative, several components.
        RelPath::new(&input.filename).map_err(|e| bad_filename(input, e))?;
        if !input.filename.ends_with(".deb") {
            return Err(bad_filename(input, "is not a .deb"));
        }
        Ok(())
    }
}
