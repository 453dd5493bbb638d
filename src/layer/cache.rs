//! The content-addressed cache: blobs under their digest, layers under a key of their inputs.
//!
//! ```text
//! $XDG_CACHE_HOME/oci-build/          (or --cache-dir)
//! ├── CACHEDIR.TAG                    backup tools skip the directory
//! ├── blobs/sha256/<hex>              every blob by its SHA256: layers, .debs, wheels, sdists,
//! │                                   conda packages, base images' manifests, configs, layers
//! ├── layers-v1/<key>.json            a LayerBlob record; <key> hashes the layer's inputs
//! ├── debs-v2/<sha256>/               a .deb extracted, with its listing
//! ├── wheels-v1/<sha256>/             a wheel extracted and verified, with its listing
//! ├── conda-v1/<sha256>/              a conda package extracted, with its listing
//! ├── pip-metadata-v1/<sha256>        a wheel's METADATA, from the index's PEP 658 file
//! ├── pip-built-v3/<sdist sha256>/    the wheel built from an sdist, normalised, with only
//! │                                   build requirements from the layer's sources (v1: as
//! │                                   built; v2: with the host venv's setuptools)
//! ├── bases-v1/<key>.json             which manifest a base reference meant, per platform
//! ├── layer-scans-v1/<diff_id hex>    what a layer holds for the layers on top (its Python,
//! │                                   distributions, dpkg status, directories): a LayerScan
//! ├── layer-packages-v1/<diff_id hex> what a layer holds for the SBOM: its LayerPackages
//! └── tmp/                            files being written; renamed into place when complete
//! ```
//!
//! Each bucket is a [`Bucket`]; its directory name carries its format version, so a change of
//! format starts a new bucket instead of misreading an old one.
//!
//! Every write goes to `tmp/` first and is renamed into place, so a killed build leaves either
//! the old state or a complete entry. A record is only trusted when its blob exists with the
//! recorded size.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::LayerBlob;
use crate::digest::Digest;
use crate::fsutil::{self, AtomicFile, Publish};

#[derive(Debug, thiserror::Error)]
#[error("cache directory `{path}`: {action} failed")]
pub struct CacheError {
    path: PathBuf,
    action: &'static str,
    #[source]
    source: io::Error,
}

/// Neither `XDG_CACHE_HOME` nor a home directory says where the cache goes.
#[derive(Debug, thiserror::Error)]
#[error(
    "there is no home directory to keep the cache in; set XDG_CACHE_HOME or HOME, or give --cache-dir"
)]
pub struct NoCacheDir;

fn cache_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError {
        path,
        action,
        source,
    }
}

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// The cache's directories (see the module doc). Anything that keeps files in the cache names
/// its bucket here, so that no two stages share a directory by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Blobs,
    Layers,
    Debs,
    Wheels,
    Conda,
    PipMetadata,
    PipPages,
    PipBuilt,
    Bases,
    LayerScans,
    LayerPackages,
    Tmp,
}

impl Bucket {
    pub const ALL: [Bucket; 12] = [
        Bucket::Blobs,
        Bucket::Layers,
        Bucket::Debs,
        Bucket::Wheels,
        Bucket::Conda,
        Bucket::PipMetadata,
        Bucket::PipPages,
        Bucket::PipBuilt,
        Bucket::Bases,
        Bucket::LayerScans,
        Bucket::LayerPackages,
        Bucket::Tmp,
    ];

    /// The directory under the cache root.
    pub const fn dir(self) -> &'static str {
        match self {
            Bucket::Blobs => "blobs/sha256",
            Bucket::Layers => "layers-v1",
            Bucket::Debs => "debs-v2",
            Bucket::Wheels => "wheels-v1",
            Bucket::Conda => "conda-v1",
            Bucket::PipMetadata => "pip-metadata-v1",
            Bucket::PipPages => "pip-pages-v1",
            Bucket::PipBuilt => "pip-built-v3",
            Bucket::Bases => "bases-v1",
            // A change to what a scan records (a field, or how a member is read) bumps these,
            // so that no record of the old scanner is read as the new one's.
            Bucket::LayerScans => "layer-scans-v1",
            Bucket::LayerPackages => "layer-packages-v1",
            Bucket::Tmp => "tmp",
        }
    }
}

