//! `build`, `lock` and `fetch`: the commands that drive a [`Builder`] over targets, then write,
//! push, pin or gather what it made.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use oci_build::build::{BuildOptions, Builder, BuiltTarget, CachePublished, RegistryCache};
use oci_build::image::{ImageArtifact, ManifestSummary, MediaTypes};
use oci_build::layer::Compression;
use oci_build::layer::cache::Cache;
use oci_build::recipe::Project;
use oci_build::reference::Reference;
use oci_build::registry::push::PushReport;
use oci_build::schedule::build_targets;
use oci_build::transport::Transport;

use super::args::{BuildArgs, Cli, FetchArgs, LockArgs, source_date_epoch};
use super::report::{TerminalReporter, human_bytes, print_json};

#[derive(Serialize)]
struct BuildReport {
    target: String,
    reference: String,
    output: String,
    digest: String,
    media_type: String,
    size: u64,
    layers_built: usize,
    layers_cached: usize,
    /// What `--cache-from` found, what `--cache-to` recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_cache: Option<RegistryCacheReport>,
    manifests: Vec<ManifestSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pushed: Vec<PushReport>,
}

#[derive(Serialize)]
struct RegistryCacheReport {
    layers_found: usize,
    bytes_downloaded: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<CachePublished>,
}

pub(super) fn build(cli: &Cli, args: &BuildArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let targets = chosen_targets(&project, args.all, &args.targets, cli.quiet)?;
    let output = build_output(args, targets.len())?;
    let offline = match (&args.offline, &args.inputs) {
        (false, _) => None,
        (true, None) => Some(oci_build::offline::Offline::cache_only()),
        (true, Some(dir)) => Some(oci_build::offline::Offline::from_inputs(dir)?),
    };
    let cache_root = cli.cache_root()?;
    let cache = Cache::open(&cache_root)?;
    let options = BuildOptions {
        compression: args.compression,
        media_types: if args.docker_media_types {
            MediaTypes::Docker
        } else {
            MediaTypes::Oci
        },
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        require_lock: args.locked || offline.is_some(),
        offline,
        sbom: (!args.no_sbom).then_some(args.sbom_format),
        registry_cache: RegistryCache {
            from: args.cache_from.clone(),
            to: args.cache_to.clone(),
            push_only_to: if args.cache_from.is_empty() {
                None
            } else {
                push_only_registry(&project, &targets, output.as_ref(), args.push)?
            },
        },
        ..common_options(cli)?
    };
    let reporter = TerminalReporter::new(cli.quiet);
    let builder = Builder::new(&project, cache, options, &reporter)?;

    // Everything is built before anything is written, so a failing target leaves the output
    // as it was. Targets build `--jobs` at a time; one that needs a base another is building
    // waits for it, so each shared layer is built once and dependency order holds.
    let built: Vec<BuiltTarget> = build_targets(&builder, &targets, args.jobs.max(1))
        .into_iter()
        .collect::<Result<_, _>>()?;
    if let Some(path) = builder.save_lock()?
        && !cli.quiet
    {
        eprintln!("pinned newly resolved packages in {}", path.display());
    }
    let delivery = Delivery {
        builder: &builder,
        reporter: &reporter,
        output,
        push: args.push,
    };
    let mut reports = Vec::new();
    for target in built {
        // Recorded before the image goes out, so that the cache is warm even where the push
        // fails, and the push mounts from the cache repository.
        let published = builder.publish_layers(&target)?;
        let (written, pushed) = delivery.deliver(&target)?;
        if !cli.quiet && !args.json {
            print_built(&target, &written);
        }
        let mut report = build_report(&target, &written, pushed);
        if !args.cache_from.is_empty() || args.cache_to.is_some() {
            report.registry_cache = Some(RegistryCacheReport {
                layers_found: target.registry_cache.layers_found,
                bytes_downloaded: target.registry_cache.bytes_downloaded,
                published: args.cache_to.is_some().then_some(published),
            });
        }
        reports.push(report);
    }
    if args.json {
        print_json(&reports)?;
    }
    Ok(())
}

