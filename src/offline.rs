//! Air-gapped builds: `oci-build fetch` gathers every locked input of some targets into a
//! directory that can be carried across an air gap, and `oci-build build --offline --inputs
//! dir:PATH` builds from it (and the cache) without opening a single connection.
//!
//! The directory is a mirror bundle (an OCI image layout, see [`crate::image::bundle`]) plus one
//! file:
//!
//! ```text
//! PATH/oci-layout, PATH/index.json    the base images, one entry per reference and platform
//! PATH/blobs/sha256/<hex>             every input, by the SHA256 of its bytes
//! PATH/inputs.json                    what each blob is: kind, name, version, filename, size
//! ```
//!
//! Kinds: `deb` (a `.deb` the lock pins), `pip` (a wheel or sdist the lock pins), `pip-built`
//! (the wheel built from a pinned sdist, `built_from` its SHA256: an offline site cannot
//! install build requirements), `image` (the platform manifest of a `docker://` base, `name` the
//! reference as the recipe names it; its config and layers are in `index.json`'s closure) and
//! `conda` (a conda package the lock pins). Which inputs a kind's pins need is the kind's
//! to say ([`LockedSource::needs`], [`LockedSource::used`]).
//!
//! `verify dir:PATH` checks it like any bundle, and checks that every input of `inputs.json` is
//! there with its size.
//!
//! An offline build copies what it needs from PATH into the cache (verified by SHA256) and
//! then reads the cache alone, so `--offline` without `--inputs` builds from the cache alone.
//! Online pulls of `docker://` bases remember the manifest they resolved in the cache for that.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::fsutil::Publish;
use crate::image::bundle::{Bundle, BundleError, VerifyReport};
use crate::image::spec::{self, Descriptor, ImageConfig, Manifest, Platform};
use crate::layer::cache::{Cache, CacheError, CacheKeyBuilder};
use crate::name::Shown;
use crate::reference::Reference;
use crate::registry::pull::PulledImage;
use crate::source::LockedSource;
use crate::source::kinds;