const LAYER_BUCKET: &str = Bucket::Layers.dir();

impl Cache {
    /// The default location: `$XDG_CACHE_HOME/oci-build`, else `~/.cache/oci-build` (the home
    /// from `HOME`, else the user database). Never a shared directory such as /tmp, where
    /// another user could plant blobs before the first build.
    pub fn default_root() -> Result<PathBuf, NoCacheDir> {
        Self::root_for(std::env::var_os("XDG_CACHE_HOME"), std::env::home_dir())
    }

    fn root_for(
        xdg_cache_home: Option<std::ffi::OsString>,
        home: Option<PathBuf>,
    ) -> Result<PathBuf, NoCacheDir> {
        // Relative values are ignored, as the XDG base directory specification says.
        let base = xdg_cache_home
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| home.filter(|h| h.is_absolute()).map(|h| h.join(".cache")))
            .ok_or(NoCacheDir)?;
        Ok(base.join("oci-build"))
    }

    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for dir in [Bucket::Blobs, Bucket::Layers, Bucket::Tmp].map(Bucket::dir) {
            fs::create_dir_all(root.join(dir)).map_err(cache_err(root, "creating"))?;
        }
        // Canonical, because paths under it are handed to other programs that may run
        // elsewhere: bubblewrap refuses an sdist's build directory given relative, and cannot
        // make it at a path that goes through a symlink (a cache dir linked to another disk).
        let root = &fs::canonicalize(root).map_err(cache_err(root, "finding"))?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let cache = Cache {
                root: root.to_owned(),
            };
            cache.write_atomic(
                &tag,
                b"Signature: 8a477f597d28d172789f06886806bc55\n# oci-build cache; see https://bford.info/cachedir/\n",
            )?;
        }
        Ok(Cache {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `bucket` (not created here).
    pub fn bucket(&self, bucket: Bucket) -> PathBuf {
        self.root.join(bucket.dir())
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.bucket(Bucket::Blobs).join(digest.hex())
    }

    /// A temporary file on the cache's filesystem, removed unless it is committed.
    pub fn temp_file(&self) -> Result<NamedTempFile, CacheError> {
        let dir = self.bucket(Bucket::Tmp);
        NamedTempFile::new_in(&dir).map_err(cache_err(&self.root, "creating a temporary file"))
    }

    /// Moves a complete blob into place under its digest. There is no fsync: a killed build
    /// cannot leave a partial blob because of the rename, and a blob lost to a power failure
    /// fails the size check on lookup and is rebuilt. Measured at ~4% of a 100 MB layer build.
    pub fn commit_blob(&self, file: NamedTempFile, digest: &Digest) -> Result<PathBuf, CacheError> {
        let path = self.blob_path(digest);
        fsutil::persist(file, &path, Publish::PUBLIC)
            .map_err(cache_err(&self.root, "storing a blob"))?;
        Ok(path)
    }

    pub fn lookup_layer(&self, key: &CacheKey) -> Option<LayerBlob> {
        let record = fs::read(self.layer_record_path(key)).ok()?;
        let blob: LayerBlob = serde_json::from_slice(&record).ok()?;
        let meta = fs::metadata(self.blob_path(&blob.digest)).ok()?;
        (meta.len() == blob.size).then_some(blob)
    }

    pub fn store_layer(&self, key: &CacheKey, blob: &LayerBlob) -> Result<(), CacheError> {
        let json = serde_json::to_vec(blob).expect("layer records serialise");
        self.write_atomic(&self.layer_record_path(key), &json)
    }

    /// The facts of kind `kind` recorded for the layer with `diff_id`, if a usable record is
    /// there. The record is outside input: one that is too large, not a regular file, not
    /// JSON of the facts' shape, or made for another diff_id is passed over (with a debug
    /// line), and the layer is read again.
    pub fn lookup_facts<T: serde::de::DeserializeOwned>(
        &self,
        kind: FactsKind,
        diff_id: &Digest,
    ) -> Option<T> {
        let path = self.facts_path(kind, diff_id);
        let read = || -> Result<T, String> {
            // Looked at before it is opened: opening a FIFO planted there would wait forever.
            let before = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if !before.is_file() {
                return Err("not a regular file".to_owned());
            }
            let file = fs::File::open(&path).map_err(|e| e.to_string())?;
            let meta = file.metadata().map_err(|e| e.to_string())?;
            if !meta.is_file() || meta.len() > MAX_FACTS_BYTES {
                return Err(format!(
                    "not a regular file of at most {MAX_FACTS_BYTES} bytes"
                ));
            }
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(file, MAX_FACTS_BYTES), &mut bytes)
                .map_err(|e| e.to_string())?;
            let record: FactsRecord<T> =
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if record.diff_id != *diff_id {
                return Err(format!("it was made for {}", record.diff_id));
            }
            Ok(record.facts)
        };
        match read() {
            Ok(facts) => Some(facts),
            Err(reason) => {
                if path.exists() {
                    tracing::debug!(path = %path.display(), reason, "layer facts record ignored");
                }
                None
            }
        }
    }

    /// Whether a facts record is there for the layer (not whether it is usable).
    pub fn has_facts(&self, kind: FactsKind, diff_id: &Digest) -> bool {
        self.facts_path(kind, diff_id).is_file()
    }

    /// Records what a layer holds, under its diff_id.
    pub fn store_facts<T: serde::Serialize>(
        &self,
        kind: FactsKind,
        diff_id: &Digest,
        facts: &T,
    ) -> Result<(), CacheError> {
        let path = self.facts_path(kind, diff_id);
        let dir = self.bucket(kind.bucket());
        fs::create_dir_all(&dir).map_err(cache_err(&dir, "creating"))?;
        let json = serde_json::to_vec(&FactsRecordOf { diff_id, facts })
            .map_err(|e| cache_err(&path, "serialising layer facts")(e.into()))?;
        if json.len() as u64 > MAX_FACTS_BYTES {
            // Never read back: not worth the write.
            return Ok(());
        }
        self.write_atomic(&path, &json)
    }

    fn facts_path(&self, kind: FactsKind, diff_id: &Digest) -> PathBuf {
        self.bucket(kind.bucket()).join(diff_id.hex())
    }

    fn layer_record_path(&self, key: &CacheKey) -> PathBuf {
        self.root.join(LAYER_BUCKET).join(format!("{}.json", key.0))
    }

    /// A file of the cache at `path`, written in the cache's scratch directory until committed.
    pub fn atomic_file(&self, path: &Path, publish: Publish) -> Result<AtomicFile, CacheError> {
        AtomicFile::create_in(&self.bucket(Bucket::Tmp), path, publish)
            .map_err(cache_err(&self.root, "creating a temporary file"))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let mut file = self.atomic_file(path, Publish::PUBLIC)?;
        file.write_all(bytes)
            .map_err(cache_err(&self.root, "writing"))?;
        file.commit()
            .map_err(cache_err(&self.root, "renaming into place"))
    }
}

