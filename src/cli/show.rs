//! `inspect`, `targets` and `resolve`: commands that read an image or the project and print
//! what they find, on stdout.

use std::io::Write;

use anyhow::Context;

use serde::Serialize;

use oci_build::inspect;
use oci_build::layer::cache::Cache;
use oci_build::recipe::{BaseRef, Project};
use oci_build::transport::Transport;

use super::args::{Cli, InspectArgs, ResolveArgs, SbomArgs, TargetsArgs, source_date_epoch};
use super::report::{TerminalReporter, human_bytes, print_json};

pub(super) fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let report = inspect::inspect(&args.source)?;
    if args.json {
        return print_json(&report);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.source)?;
    writeln!(out, "digest:     {}", report.digest)?;
    writeln!(out, "media type: {}", report.media_type)?;
    for (key, value) in &report.annotations {
        writeln!(out, "annotation: {key}={value}")?;
    }
    for image in &report.images {
        writeln!(out)?;
        writeln!(
            out,
            "platform {}  manifest {}",
            image.platform, image.manifest.digest
        )?;
        writeln!(out, "  config     {}", image.config_digest)?;
        if let Some(created) = &image.created {
            writeln!(out, "  created    {created}")?;
        }
        let c = &image.config;
        let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| format!("{v:?}"));
        for (label, value) in [
            ("user", c.user.clone()),
            ("workdir", c.working_dir.clone()),
            ("entrypoint", list(&c.entrypoint)),
            ("cmd", list(&c.cmd)),
            ("stop signal", c.stop_signal.clone()),
        ] {
            if let Some(value) = value {
                writeln!(out, "  {label:<10} {value}")?;
            }
        }
        for env in c.env.iter().flatten() {
            writeln!(out, "  env        {env}")?;
        }
        for port in c.exposed_ports.iter().flat_map(|p| p.keys()) {
            writeln!(out, "  port       {port}")?;
        }
        for volume in c.volumes.iter().flat_map(|v| v.keys()) {
            writeln!(out, "  volume     {volume}")?;
        }
        for (key, value) in c.labels.iter().flatten() {
            writeln!(out, "  label      {key}={value}")?;
        }
        writeln!(
            out,
            "  layers ({} in all, {}):",
            image.layers.len(),
            human_bytes(image.size)
        )?;
        let mut history = image.history.iter().filter(|h| !h.empty_layer);
        for (i, layer) in image.layers.iter().enumerate() {
            let created_by = history
                .next()
                .and_then(|h| h.created_by.clone())
                .unwrap_or_default();
            writeln!(
                out,
                "  {:>3}  {}  {:>10}  {}",
                i + 1,
                layer.digest,
                human_bytes(layer.size),
                created_by
            )?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct TargetInfo {
    target: String,
    image: String,
    from: String,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

pub(super) fn resolve(cli: &Cli, args: &ResolveArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let mut family = Vec::new();
    for name in project.target_names() {
        family.push(project.load(&name)?.reference);
    }
    // A short name means one of the project's images in the namespace those images are named
    // in now (from the variables), or in one the project lists as its own.
    let mut namespaces: Vec<String> = family
        .iter()
        .filter_map(|r| r.repository.rsplit_once('/').map(|(ns, _)| ns.to_owned()))
        .collect();
    namespaces.extend(project.resolve_namespaces().iter().cloned());
    let mut out = std::io::stdout().lock();
    for image in &args.images {
        writeln!(
            out,
            "{}",
            oci_build::recipe::resolve_image(image, &family, &namespaces)?
        )?;
    }
    Ok(())
}

pub(super) fn targets(cli: &Cli, args: &TargetsArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let mut infos = Vec::new();
    for name in project.target_names() {
        let recipe = project.load(&name)?;
        infos.push(TargetInfo {
            image: recipe.reference.familiar(),
            from: match &recipe.from {
                BaseRef::Scratch => "scratch".to_owned(),
                BaseRef::Layout { dir, tag } => format!(
                    "oci:{}{}",
                    dir.display(),
                    tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default()
                ),
                BaseRef::Definition(name) => name.clone(),
                BaseRef::Registry(reference) => format!("docker://{reference}"),
            },
            file: recipe.file.display().to_string(),
            description: recipe.description.clone(),
            target: name,
        });
    }
    if args.json {
        return print_json(&infos);
    }
    let width = infos.iter().map(|i| i.target.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for info in &infos {
        writeln!(out, "{:<width$}  {}", info.target, info.image)?;
    }
    Ok(())
}

/// `sbom`: the image's SBOM on stdout or into `--output`; where it came from on stderr.
pub(super) fn sbom(cli: &Cli, args: &SbomArgs) -> anyhow::Result<()> {
    use oci_build::sbom::read::{Origin, sbom_of};
    // A set SOURCE_DATE_EPOCH dates an SBOM made now; else the image's own creation time.
    let created = match std::env::var_os("SOURCE_DATE_EPOCH") {
        Some(_) => Some(oci_build::time::rfc3339(source_date_epoch()?)),
        None => None,
    };
    // An image in a registry is copied with its referrers into a temporary bundle, as
    // `mirror` would, and read there: its attached SBOM, else its layers.
    let fetched;
    let source = match &args.source {
        Transport::Docker(reference) => {
            use oci_build::registry::mirror::{
                MirrorDest, MirrorOptions, MirrorSource, TagSelection, bundle_name, mirror,
            };
            fetched = tempfile::tempdir()?;
            let bundle = fetched.path().join("bundle");
            let cache = Cache::open(&cli.cache_root()?)?;
            let registries = oci_build::registry::Registries::new(cli.client_options());
            let reporter = TerminalReporter::new(cli.quiet);
            let copied = mirror(
                &[MirrorSource::Image(reference.clone())],
                &MirrorDest::Dir(bundle.clone()),
                &MirrorOptions {
                    tags: TagSelection::new(None, None)?,
                    dry_run: false,
                },
                &registries,
                &cache,
                &reporter,
            );
            reporter.finish();
            copied.with_context(|| format!("reading {}", args.source))?;
            Transport::Oci {
                dir: bundle,
                name: Some(bundle_name(reference)),
            }
        }
        other => other.clone(),
    };
    let (bytes, origin) = sbom_of(&source, args.platform.as_ref(), args.format, created)?;
    match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    if !cli.quiet {
        match origin {
            Origin::Referrer(digest) => {
                eprintln!("{}: the SBOM attached as {digest}", args.source)
            }
            Origin::Layers => eprintln!("{}: no SBOM attached; made from its layers", args.source),
        }
    }
    Ok(())
}