pub const INPUTS_FILE: &str = "inputs.json";
const INPUTS_VERSION: u32 = 1;
/// Where online pulls remember which manifest a reference resolved to, per platform.
const BASES_BUCKET: &str = crate::layer::cache::Bucket::Bases.dir();

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{what} is not in {place}")]
    Missing { what: String, place: String },
    #[error(
        "this layer is not pinned in recipes/recipes.lock (or what it depends on changed since); run `oci-build lock` where its indexes are reachable"
    )]
    NotLocked,
    #[error("{what} in `{file}` does not match its SHA256 (its content hashes to {found})")]
    Corrupt {
        what: String,
        file: PathBuf,
        found: String,
    },
    #[error("`{path}` is not a valid inputs file: {reason}")]
    BadInputs { path: PathBuf, reason: String },
    #[error("`{path}` is not a valid inputs file")]
    InputsJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} (`{path}`) is not valid JSON of that kind")]
    BadDocument {
        what: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{0}` is not an inputs directory; name one as dir:PATH")]
    NotADir(String),
    #[error("cannot read or write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Place(Box<crate::source::SourceError>),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OfflineError + '_ {
    move |source| OfflineError::Io {
        path: path.to_owned(),
        source,
    }
}

pub use crate::source::locked::{Input, InputKind};

impl Input {
    /// How messages name the input.
    pub fn describe(&self) -> String {
        kinds::describe_input(self).unwrap_or_else(|| {
            format!(
                "base image {} for {}",
                self.name,
                self.platform.as_deref().unwrap_or("its platform")
            )
        })
    }

    /// Checks what `inputs.json` says beyond its types: names that could become paths or
    /// forge output, and file names by their kind's grammar. `Err` is the reason.
    fn check(&self) -> Result<(), String> {
        for (what, text) in [
            ("name", &self.name),
            ("version", &self.version),
            ("filename", &self.filename),
        ] {
            if text.chars().any(char::is_control) {
                return Err(format!(
                    "its {what} `{}` has a control character",
                    Shown(text)
                ));
            }
        }
        if let Some(checked) = kinds::check_input(self) {
            return checked;
        }
        let platform = self.platform.as_deref().unwrap_or_default();
        if platform.parse::<Platform>().is_err() {
            return Err(format!("its platform `{}` is not os/arch", Shown(platform)));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct InputsFile {
    version: u32,
    inputs: Vec<Input>,
}

/// The inputs listed in `dir/inputs.json` (none when there is no such file).
pub fn read_inputs(dir: &Path) -> Result<Vec<Input>, OfflineError> {
    let path = dir.join(INPUTS_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let file: InputsFile =
        serde_json::from_slice(&bytes).map_err(|source| OfflineError::InputsJson {
            path: path.clone(),
            source,
        })?;
    if file.version != INPUTS_VERSION {
        return Err(OfflineError::BadInputs {
            path,
            reason: format!("format version {} is not {INPUTS_VERSION}", file.version),
        });
    }
    for (at, input) in file.inputs.iter().enumerate() {
        input.check().map_err(|reason| OfflineError::BadInputs {
            path: path.clone(),
            reason: format!("input {at} ({}): {reason}", Shown(&input.name)),
        })?;
    }
    Ok(file.inputs)
}

/// `verify dir:PATH`: checks `bundle` like any bundle, and that every input its
/// `inputs.json` lists is there with its size.
pub fn verify(bundle: &Bundle) -> Result<VerifyReport, BundleError> {
    bundle.verify_with(|sizes| {
        let inputs = read_inputs(bundle.dir()).map_err(|e| BundleError::BadInputs {
            bundle: bundle.name().to_owned(),
            source: Box::new(e),
        })?;
        for input in &inputs {
            if sizes.get(&input.sha256).copied() != Some(input.size) {
                return Err(BundleError::MissingInput {
                    bundle: bundle.name().to_owned(),
                    what: input.describe(),
                    file: format!("blobs/sha256/{}", input.sha256.hex()),
                });
            }
        }
        Ok(inputs.len())
    })
}

fn write_inputs(dir: &Path, inputs: Vec<Input>) -> Result<(), OfflineError> {
    let path = dir.join(INPUTS_FILE);
    let file = InputsFile {
        version: INPUTS_VERSION,
        inputs,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("inputs serialise");
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&path, &bytes, Publish::PUBLIC).map_err(io_err(&path))
}

/// `docker.io/library/debian:latest` for a reference named without tag or digest.
fn reference_key(reference: &Reference) -> String {
    let mut reference = reference.clone();
    if reference.tag.is_none() && reference.digest.is_none() {
        reference.tag = Some("latest".to_owned());
    }
    reference.to_string()
}

// ---------------------------------------------------------------------------------------------
// Building offline

/// How an offline build finds its inputs: the cache, and a fetched directory when given.
#[derive(Clone, Debug, Default)]
pub struct Offline {
    inputs: Option<InputsDir>,
}

#[derive(Clone, Debug)]
struct InputsDir {
    dir: PathBuf,
    /// `dir:PATH`, as messages name it.
    name: String,
    inputs: Vec<Input>,
}

impl Offline {
    /// Offline from the cache alone.
    pub fn cache_only() -> Offline {
        Offline { inputs: None }
    }

    /// Offline from `dir:PATH` (what `oci-build fetch` wrote) and the cache.
    pub fn from_inputs(arg: &str) -> Result<Offline, OfflineError> {
        let Some(dir) = arg.strip_prefix("dir:").filter(|d| !d.is_empty()) else {
            return Err(OfflineError::NotADir(arg.to_owned()));
        };
        let dir = PathBuf::from(dir);
        if !dir.join(INPUTS_FILE).is_file() {
            return Err(OfflineError::Missing {
                what: INPUTS_FILE.to_owned(),
                place: format!("{arg} (write it with `oci-build fetch --to {arg}`)"),
            });
        }
        Ok(Offline {
            inputs: Some(InputsDir {
                inputs: read_inputs(&dir)?,
                dir,
                name: arg.to_owned(),
            }),
        })
    }

    fn place(&self) -> String {
        match &self.inputs {
            Some(inputs) => format!("{} (nor in the cache)", inputs.name),
            None => "the cache (and no --inputs dir:PATH was given)".to_owned(),
        }
    }

    /// Makes sure the cache has the blob of `input`, copying it (verified) from the inputs
    /// directory where the cache lacks it. Returns its path in the cache.
    pub fn provide(&self, cache: &Cache, input: &Input) -> Result<PathBuf, OfflineError> {
        let digest = &input.sha256;
        let path = cache.blob_path(digest);
        if fs::metadata(&path).is_ok_and(|m| m.len() == input.size) {
            return Ok(path);
        }
        let source = self
            .inputs
            .as_ref()
            .map(|i| i.dir.join("blobs/sha256").join(digest.hex()))
            .filter(|p| p.is_file())
            .ok_or_else(|| OfflineError::Missing {
                what: input.describe(),
                place: self.place(),
            })?;
        import(cache, &source, digest, input)
    }

    /// Every input the pins of a layer of kind `S` need, into the cache: from the cache
    /// itself, else copied (verified) from the inputs directory.
    pub fn provide_pins<S: LockedSource>(
        &self,
        cache: &Cache,
        pins: &[S::Pin],
    ) -> Result<(), OfflineError> {
        for needed in S::needs(pins, cache) {
            let mut input = needed.input;
            if needed.size_unknown {
                input.size = self.size_of(cache, &input)?;
            }
            self.provide(cache, &input)?;
            if let Some(kind) = needed.derived {
                self.provide_derived(cache, kind, &input)?;
            }
        }
        Ok(())
    }

    /// The size of an input its lock entry does not give: the cache's file, else the inputs'
    /// listing.
    fn size_of(&self, cache: &Cache, input: &Input) -> Result<u64, OfflineError> {
        let cached = fs::metadata(cache.blob_path(&input.sha256)).ok();
        match (cached, self.listed(input.kind, &input.sha256)) {
            (Some(meta), _) => Ok(meta.len()),
            (None, Some(listed)) => Ok(listed.size),
            (None, None) => Err(OfflineError::Missing {
                what: input.describe(),
                place: self.place(),
            }),
        }
    }

    /// The input of kind `kind` made online from `from` (a pip sdist's built wheel), into the
    /// cache where its source finds it: an offline site cannot make it.
    fn provide_derived(
        &self,
        cache: &Cache,
        kind: InputKind,
        from: &Input,
    ) -> Result<(), OfflineError> {
        let derived = self
            .inputs
            .as_ref()
            .and_then(|i| {
                i.inputs
                    .iter()
                    .find(|x| x.kind == kind && x.built_from.as_ref() == Some(&from.sha256))
            })
            .cloned()
            .ok_or_else(|| OfflineError::Missing {
                what: Input {
                    kind,
                    built_from: Some(from.sha256.clone()),
                    size: 0,
                    ..from.clone()
                }
                .describe(),
                place: self.place(),
            })?;
        let blob = self.provide(cache, &derived)?;
        kinds::place_derived(cache, &derived, &blob).map_err(|e| OfflineError::Place(Box::new(e)))
    }

    fn listed(&self, kind: InputKind, sha256: &Digest) -> Option<&Input> {
        self.inputs
            .as_ref()?
            .inputs
            .iter()
            .find(|i| i.kind == kind && &i.sha256 == sha256)
    }

    /// A `docker://` base for one platform, from the inputs directory (which decides which
    /// manifest the reference means) or what an online pull left in the cache.
    pub fn pull_base(
        &self,
        cache: &Cache,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<PulledImage, OfflineError> {
        let key = reference_key(reference);
        let wanted = platform.to_string();
        let missing = || OfflineError::Missing {
            what: format!("base image {key} for {wanted}"),
            place: self.place(),
        };
        let listed = match &self.inputs {
            Some(inputs) => inputs
                .inputs
                .iter()
                .find(|i| {
                    i.kind == InputKind::IMAGE
                        && i.name == key
                        && i.platform.as_deref() == Some(&wanted)
                })
                .cloned(),
            None => None,
        };
        let manifest_input = match listed {
            Some(input) => {
                // Later offline builds without --inputs find the base in the cache.
                self.provide(cache, &input)?;
                write_base_record(cache, &input)?;
                input
            }
            None => {
                let path = base_record_path(cache, &key, &wanted);
                let bytes = fs::read(&path).map_err(|_| missing())?;
                serde_json::from_slice(&bytes).map_err(|_| missing())?
            }
        };
        let manifest_path = self.provide(cache, &manifest_input)?;
        let manifest_bytes = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|source| {
            OfflineError::BadDocument {
                what: format!("the manifest of {key}"),
                path: manifest_path.clone(),
                source,
            }
        })?;
        let blob_input = |descriptor: &Descriptor, what: &str| Input {
            kind: InputKind::IMAGE,
            name: format!("{what} {} of {key}", descriptor.digest),
            version: String::new(),
            filename: String::new(),
            sha256: descriptor.digest.clone(),
            size: descriptor.size,
            platform: Some(wanted.clone()),
            media_type: Some(descriptor.media_type.clone()),
            built_from: None,
        };
        let config_path = self.provide(cache, &blob_input(&manifest.config, "config"))?;
        let config_bytes = fs::read(&config_path).map_err(io_err(&config_path))?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| OfflineError::BadDocument {
                what: format!("the config of {key}"),
                path: config_path.clone(),
                source,
            })?;
        for layer in &manifest.layers {
            self.provide(cache, &blob_input(layer, "layer"))?;
        }
        Ok(PulledImage {
            manifest_digest: manifest_input.sha256.clone(),
            manifest,
            config,
            downloaded: 0,
            manifest_media_type: manifest_input
                .media_type
                .clone()
                .unwrap_or_else(|| spec::OCI_MANIFEST.to_owned()),
            manifest_bytes,
            config_bytes,
        })
    }
}