/// What is recorded of a layer, by its diff_id, so that a build on top of it need not read it:
/// a layer's tar decides these facts, so its diff_id is their key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactsKind {
    /// What layers on top read of it (`source::pip::scan::LayerScan`).
    Scan,
    /// What the SBOM lists of it (`sbom::scan::LayerPackages`).
    Packages,
}

impl FactsKind {
    const fn bucket(self) -> Bucket {
        match self {
            FactsKind::Scan => Bucket::LayerScans,
            FactsKind::Packages => Bucket::LayerPackages,
        }
    }
}

/// The largest facts record read. A scan holds a layer's dpkg status and each distribution's
/// RECORD paths: a few MiB for a layer of CUDA wheels.
const MAX_FACTS_BYTES: u64 = 128 << 20;

/// A facts record as written.
#[derive(serde::Serialize)]
struct FactsRecordOf<'a, T> {
    diff_id: &'a Digest,
    facts: &'a T,
}

/// A facts record as read: the diff_id it claims to describe, checked against the key.
#[derive(serde::Deserialize)]
struct FactsRecord<T> {
    diff_id: Digest,
    facts: T,
}

/// A stable key over a layer's inputs. Each field is length-prefixed, so `("ab","c")` and
/// `("a","bc")` differ; std's `Hash` is not used because it may change between Rust releases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub struct CacheKeyBuilder(Sha256);