/// Where `build` writes: `--output`, else `oci:out` unless it pushes; refused where the
/// destination cannot hold `targets` images or an `--offline` build would have to connect.
fn build_output(args: &BuildArgs, targets: usize) -> anyhow::Result<Option<Transport>> {
    let output = match (&args.output, args.push) {
        (Some(output), _) => Some(output.clone()),
        (None, false) => Some(Transport::Oci {
            dir: PathBuf::from("out"),
            name: None,
        }),
        (None, true) => None,
    };
    if let Some(output) = &output
        && targets > 1
        && matches!(
            output,
            Transport::OciArchive { .. } | Transport::DockerArchive { .. }
        )
    {
        bail!(
            "`{output}` is a single-image archive, but {targets} targets are being built; write them to an oci:DIR layout (which holds many) or build one target per archive"
        );
    }
    if let Some(output) = &output
        && targets > 1
        && output.name().is_some()
    {
        bail!(
            "`{output}` names one image, but {targets} targets are being built; drop the `:REF` part so each image is stored under its own name"
        );
    }
    if args.offline && (args.push || matches!(output, Some(Transport::Docker(_)))) {
        bail!(
            "an --offline build opens no connection, so it cannot push; write to oci:DIR or an archive"
        );
    }
    Ok(output)
}

/// Where each built image goes: the output, and the recipe's reference with `--push`.
struct Delivery<'a> {
    builder: &'a Builder<'a>,
    reporter: &'a TerminalReporter,
    output: Option<Transport>,
    push: bool,
}

impl Delivery<'_> {
    /// Writes and pushes one target's image; returns where it went and what was pushed.
    fn deliver(&self, target: &BuiltTarget) -> anyhow::Result<(Vec<String>, Vec<PushReport>)> {
        let mut written = Vec::new();
        let mut pushed = Vec::new();
        if let Some(output) = &self.output {
            let location = match output {
                Transport::Docker(reference) => {
                    let reference = if output.name().is_some() || reference.digest.is_some() {
                        reference.clone()
                    } else {
                        Reference {
                            tag: Some(target.recipe.reference.tag_or_latest().to_owned()),
                            ..reference.clone()
                        }
                    };
                    pushed.push(self.push_to(target, &reference)?);
                    Transport::Docker(reference)
                }
                local => local
                    .write(&target.artifact, &target.recipe.reference)
                    .with_context(|| format!("writing {} to {local}", target.recipe.target))?,
            };
            written.push(location.to_string());
        }
        if self.push {
            let reference = &target.recipe.reference;
            pushed.push(self.push_to(target, reference)?);
            written.push(format!("docker://{reference}"));
        }
        Ok((written, pushed))
    }

    fn push_to(&self, target: &BuiltTarget, reference: &Reference) -> anyhow::Result<PushReport> {
        push_artifact(self.builder, &target.artifact, reference, self.reporter)
    }
}

/// `target: where digest (n built, m from cache)`.
fn print_built(target: &BuiltTarget, written: &[String]) {
    let layers = |n: usize| {
        if n == 1 {
            "1 layer".to_owned()
        } else {
            format!("{n} layers")
        }
    };
    eprintln!(
        "{}: {} {} ({} built, {} from cache)",
        target.recipe.target,
        written.join(", "),
        target.artifact.root.digest,
        layers(target.layers_built),
        target.layers_cached
    );
}

fn build_report(target: &BuiltTarget, written: &[String], pushed: Vec<PushReport>) -> BuildReport {
    BuildReport {
        target: target.recipe.target.clone(),
        reference: target.recipe.reference.to_string(),
        output: written.join(", "),
        digest: target.artifact.root.digest.to_string(),
        media_type: target.artifact.root.media_type.clone(),
        size: target
            .artifact
            .blobs
            .values()
            .map(|b| b.descriptor.size)
            .sum(),
        layers_built: target.layers_built,
        layers_cached: target.layers_cached,
        registry_cache: None,
        manifests: target.artifact.manifests.clone(),
        pushed,
    }
}

pub(super) fn lock(cli: &Cli, args: &LockArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let targets = chosen_targets(&project, args.all, &args.targets, cli.quiet)?;
    let cache_root = cli.cache_root()?;
    let options = BuildOptions {
        refresh_lock: true,
        resolve_only: true,
        sbom: None,
        ..common_options(cli)?
    };
    let reporter = TerminalReporter::new(cli.quiet);
    let builder = Builder::new(&project, Cache::open(&cache_root)?, options, &reporter)?;
    for target in &targets {
        builder.build(target)?;
    }
    let path = builder.save_lock()?;
    if !cli.quiet {
        match path {
            Some(path) => eprintln!("locked {} in {}", targets.join(", "), path.display()),
            None => eprintln!("the lock file already pins {}", targets.join(", ")),
        }
    }
    Ok(())
}

