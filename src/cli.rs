//! The command line: argument parsing, the terminal reporter and what each command prints.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use oci_build::build::{BuildOptions, Builder, BuiltTarget};
use oci_build::image::ImageArtifact;
use oci_build::image::layout::Layout;
use oci_build::image::spec::Platform;
use oci_build::image::{ManifestSummary, MediaTypes};
use oci_build::inspect;
use oci_build::layer::cache::Cache;
use oci_build::layer::{Compression, LayerBlob};
use oci_build::progress::{LayerStep, Reporter};
use oci_build::recipe::{BaseRef, Project};
use oci_build::reference::Reference;
use oci_build::registry::credentials::Credential;
use oci_build::registry::credentials::Stored;
use oci_build::registry::push::{KnownBlobs, PushReport, PushReporter};
use oci_build::registry::{ClientOptions, Registries};
use oci_build::transport::Transport;

/// Build OCI images from declarative recipes: no daemon, no root, no RUN.
///
/// A project directory holds recipes/*.toml (each one a target) and layers/*.toml (shared
/// bases). oci-build writes every layer itself, reproducibly, and stores the result as an OCI
/// layout, an OCI archive or a docker-archive.
#[derive(Debug, Parser)]
#[command(name = "oci-build", version, propagate_version = true)]
pub struct Cli {
    /// Project directory holding recipes/ and layers/.
    #[arg(
        short = 'C',
        long = "directory",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub project: PathBuf,

    /// Layer cache directory [default: $XDG_CACHE_HOME/oci-build or ~/.cache/oci-build].
    #[arg(long, global = true, env = "OCI_BUILD_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Print nothing but errors (and --json output).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// A registry to reach over plain HTTP (loopback addresses always are). Repeatable.
    #[arg(
        long = "insecure-registry",
        global = true,
        value_name = "HOST[:PORT]",
        env = "OCI_BUILD_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// A CA certificate (PEM) to trust for registries, besides the system's. Repeatable;
    /// /etc/docker/certs.d/HOST/*.crt and /etc/containers/certs.d/HOST/*.crt are read too.
    #[arg(long = "ca-cert", global = true, value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,