impl CacheKeyBuilder {
    pub fn new(kind: &str) -> Self {
        let mut b = CacheKeyBuilder(Sha256::new());
        b.field(kind.as_bytes());
        b
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn num(&mut self, n: u64) -> &mut Self {
        self.field(&n.to_le_bytes())
    }

    pub fn finish(self) -> CacheKey {
        CacheKey(hex::encode(self.0.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;

    #[test]
    fn buckets_are_distinct_directories() {
        let dirs: std::collections::BTreeSet<&str> = Bucket::ALL.iter().map(|b| b.dir()).collect();
        assert_eq!(dirs.len(), Bucket::ALL.len());
    }

    /// Without a cache or home directory there is no default: never a shared one like /tmp.
    #[test]
    fn the_default_cache_is_the_users_own_or_none() {
        let root = |xdg: Option<&str>, home: Option<&str>| {
            Cache::root_for(xdg.map(Into::into), home.map(PathBuf::from)).ok()
        };
        assert_eq!(
            root(Some("/x/cache"), Some("/home/u")),
            Some(PathBuf::from("/x/cache/oci-build"))
        );
        assert_eq!(
            root(Some("relative"), Some("/home/u")),
            Some(PathBuf::from("/home/u/.cache/oci-build"))
        );
        assert_eq!(root(Some(""), None), None);
        assert_eq!(root(None, Some("")), None);
        assert_eq!(root(None, None), None);
    }

    #[test]
    fn keys_are_length_prefixed() {
        let mut a = CacheKeyBuilder::new("t");
        a.field(b"ab").field(b"c");
        let mut b = CacheKeyBuilder::new("t");
        b.field(b"a").field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn a_record_without_its_blob_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let blob_bytes = b"blob";
        let digest = Digest::of_bytes(blob_bytes);
        let record = LayerBlob {
            digest: digest.clone(),
            size: 4,
            diff_id: digest.clone(),
            diff_size: 4,
            compression: Compression::Gzip,
        };
        let key = CacheKeyBuilder::new("t").finish();
        cache.store_layer(&key, &record).unwrap();
        assert_eq!(cache.lookup_layer(&key), None);
        let mut tmp = cache.temp_file().unwrap();
        tmp.write_all(blob_bytes).unwrap();
        cache.commit_blob(tmp, &digest).unwrap();
        assert_eq!(cache.lookup_layer(&key), Some(record));
        // Nothing is left behind in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(dir.path().join("CACHEDIR.TAG").exists());
    }

    /// A facts record is used only when it parses, is small enough and names the diff_id it is
    /// looked up under; anything else is a miss, never a panic.
    #[test]
    fn facts_records_are_checked_against_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let facts = vec!["usr/lib/python3.11".to_owned()];
        cache.store_facts(FactsKind::Scan, &a, &facts).unwrap();
        assert_eq!(
            cache.lookup_facts::<Vec<String>>(FactsKind::Scan, &a),
            Some(facts.clone())
        );
        // Another kind is another record.
        assert_eq!(
            cache.lookup_facts::<Vec<String>>(FactsKind::Packages, &a),
            None
        );
        let path = |d: &Digest| dir.path().join("layer-scans-v1").join(d.hex());
        // A's record under B's name describes A: not B's facts.
        fs::copy(path(&a), path(&b)).unwrap();
        assert!(cache.has_facts(FactsKind::Scan, &b));
        assert_eq!(cache.lookup_facts::<Vec<String>>(FactsKind::Scan, &b), None);
        // Cut short, of another shape, or too large.
        let whole = fs::read(path(&a)).unwrap();
        fs::write(path(&a), &whole[..whole.len() - 3]).unwrap();
        assert_eq!(cache.lookup_facts::<Vec<String>>(FactsKind::Scan, &a), None);
        fs::write(path(&a), &whole).unwrap();
        assert_eq!(cache.lookup_facts::<Vec<u8>>(FactsKind::Scan, &a), None);
        fs::File::create(path(&a))
            .unwrap()
            .set_len(MAX_FACTS_BYTES + 1)
            .unwrap();
        assert_eq!(cache.lookup_facts::<Vec<String>>(FactsKind::Scan, &a), None);
        // A directory where the record should be.
        fs::remove_file(path(&a)).unwrap();
        fs::create_dir(path(&a)).unwrap();
        assert_eq!(cache.lookup_facts::<Vec<String>>(FactsKind::Scan, &a), None);
    }
}