/// Copies `source` into the cache as the blob `digest`, refusing other bytes.
fn import(
    cache: &Cache,
    source: &Path,
    digest: &Digest,
    input: &Input,
) -> Result<PathBuf, OfflineError> {
    let temp = cache.temp_file()?;
    let mut writer = HashingWriter::new(io::BufWriter::new(
        temp.reopen().map_err(io_err(temp.path()))?,
    ));
    let mut reader = BufReader::new(fs::File::open(source).map_err(io_err(source))?);
    io::copy(&mut reader, &mut writer).map_err(io_err(source))?;
    let (buffered, found, size) = writer.finish();
    buffered
        .into_inner()
        .map_err(|e| io_err(temp.path())(e.into_error()))?;
    if &found != digest || size != input.size {
        return Err(OfflineError::Corrupt {
            what: input.describe(),
            file: source.to_owned(),
            found: format!("{found}, {size} bytes"),
        });
    }
    Ok(cache.commit_blob(temp, digest)?)
}

fn base_record_path(cache: &Cache, reference: &str, platform: &str) -> PathBuf {
    let mut key = CacheKeyBuilder::new(BASES_BUCKET);
    key.field(reference.as_bytes()).field(platform.as_bytes());
    cache
        .root()
        .join(BASES_BUCKET)
        .join(format!("{}.json", key.finish().as_str()))
}