    /// Upload blobs larger than this in chunks of this many bytes (for proxies that limit
    /// request sizes).
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 64 << 20)]
    pub upload_chunk_size: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets and write them to an output.
    Build(BuildArgs),
    /// Show an image's platforms, config, layers with sizes, and history.
    Inspect(InspectArgs),
    /// List the targets of the project with the image names they build.
    Targets(TargetsArgs),
    /// Copy an image from a layout or archive to a registry.
    Push(PushArgs),
    /// Check credentials for a registry and store them in docker's config.json.
    Login(LoginArgs),
    /// Resolve every package of the targets again and pin them in recipes/recipes.lock.
    Lock(LockArgs),
    /// Copy images with their digests, platforms and referrers: registry to registry, into a
    /// bundle (dir:PATH, oci-archive:FILE) and from a bundle into a registry.
    Mirror(MirrorArgs),
    /// Check every blob of a bundle (dir:PATH or oci-archive:FILE) against its digest and size.
    Verify(VerifyArgs),
    /// Print the full reference of an image as the project names it now: `mlrun/mlrun` becomes
    /// `mlrun/mlrun:<MLRUN_VERSION>` with the registry prefix; other references stay as given.
    Resolve(ResolveArgs),
    /// Gather every locked input of targets (packages, built wheels, base images) into a
    /// directory to carry across an air gap, for `build --offline --inputs dir:PATH`.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Image references, e.g. mlrun/mlrun, mlrun/ml-models:1.6.0, python:3.11.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Targets (or layers/ definitions) whose inputs to gather.
    #[arg(value_name = "TARGET", required_unless_present = "all")]
    pub targets: Vec<String>,
    /// Every target of the project.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// dir:PATH: the directory to write (added to when it exists).
    #[arg(long, value_name = "dir:PATH")]
    pub to: String,
    /// Platforms to gather for, replacing the recipes' own (as for build).
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH")]
    pub platform: Vec<Platform>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Images (docker://HOST/REPOSITORY[:TAG] or HOST/REPOSITORY[:TAG]), bundles (dir:PATH,
    /// oci-archive:FILE), or @FILE: a list of these, one a line, `#` starting a comment.
    #[arg(value_name = "SOURCE", required_unless_present = "all")]
    pub sources: Vec<String>,
    /// Every target of the project, as `oci-build targets` names it.
    #[arg(long)]
    pub all: bool,
    /// REGISTRY[:PORT][/PREFIX] (each image keeps the last component of its repository and
    /// its tag under the prefix), dir:PATH or oci-archive:FILE (one bundle holding every image).
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// For sources named without a tag: copy the tags matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub tags_regex: Option<String>,
    /// For sources named without a tag: copy the N highest semantic-version tags (after
    /// --tags-regex, if given).
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// List what would be copied (images, blob count, size) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print what was copied as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// dir:PATH or oci-archive:FILE.
    pub bundle: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Targets (or layers/ definitions) to lock.
    #[arg(value_name = "TARGET", required_unless_present = "all")]
    pub targets: Vec<String>,
    /// Lock every target of the project.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// oci:DIR[:REF] or oci-archive:FILE[:REF].
    pub source: Transport,
    /// docker://REGISTRY/REPOSITORY[:TAG], e.g. docker://localhost:5000/mlrun/mlrun:1.0.
    pub destination: Transport,
    /// Print what was sent as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, e.g. quay.io, localhost:5000 or docker.io.
    pub registry: String,
    #[arg(short, long)]
    pub username: String,
    /// Read the password (or token) from standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// The password; prefer --password-stdin, which keeps it out of the process list.
    #[arg(short, long, env = "OCI_BUILD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Targets to build (see `oci-build targets`).
    #[arg(value_name = "TARGET", required_unless_present = "all")]
    pub targets: Vec<String>,

    /// Build every target of the project.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,

    /// Where to write: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or
    /// docker://REF. Without REF each image is stored under its own name, e.g.
    /// `mlrun/mlrun:1.0`. Default: oci:out, unless --push is given.
    #[arg(short, long, value_name = "DEST")]
    pub output: Option<Transport>,

    /// Push each image to the registry its name says (e.g. quay.io/mlrun/mlrun:1.0).
    #[arg(long)]
    pub push: bool,

    /// Platforms to build, replacing the recipes' own (e.g. linux/amd64,linux/arm64).
    #[arg(long, value_delimiter = ',', value_name = "OS/ARCH")]
    pub platform: Vec<Platform>,

    /// Layer compression.
    #[arg(long, default_value = "gzip", value_name = "gzip|zstd")]
    pub compression: Compression,

    /// Use Docker schema2 media types instead of OCI ones, for registries that predate OCI.
    #[arg(long)]
    pub docker_media_types: bool,

    /// Print the result as JSON on stdout: references, digests, sizes.
    #[arg(long)]
    pub json: bool,

    /// Fail instead of resolving any layer the lock file does not pin (for CI).
    #[arg(long)]
    pub locked: bool,

    /// How many targets build at once (each layer's compression uses every core already).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,

    /// Open no connection: build from the lock, with inputs from the cache and --inputs.
    #[arg(long)]
    pub offline: bool,

    /// dir:PATH written by `oci-build fetch`: where an offline build finds its inputs.
    #[arg(long, value_name = "dir:PATH", requires = "offline")]
    pub inputs: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// oci:DIR[:REF] or oci-archive:FILE[:REF].
    pub source: Transport,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// Print the targets as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Build(args) => build(&cli, args),
        Command::Inspect(args) => inspect(args),
        Command::Targets(args) => targets(&cli, args),
        Command::Push(args) => push(&cli, args),
        Command::Login(args) => login(&cli, args),
        Command::Lock(args) => lock(&cli, args),
        Command::Mirror(args) => mirror(&cli, args),
        Command::Verify(args) => verify(args),
        Command::Resolve(args) => resolve(&cli, args),
        Command::Fetch(args) => fetch(&cli, args),
    }
}