/// `fetch`: builds the targets from the lock (resolving nothing), which leaves every input in
/// the cache, and copies what the builds used into the directory.
pub(super) fn fetch(cli: &Cli, args: &FetchArgs) -> anyhow::Result<()> {
    let Some(dir) = args.to.strip_prefix("dir:").filter(|d| !d.is_empty()) else {
        bail!(
            "`{}` is not a directory destination; use --to dir:PATH",
            args.to
        );
    };
    let project = Project::open(&cli.project)?;
    let targets = chosen_targets(&project, args.all, &args.targets, cli.quiet)?;
    let cache_root = cli.cache_root()?;
    let cache = Cache::open(&cache_root)?;
    let options = BuildOptions {
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        require_lock: true,
        sbom: None,
        gather_inputs: true,
        ..common_options(cli)?
    };
    let reporter = TerminalReporter::new(cli.quiet);
    let builder = Builder::new(&project, cache.clone(), options, &reporter)?;
    for target in &targets {
        builder.build(target)?;
    }
    let report = oci_build::offline::export(
        &builder.used_inputs(),
        &cache,
        std::path::Path::new(dir),
        &args.to,
    )?;
    if args.json {
        return print_json(&report);
    }
    if !cli.quiet {
        eprintln!(
            "fetched {} inputs ({} base images), {} blobs, {} into {}",
            report.inputs,
            report.images,
            report.blobs,
            human_bytes(report.bytes),
            report.directory
        );
    }
    Ok(())
}

fn push_artifact(
    builder: &Builder<'_>,
    artifact: &ImageArtifact,
    reference: &Reference,
    reporter: &TerminalReporter,
) -> anyhow::Result<PushReport> {
    let registry = builder.registries.get(&reference.registry)?;
    let report = oci_build::registry::push::push(
        &registry,
        artifact,
        reference,
        &builder.known_blobs,
        reporter,
    );
    reporter.finish();
    let report = report.with_context(|| format!("pushing to {reference}"))?;
    Ok(report)
}

/// The targets a command names, or with `--all` every target of the project.
/// What `build`, `lock` and `fetch` share: an online build of the recipes' platforms with
/// every core, gzip and OCI media types, using the lock where it pins a layer. Each command
/// sets what is its own on top.
fn common_options(cli: &Cli) -> anyhow::Result<BuildOptions> {
    Ok(BuildOptions {
        compression: Compression::Gzip,
        media_types: MediaTypes::Oci,
        source_date_epoch: source_date_epoch()?,
        platforms: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        refresh_lock: false,
        resolve_only: false,
        client: cli.client_options(),
        offline: None,
        require_lock: false,
        sbom: Some(oci_build::sbom::SbomFormat::Spdx),
        registry_cache: RegistryCache::default(),
        gather_inputs: false,
    })
}

/// The one registry every image of this run goes to when none is written locally: layers a
/// registry cache there holds are then mounted by the push, never downloaded.
fn push_only_registry(
    project: &Project,
    targets: &[String],
    output: Option<&Transport>,
    push: bool,
) -> anyhow::Result<Option<String>> {
    let mut registries = std::collections::BTreeSet::new();
    match output {
        Some(Transport::Docker(reference)) => {
            registries.insert(reference.registry.clone());
        }
        Some(_) => return Ok(None),
        None => {}
    }
    if push {
        for target in targets {
            registries.insert(project.load(target)?.reference.registry);
        }
    }
    Ok(match registries.len() {
        1 => registries.pop_first(),
        _ => None,
    })
}

/// The targets named, or every target with `--all`. A target whose `[requires]` variable is
/// empty fails when named, and is left out of `--all` with a line saying why.
fn chosen_targets(
    project: &Project,
    all: bool,
    named: &[String],
    quiet: bool,
) -> anyhow::Result<Vec<String>> {
    if !all {
        for name in named {
            project.load(name)?.check_requires()?;
        }
        return Ok(named.to_vec());
    }
    let mut chosen = Vec::new();
    for name in project.target_names() {
        match project.load(&name)?.check_requires() {
            Ok(()) => chosen.push(name),
            Err(unmet) if !quiet => eprintln!("skipping {unmet}"),
            Err(_) => {}
        }
    }
    Ok(chosen)
}
