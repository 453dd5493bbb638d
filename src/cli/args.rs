//! The command line's grammar: clap's derive structs for every flag and subcommand, and the
//! values read from the environment and global flags that several commands share.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use oci_build::image::spec::Platform;
use oci_build::layer::Compression;
use oci_build::layer::cache::Cache;
use oci_build::registry::ClientOptions;
use oci_build::sbom::SbomFormat;
use oci_build::transport::Transport;

/// Build OCI images from declarative recipes: no daemon, no root, no RUN.
///
/// A project directory holds recipes/*.toml (each one a target) and layers/*.toml (shared
/// bases). oci-build writes every layer itself, reproducibly, and stores the result as an OCI
/// layout, an OCI archive or a docker-archive.
#[derive(Debug, Parser)]
#[command(name = "oci-build", version, propagate_version = true)]
pub(crate) struct Cli {
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
pub(crate) enum Command {
    /// Build targets and write them to an output.
    Build(BuildArgs),
    /// Show an image's platforms, config, layers with sizes, and history.
    Inspect(InspectArgs),
    /// List the targets of the project with the image names they build.
    Targets(TargetsArgs),
    /// Copy an image from a layout or archive to a registry.
    Push(PushArgs),
    /// Check credentials for a registry and store them where lookup reads first:
    /// $REGISTRY_AUTH_FILE, else docker's config.json.
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
    /// Print the SBOM of an image: the one attached to it as a referrer, else one made now
    /// from its layers (Debian, Python and conda packages).
    Sbom(SbomArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SbomArgs {
    /// oci:DIR[:REF] or oci-archive:FILE[:REF].
    pub source: Transport,
    /// spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.6 JSON).
    #[arg(long, value_name = "FORMAT", default_value = "spdx")]
    pub format: SbomFormat,
    /// The platform of a multi-platform image (default: its only one, else the host's).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<Platform>,
    /// Write the SBOM to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// Image references, e.g. mlrun/mlrun, mlrun/ml-models:1.6.0, python:3.11.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
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
pub(crate) struct MirrorArgs {
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
pub(crate) struct VerifyArgs {
    /// dir:PATH or oci-archive:FILE.
    pub bundle: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// Targets (or layers/ definitions) to lock.
    #[arg(value_name = "TARGET", required_unless_present = "all")]
    pub targets: Vec<String>,
    /// Lock every target of the project.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// oci:DIR[:REF] or oci-archive:FILE[:REF].
    pub source: Transport,
    /// docker://REGISTRY/REPOSITORY[:TAG], e.g. docker://localhost:5000/mlrun/mlrun:1.0.
    pub destination: Transport,
    /// Print what was sent as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
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
pub(crate) struct BuildArgs {
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

    /// Attach no SBOM and no provenance statement to the images.
    #[arg(long)]
    pub no_sbom: bool,

    /// The SBOM attached to each platform manifest: spdx (SPDX 2.3 JSON) or cyclonedx
    /// (CycloneDX 1.6 JSON).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "spdx",
        conflicts_with = "no_sbom"
    )]
    pub sbom_format: SbomFormat,

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

    /// A registry repository to look for each layer in before building it (repeatable, in
    /// order), e.g. registry.example/ci/oci-build-cache. See also --cache-to.
    #[arg(long, value_name = "REPOSITORY", conflicts_with = "offline")]
    pub cache_from: Vec<oci_build::reference::Reference>,

    /// A registry repository to record every layer of the build in, for --cache-from.
    #[arg(long, value_name = "REPOSITORY", conflicts_with = "offline")]
    pub cache_to: Option<oci_build::reference::Reference>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// oci:DIR[:REF] or oci-archive:FILE[:REF].
    pub source: Transport,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TargetsArgs {
    /// Print the targets as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// How to reach registries, from the global flags.
    pub(crate) fn client_options(&self) -> ClientOptions {
        ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            ca_certs: self.ca_certs.clone(),
            chunk_size: self.upload_chunk_size.max(1),
            ..ClientOptions::default()
        }
    }

    /// `--cache-dir`, else the user's own cache directory.
    pub(crate) fn cache_root(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => Cache::default_root()?,
        })
    }
}

/// The time every build stamps into its images: `SOURCE_DATE_EPOCH` (reproducible-builds.org),
/// else 1970, so the same inputs give the same digests.
pub(super) fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => value.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds since 1970")
        }),
        _ => Ok(0),
    }
}