fn client_options(cli: &Cli) -> ClientOptions {
    ClientOptions {
        insecure_registries: cli.insecure_registries.clone(),
        ca_certs: cli.ca_certs.clone(),
        chunk_size: cli.upload_chunk_size.max(1),
        ..ClientOptions::default()
    }
}

fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds since 1970")
        }),
        _ => Ok(0),
    }
}

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
    manifests: Vec<ManifestSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pushed: Vec<PushReport>,
}

fn build(cli: &Cli, args: &BuildArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let targets = if args.all {
        project.target_names()
    } else {
        args.targets.clone()
    };
    let output = match (&args.output, args.push) {
        (Some(output), _) => Some(output.clone()),
        (None, false) => Some(Transport::Oci {
            dir: PathBuf::from("out"),
            name: None,
        }),
        (None, true) => None,
    };
    if let Some(output) = &output
        && targets.len() > 1
        && matches!(
            output,
            Transport::OciArchive { .. } | Transport::DockerArchive { .. }
        )
    {
        bail!(
            "`{output}` is a single-image archive, but {} targets are being built; write them to an oci:DIR layout (which holds many) or build one target per archive",
            targets.len()
        );
    }
    if let Some(output) = &output
        && targets.len() > 1
        && output.name().is_some()
    {
        bail!(
            "`{output}` names one image, but {} targets are being built; drop the `:REF` part so each image is stored under its own name",
            targets.len()
        );
    }
    if args.offline && (args.push || matches!(output, Some(Transport::Docker(_)))) {
        bail!(
            "an --offline build opens no connection, so it cannot push; write to oci:DIR or an archive"
        );
    }
    let offline = match (&args.offline, &args.inputs) {
        (false, _) => None,
        (true, None) => Some(oci_build::offline::Offline::cache_only()),
        (true, Some(dir)) => Some(oci_build::offline::Offline::from_inputs(dir)?),
    };
    let cache_root = cache_root(cli)?;
    let cache = Cache::open(&cache_root)?;
    let options = BuildOptions {
        compression: args.compression,
        media_types: if args.docker_media_types {
            MediaTypes::Docker
        } else {
            MediaTypes::Oci
        },
        source_date_epoch: source_date_epoch()?,
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        refresh_lock: false,
        resolve_only: false,
        client: client_options(cli),
        require_lock: args.locked || offline.is_some(),
        offline,
    };
    let reporter = TerminalReporter::new(cli.quiet);
    let builder = Builder::new(&project, cache, options, &reporter)?;

    // Everything is built before anything is written, so a failing target leaves the output
    // as it was. Targets build `--jobs` at a time; one that needs a base another is building
    // waits for it, so each shared layer is built once and dependency order holds.
    let built: Vec<BuiltTarget> = build_in_parallel(&builder, &targets, args.jobs.max(1))
        .into_iter()
        .collect::<Result<_, _>>()?;
    if let Some(path) = builder.save_lock()?
        && !cli.quiet
    {
        eprintln!("pinned newly resolved packages in {}", path.display());
    }
    let mut reports = Vec::new();
    for target in built {
        let mut written = Vec::new();
        let mut pushed = Vec::new();
        if let Some(output) = &output {
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
                    pushed.push(push_artifact(
                        &builder,
                        &target.artifact,
                        &reference,
                        &reporter,
                    )?);
                    Transport::Docker(reference)
                }
                local => local
                    .write(&target.artifact, &target.recipe.reference)
                    .with_context(|| format!("writing {} to {local}", target.recipe.target))?,
            };
            written.push(location.to_string());
        }
        if args.push {
            let reference = &target.recipe.reference;
            pushed.push(push_artifact(
                &builder,
                &target.artifact,
                reference,
                &reporter,
            )?);
            written.push(format!("docker://{reference}"));
        }
        if !cli.quiet && !args.json {
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
        reports.push(BuildReport {
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
            manifests: target.artifact.manifests.clone(),
            pushed,
        });
    }
    if args.json {
        print_json(&reports)?;
    }
    Ok(())
}

