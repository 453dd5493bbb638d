//! `push`, `mirror` and `verify`: copying finished images to registries and bundles, and
//! checking a bundle's blobs against their digests.

use anyhow::{Context, bail};

use oci_build::image::layout::Layout;
use oci_build::layer::cache::Cache;
use oci_build::recipe::Project;
use oci_build::registry::Registries;
use oci_build::registry::push::KnownBlobs;
use oci_build::transport::Transport;

use super::args::{Cli, MirrorArgs, PushArgs, VerifyArgs};
use super::report::{TerminalReporter, human_bytes, print_json};

pub(super) fn push(cli: &Cli, args: &PushArgs) -> anyhow::Result<()> {
    let Transport::Docker(destination) = &args.destination else {
        bail!(
            "`{}` is not a registry destination; use docker://REGISTRY/REPOSITORY[:TAG]",
            args.destination
        );
    };
    let mut destination = destination.clone();
    if destination.tag.is_none() && destination.digest.is_none() {
        destination.tag = Some("latest".to_owned());
    }
    let unpacked;
    let artifact = match &args.source {
        Transport::Oci { dir, name } => Layout::open(dir)?.read_artifact(name.as_deref())?,
        Transport::OciArchive { file, name } => {
            unpacked = tempfile::tempdir()?;
            let reader = std::fs::File::open(file)
                .with_context(|| format!("cannot open `{}`", file.display()))?;
            tar::Archive::new(std::io::BufReader::new(reader))
                .unpack(unpacked.path())
                .with_context(|| format!("cannot unpack `{}`", file.display()))?;
            Layout::open(unpacked.path())?.read_artifact(name.as_deref())?
        }
        other => bail!("push reads oci: and oci-archive: sources, not `{other}`"),
    };
    let registries = Registries::new(cli.client_options());
    let registry = registries.get(&destination.registry)?;
    let reporter = TerminalReporter::new(cli.quiet);
    let report = oci_build::registry::push::push(
        &registry,
        &artifact,
        &destination,
        &KnownBlobs::default(),
        &reporter,
    );
    reporter.finish();
    let report = report.with_context(|| format!("pushing to {destination}"))?;
    if args.json {
        return print_json(&report);
    }
    if !cli.quiet {
        eprintln!(
            "{}: {} ({} blobs uploaded, {}; {} already there; {} mounted)",
            report.reference,
            report.digest,
            report.blobs_uploaded,
            human_bytes(report.bytes_uploaded),
            report.blobs_present,
            report.blobs_mounted
        );
    }
    Ok(())
}

pub(super) fn mirror(cli: &Cli, args: &MirrorArgs) -> anyhow::Result<()> {
    use oci_build::registry::mirror::{MirrorDest, MirrorOptions, MirrorSource, TagSelection};
    let mut sources = Vec::new();
    if args.all {
        let project = Project::open(&cli.project)?;
        for name in project.target_names() {
            sources.push(MirrorSource::Image(project.load(&name)?.reference));
        }
    }
    for arg in &args.sources {
        sources.extend(MirrorSource::parse_arg(arg)?);
    }
    let destination: MirrorDest = args.to.parse()?;
    let options = MirrorOptions {
        tags: TagSelection::new(args.tags_regex.as_deref(), args.latest)?,
        dry_run: args.dry_run,
    };
    let cache_root = cli.cache_root()?;
    let cache = Cache::open(&cache_root)?;
    let registries = Registries::new(cli.client_options());
    let reporter = TerminalReporter::new(cli.quiet || args.json);
    let result = oci_build::registry::mirror::mirror(
        &sources,
        &destination,
        &options,
        &registries,
        &cache,
        &reporter,
    );
    reporter.finish();
    let images = result.with_context(|| format!("mirroring to {destination}"))?;
    if args.json {
        return print_json(&images);
    }
    if !cli.quiet {
        let blobs: usize = images.iter().map(|i| i.blobs).sum();
        let bytes: u64 = images.iter().map(|i| i.bytes).sum();
        let verb = if args.dry_run { "would copy" } else { "copied" };
        eprintln!(
            "{verb} {} images, {blobs} blobs, {} to {destination}",
            images.len(),
            human_bytes(bytes)
        );
    }
    Ok(())
}

pub(super) fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    use oci_build::image::bundle::Bundle;
    let unpacked;
    let report = if let Some(file) = args.bundle.strip_prefix("oci-archive:") {
        unpacked = tempfile::tempdir()?;
        let reader = std::fs::File::open(file).with_context(|| format!("cannot open `{file}`"))?;
        tar::Archive::new(std::io::BufReader::new(reader))
            .unpack(unpacked.path())
            .with_context(|| format!("cannot unpack `{file}`"))?;
        oci_build::offline::verify(&Bundle::open(unpacked.path(), &args.bundle)?)?
    } else if let Some(dir) = args
        .bundle
        .strip_prefix("dir:")
        .or_else(|| args.bundle.strip_prefix("oci:"))
    {
        oci_build::offline::verify(&Bundle::open(std::path::Path::new(dir), &args.bundle)?)?
    } else {
        bail!(
            "`{}` is not a bundle; use dir:PATH or oci-archive:FILE",
            args.bundle
        );
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "{}: {} images, {} blobs, {} verified",
        report.bundle,
        report.images,
        report.blobs,
        human_bytes(report.bytes)
    );
    Ok(())
}