/// After an online pull: keeps the manifest and config in the cache and remembers which
/// manifest `reference` meant for `platform`, so that an offline build (and `fetch`) finds it.
pub fn remember_base(
    cache: &Cache,
    reference: &Reference,
    platform: &Platform,
    pulled: &PulledImage,
) -> Result<Input, OfflineError> {
    for (bytes, digest) in [
        (&pulled.manifest_bytes, &pulled.manifest_digest),
        (&pulled.config_bytes, &pulled.manifest.config.digest),
    ] {
        if !cache.blob_path(digest).is_file() {
            let temp = cache.temp_file()?;
            fs::write(temp.path(), bytes).map_err(io_err(temp.path()))?;
            cache.commit_blob(temp, digest)?;
        }
    }
    let key = reference_key(reference);
    let input = Input {
        kind: InputKind::IMAGE,
        name: key.clone(),
        version: String::new(),
        filename: String::new(),
        sha256: pulled.manifest_digest.clone(),
        size: pulled.manifest_bytes.len() as u64,
        platform: Some(platform.to_string()),
        media_type: Some(pulled.manifest_media_type.clone()),
        built_from: None,
    };
    write_base_record(cache, &input)?;
    Ok(input)
}

/// Remembers in the cache which manifest an image input's reference means for its platform.
fn write_base_record(cache: &Cache, input: &Input) -> Result<(), OfflineError> {
    let path = base_record_path(cache, &input.name, input.platform.as_deref().unwrap_or(""));
    let dir = path.parent().expect("records have a directory");
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let bytes = serde_json::to_vec(input).expect("inputs serialise");
    crate::fsutil::write_atomic(&path, &bytes, Publish::PRIVATE).map_err(io_err(&path))
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// Every input a build used, as the builder records them (for `oci-build fetch`).
#[derive(Clone, Debug, Default)]
pub struct Used {
    inputs: BTreeSet<Input>,
}

impl Used {
    /// The inputs of a layer's pins of kind `S`, which the build left in the cache.
    pub fn record<S: LockedSource>(&mut self, cache: &Cache, pins: &[S::Pin]) {
        self.inputs.extend(S::used(pins, cache));
    }

    /// A `docker://` base as [`remember_base`] recorded it.
    pub fn record_base(&mut self, image: Input) {
        self.inputs.insert(image);
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchReport {
    pub directory: String,
    pub inputs: usize,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// Writes every used input from the cache into the directory `dir` (named `name`, `dir:PATH`),
/// adding to what is there.
pub fn export(
    used: &Used,
    cache: &Cache,
    dir: &Path,
    name: &str,
) -> Result<FetchReport, OfflineError> {
    let bundle = Bundle::create(dir, name)?;
    let mut listed: BTreeSet<Input> = read_inputs(dir)?.into_iter().collect();
    let mut report = FetchReport {
        directory: name.to_owned(),
        ..Default::default()
    };
    let mut blobs = BTreeSet::new();
    let mut put = |input: &Input| -> Result<(), OfflineError> {
        let digest = input.sha256.clone();
        let path = cache.blob_path(&digest);
        if !fs::metadata(&path).is_ok_and(|m| m.len() == input.size) {
            return Err(OfflineError::Missing {
                what: input.describe(),
                place: "the cache, where the build should have left it".to_owned(),
            });
        }
        bundle.put_blob_file(&Descriptor::new("", digest.clone(), input.size), &path)?;
        if blobs.insert(digest) {
            report.bytes += input.size;
        }
        Ok(())
    };
    for input in &used.inputs {
        put(input)?;
        if input.kind == InputKind::IMAGE {
            let (Some(reference), Some(platform)) = (
                input.name.parse::<Reference>().ok(),
                input
                    .platform
                    .as_deref()
                    .and_then(|p| p.parse::<Platform>().ok()),
            ) else {
                continue;
            };
            let manifest_path = cache.blob_path(&input.sha256);
            let manifest: Manifest =
                serde_json::from_slice(&fs::read(&manifest_path).map_err(io_err(&manifest_path))?)
                    .map_err(|source| OfflineError::BadDocument {
                        what: format!("the manifest of {}", input.name),
                        path: manifest_path.clone(),
                        source,
                    })?;
            for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
                put(&Input {
                    name: format!("blob {} of {}", descriptor.digest, input.name),
                    sha256: descriptor.digest.clone(),
                    size: descriptor.size,
                    ..input.clone()
                })?;
            }
            let mut descriptor = Descriptor::new(
                input.media_type.as_deref().unwrap_or(spec::OCI_MANIFEST),
                input.sha256.clone(),
                input.size,
            );
            descriptor.platform = Some(platform);
            let ref_name = match (&reference.digest, &reference.tag) {
                (Some(digest), _) => format!("{}@{digest}", reference.repository),
                (None, tag) => format!(
                    "{}:{}",
                    reference.repository,
                    tag.as_deref().unwrap_or("latest")
                ),
            };
            bundle.set_platform_tag(&ref_name, &descriptor, &input.name)?;
            report.images += 1;
        }
        listed.retain(|l| !(l.kind == input.kind && l.sha256 == input.sha256));
        listed.insert(input.clone());
    }
    report.inputs = used.inputs.len();
    report.blobs = blobs.len();
    write_inputs(dir, listed.into_iter().collect())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::debian::Debian;
    use crate::source::debian::LockedDeb;
    use crate::source::debian::kind::DEB;

    fn deb(name: &str, bytes: &[u8]) -> LockedDeb {
        LockedDeb {
            name: name.to_owned(),
            version: "1.0".to_owned(),
            architecture: "amd64".to_owned(),
            multi_arch: None,
            filename: format!("pool/main/{name}_1.0_amd64.deb"),
            size: bytes.len() as u64,
            sha256: Digest::of_bytes(bytes),
        }
    }

    #[test]
    fn exported_inputs_come_back_into_an_empty_cache_and_a_missing_one_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let online = Cache::open(&tmp.path().join("online")).unwrap();
        let packages = [deb("hello", b"hello deb"), deb("absent", b"absent deb")];
        for (package, bytes) in packages.iter().zip([&b"hello deb"[..], b"absent deb"]) {
            let temp = online.temp_file().unwrap();
            fs::write(temp.path(), bytes).unwrap();
            online.commit_blob(temp, &package.sha256).unwrap();
        }
        let mut used = Used::default();
        used.record::<Debian>(&online, &packages[..1]);
        let dir = tmp.path().join("inputs");
        let report = export(&used, &online, &dir, "dir:inputs").unwrap();
        assert_eq!((report.inputs, report.blobs), (1, 1));
        assert_eq!(read_inputs(&dir).unwrap()[0].kind, DEB);

        let offline = Offline::from_inputs(&format!("dir:{}", dir.display())).unwrap();
        let fresh = Cache::open(&tmp.path().join("fresh")).unwrap();
        offline
            .provide_pins::<Debian>(&fresh, &packages[..1])
            .unwrap();
        assert_eq!(
            fs::read(fresh.blob_path(&packages[0].sha256)).unwrap(),
            b"hello deb"
        );
        let error = offline
            .provide_pins::<Debian>(&fresh, &packages)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Debian package absent 1.0 (pool/main/absent_1.0_amd64.deb")
                && error.contains("is not in dir:"),
            "{error}"
        );
        let error = Offline::cache_only()
            .provide_pins::<Debian>(&Cache::open(&tmp.path().join("empty")).unwrap(), &packages)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not in the cache"), "{error}");
    }

    #[test]
    fn a_changed_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("inputs");
        let package = deb("hello", b"hello deb");
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(
            dir.join("blobs/sha256").join(package.sha256.hex()),
            b"hellO deb",
        )
        .unwrap();
        let listed = Debian::used(
            std::slice::from_ref(&package),
            &Cache::open(tmp.path()).unwrap(),
        );
        write_inputs(&dir, listed).unwrap();
        let offline = Offline::from_inputs(&format!("dir:{}", dir.display())).unwrap();
        let cache = Cache::open(&tmp.path().join("cache")).unwrap();
        let error = offline
            .provide_pins::<Debian>(&cache, &[package])
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not match its SHA256"), "{error}");
    }
}