fn lock(cli: &Cli, args: &LockArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let targets = if args.all {
        project.target_names()
    } else {
        args.targets.clone()
    };
    let cache_root = cache_root(cli)?;
    let options = BuildOptions {
        compression: Compression::Gzip,
        media_types: MediaTypes::Oci,
        source_date_epoch: source_date_epoch()?,
        platforms: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        refresh_lock: true,
        resolve_only: true,
        client: client_options(cli),
        offline: None,
        require_lock: false,
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
fn fetch(cli: &Cli, args: &FetchArgs) -> anyhow::Result<()> {
    let Some(dir) = args.to.strip_prefix("dir:").filter(|d| !d.is_empty()) else {
        bail!(
            "`{}` is not a directory destination; use --to dir:PATH",
            args.to
        );
    };
    let project = Project::open(&cli.project)?;
    let targets = if args.all {
        project.target_names()
    } else {
        args.targets.clone()
    };
    let cache_root = cache_root(cli)?;
    let cache = Cache::open(&cache_root)?;
    let options = BuildOptions {
        compression: Compression::Gzip,
        media_types: MediaTypes::Oci,
        source_date_epoch: source_date_epoch()?,
        platforms: (!args.platform.is_empty()).then(|| args.platform.clone()),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        refresh_lock: false,
        resolve_only: false,
        client: client_options(cli),
        offline: None,
        require_lock: true,
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

fn push(cli: &Cli, args: &PushArgs) -> anyhow::Result<()> {
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
    let registries = Registries::new(client_options(cli));
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

/// `--cache-dir`, else the user's own cache directory.
fn cache_root(cli: &Cli) -> anyhow::Result<PathBuf> {
    Ok(match &cli.cache_dir {
        Some(dir) => dir.clone(),
        None => Cache::default_root()?,
    })
}

fn login(cli: &Cli, args: &LoginArgs) -> anyhow::Result<()> {
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => password.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, false) => bail!("give the password with --password-stdin (or --password)"),
    };
    let registry = args
        .registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let registry = if matches!(registry, "index.docker.io" | "registry-1.docker.io") {
        oci_build::reference::DOCKER_HUB
    } else {
        registry
    };
    let credential = Credential::new(&args.username, &password, "the command line");
    let stored = oci_build::registry::login(registry, &client_options(cli), credential)?;
    if !cli.quiet {
        let place = match stored {
            Stored::File(path) => path.display().to_string(),
            Stored::Helper(program) => format!("the credential store of {program}"),
        };
        eprintln!("Login to {registry} succeeded; credentials stored in {place}");
    }
    Ok(())
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
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

/// Builds `targets` on `jobs` threads; results in the order of `targets`. A target whose build
/// panics (a bug) fails with an error sentence like any other, and the others still build.
fn build_in_parallel(
    builder: &Builder<'_>,
    targets: &[String],
    jobs: usize,
) -> Vec<Result<BuiltTarget, oci_build::build::BuildError>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<_>>> = targets
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let internal = |target: &str, panicked: oci_build::workers::WorkerPanicked| {
        oci_build::build::BuildError::Internal {
            target: target.to_owned(),
            message: panicked.message,
        }
    };
    let pool = oci_build::workers::run(jobs.min(targets.len()), || {
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(target) = targets.get(index) else {
                return;
            };
            let result = oci_build::workers::catch(|| builder.build(target))
                .unwrap_or_else(|panicked| Err(internal(target, panicked)));
            *results[index]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        }
    });
    // Only a panic outside a build leaves a slot empty; its message is the one to show.
    let lost = pool
        .err()
        .unwrap_or_else(|| oci_build::workers::WorkerPanicked {
            message: "its worker ended early".to_owned(),
        });
    results
        .into_iter()
        .zip(targets)
        .map(|(slot, target)| {
            slot.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| Err(internal(target, lost.clone())))
        })
        .collect()
}

fn resolve(cli: &Cli, args: &ResolveArgs) -> anyhow::Result<()> {
    let project = Project::open(&cli.project)?;
    let mut family = Vec::new();
    for name in project.target_names() {
        family.push(project.load(&name)?.reference);
    }
    let repo = std::env::var("MLRUN_DOCKER_REPO").unwrap_or_else(|_| "mlrun".to_owned());
    let mut out = std::io::stdout().lock();
    for image in &args.images {
        writeln!(
            out,
            "{}",
            oci_build::recipe::resolve_image(image, &family, &repo)?
        )?;
    }
    Ok(())
}

fn targets(cli: &Cli, args: &TargetsArgs) -> anyhow::Result<()> {
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

fn mirror(cli: &Cli, args: &MirrorArgs) -> anyhow::Result<()> {
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
    let cache_root = cache_root(cli)?;
    let cache = Cache::open(&cache_root)?;
    let registries = Registries::new(client_options(cli));
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

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    use oci_build::image::bundle::Bundle;
    let unpacked;
    let report = if let Some(file) = args.bundle.strip_prefix("oci-archive:") {
        unpacked = tempfile::tempdir()?;
        let reader = std::fs::File::open(file).with_context(|| format!("cannot open `{file}`"))?;
        tar::Archive::new(std::io::BufReader::new(reader))
            .unpack(unpacked.path())
            .with_context(|| format!("cannot unpack `{file}`"))?;
        Bundle::open(unpacked.path(), &args.bundle)?.verify()?
    } else if let Some(dir) = args
        .bundle
        .strip_prefix("dir:")
        .or_else(|| args.bundle.strip_prefix("oci:"))
    {
        Bundle::open(std::path::Path::new(dir), &args.bundle)?.verify()?
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

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress bars on a terminal, one plain line per layer otherwise (CI logs), nothing with -q.
struct TerminalReporter {
    quiet: bool,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalReporter {
    fn new(quiet: bool) -> Self {
        TerminalReporter {
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }
}

impl TerminalReporter {
    /// Clears a finished upload bar.
    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl PushReporter for TerminalReporter {
    fn blob_started(&self, _digest: &oci_build::digest::Digest, size: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let mut bar = self.bar.lock().expect("reporter lock");
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "uploading {bar:30} {binary_bytes}/{binary_total_bytes}",
                )
                .expect("template is valid"),
            );
            bar
        });
        bar.inc_length(size);
    }

    fn blob_bytes(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn blob_done(&self, digest: &oci_build::digest::Digest, size: u64, how: &'static str) {
        if self.quiet {
            return;
        }
        let line = format!("blob {digest} {} {how}", human_bytes(size));
        match self.bar.lock().expect("reporter lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl oci_build::registry::mirror::MirrorReporter for TerminalReporter {
    fn image_done(&self, image: &oci_build::registry::mirror::MirroredImage, dry_run: bool) {
        if self.quiet {
            return;
        }
        let line = if dry_run {
            format!(
                "would copy {} -> {} {} ({} blobs, {} referrers, {})",
                image.source,
                image.destination,
                image.digest,
                image.blobs,
                image.referrers,
                human_bytes(image.bytes)
            )
        } else {
            format!(
                "{} -> {} {} ({} blobs copied, {}; {} already there; {} mounted; {} referrers)",
                image.source,
                image.destination,
                image.digest,
                image.blobs_copied,
                human_bytes(image.bytes_copied),
                image.blobs_present,
                image.blobs_mounted,
                image.referrers
            )
        };
        match self.bar.lock().expect("reporter lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Reporter for TerminalReporter {
    fn base_pulled(&self, target: &str, reference: &str, platform: &str, downloaded: u64) {
        if !self.quiet {
            eprintln!(
                "{target}: base {reference} for {platform} ({} downloaded)",
                human_bytes(downloaded)
            );
        }
    }

    fn layer_started(&self, target: &str, step: LayerStep<'_>, total_bytes: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {binary_bytes}/{binary_total_bytes} {msg}",
            )
            .expect("template is valid"),
        );
        bar.set_prefix(format!("{target} [{}/{}]", step.number, step.of));
        bar.set_message(step.description.to_owned());
        *self.bar.lock().expect("reporter lock") = Some(bar);
    }

    fn layer_bytes(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn layer_finished(&self, target: &str, step: LayerStep<'_>, blob: &LayerBlob, cached: bool) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        eprintln!(
            "{target} [{}/{}] {} {} {}{}",
            step.number,
            step.of,
            step.description,
            blob.digest,
            human_bytes(blob.size),
            if cached { " (cached)" } else { "" }
        );
    }
}
