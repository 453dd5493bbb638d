//! The lock file, `recipes/recipes.lock`: what builds resolved, pinned so that the next build
//! installs the same packages without reading an index.
//!
//! Each `debian` layer is pinned per target, layer number and architecture, together with a
//! hash of its inputs (the layer's spec and the dpkg status below it). A layer whose inputs
//! changed is resolved again; `oci-build lock` resolves everything again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::conda::LockedConda;
use crate::source::debian::LockedDeb;

pub const LOCK_FILE: &str = "recipes/recipes.lock";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock file `{path}` is not valid: {message}; delete it and run `oci-build lock`")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write lock file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    #[serde(default, rename = "debian", skip_serializing_if = "Vec::is_empty")]
    pub debian: Vec<DebianLayerLock>,
    #[serde(default, rename = "pip", skip_serializing_if = "Vec::is_empty")]
    pub pip: Vec<PipLayerLock>,
    #[serde(default, rename = "conda", skip_serializing_if = "Vec::is_empty")]
    pub conda: Vec<CondaLayerLock>,
}

/// A `conda` layer's packages, keyed like a Debian layer's, with the conda subdir as the
/// architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondaLayerLock {
    pub target: String,
    pub layer: usize,
    pub subdir: String,
    /// sha256 of the layer's spec, subdir and assumed virtual packages.
    pub inputs: String,
    pub packages: Vec<LockedConda>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipLayerLock {
    pub target: String,
    pub layer: usize,
    /// The image platform (`linux/amd64`): wheels differ per platform.
    pub platform: String,
    /// sha256 of the layer's requirements, the image's Python and what is installed below.
    pub inputs: String,
    pub packages: Vec<crate::source::pip::LockedWheel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebianLayerLock {
    pub target: String,
    pub layer: usize,
    pub arch: String,
    /// sha256 of the layer's spec and the dpkg status below it.
    pub inputs: String,
    pub packages: Vec<LockedDeb>,
}

impl Lockfile {
    pub fn path(project_root: &Path) -> PathBuf {
        project_root.join(LOCK_FILE)
    }

    /// The lock file of a project, empty when there is none yet.
    pub fn load(path: &Path) -> Result<Lockfile, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lockfile {
                    version: FORMAT_VERSION,
                    ..Default::default()
                });
            }
            Err(source) => {
                return Err(LockError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let lock: Lockfile = toml::from_str(&text).map_err(|e| LockError::Invalid {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
        if lock.version != FORMAT_VERSION {
            return Err(LockError::Invalid {
                path: path.to_owned(),
                message: format!("format version {} is not {FORMAT_VERSION}", lock.version),
            });
        }
        Ok(lock)
    }

    pub fn debian(
        &self,
        target: &str,
        layer: usize,
        arch: &str,
        inputs: &str,
    ) -> Option<&[LockedDeb]> {
        self.debian
            .iter()
            .find(|l| {
                l.target == target && l.layer == layer && l.arch == arch && l.inputs == inputs
            })
            .map(|l| l.packages.as_slice())
    }

    /// Records a layer's packages, replacing what was pinned for the same layer before.
    pub fn record_debian(&mut self, entry: DebianLayerLock) {
        self.debian.retain(|l| {
            !(l.target == entry.target && l.layer == entry.layer && l.arch == entry.arch)
        });
        self.debian.push(entry);
        self.debian
            .sort_by(|a, b| (&a.target, a.layer, &a.arch).cmp(&(&b.target, b.layer, &b.arch)));
    }

    pub fn pip(
        &self,
        target: &str,
        layer: usize,
        platform: &str,
        inputs: &str,
    ) -> Option<&[crate::source::pip::LockedWheel]> {
        self.pip
            .iter()
            .find(|l| {
                l.target == target
                    && l.layer == layer
                    && l.platform == platform
                    && l.inputs == inputs
            })
            .map(|l| l.packages.as_slice())
    }

    /// Records a pip layer's distributions, replacing what was pinned for it before.
    pub fn record_pip(&mut self, entry: PipLayerLock) {
        self.pip.retain(|l| {
            !(l.target == entry.target && l.layer == entry.layer && l.platform == entry.platform)
        });
        self.pip.push(entry);
        self.pip.sort_by(|a, b| {
            (&a.target, a.layer, &a.platform).cmp(&(&b.target, b.layer, &b.platform))
        });
    }

    pub fn conda(
        &self,
        target: &str,
        layer: usize,
        subdir: &str,
        inputs: &str,
    ) -> Option<&[LockedConda]> {
        self.conda
            .iter()
            .find(|l| {
                l.target == target && l.layer == layer && l.subdir == subdir && l.inputs == inputs
            })
            .map(|l| l.packages.as_slice())
    }

    /// Records a conda layer's packages, replacing what was pinned for the same layer before.
    pub fn record_conda(&mut self, entry: CondaLayerLock) {
        self.conda.retain(|l| {
            !(l.target == entry.target && l.layer == entry.layer && l.subdir == entry.subdir)
        });
        self.conda.push(entry);
        self.conda
            .sort_by(|a, b| (&a.target, a.layer, &a.subdir).cmp(&(&b.target, b.layer, &b.subdir)));
    }

    /// Writes the layers this lock pins differently from `loaded` (the file as this run read
    /// it) into the file at `path` as it is now, under a lock on its directory: two builds
    /// saving at once each keep the layers the other pinned.
    pub fn save_changes(&self, loaded: &Lockfile, path: &Path) -> Result<(), LockError> {
        let write_err = |source| LockError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let _guard = crate::fsutil::DirLock::acquire(dir).map_err(write_err)?;
        let mut current = Lockfile::load(path)?;
        for entry in self.debian.iter().filter(|e| !loaded.debian.contains(e)) {
            current.record_debian(entry.clone());
        }
        for entry in self.pip.iter().filter(|e| !loaded.pip.contains(e)) {
            current.record_pip(entry.clone());
        }
        for entry in self.conda.iter().filter(|e| !loaded.conda.contains(e)) {
            current.record_conda(entry.clone());
        }
        current.save(path)
    }

    /// Writes the lock file (to a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), LockError> {
        let write_err = |source| LockError::Write {
            path: path.to_owned(),
            source,
        };
        let text = format!(
            "# Written by oci-build: the packages each layer installs, pinned by SHA256.\n# Refresh with `oci-build lock`.\n\n{}",
            toml::to_string(self).expect("lock files serialise")
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
        std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(write_err)?;
        crate::layer::cache::publish_mode(&temp).map_err(write_err)?;
        temp.persist(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces_a_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipes/recipes.lock");
        let mut lock = Lockfile::load(&path).unwrap();
        let deb = LockedDeb {
            name: "python3".into(),
            version: "3.11.2-1+b1".into(),
            architecture: "amd64".into(),
            multi_arch: Some("allowed".into()),
            filename: "pool/main/p/python3/python3_3.11.2-1+b1_amd64.deb".into(),
            size: 26_000,
            sha256: crate::digest::Digest::from_hex(&"ab".repeat(32)).unwrap(),
        };
        let entry = |inputs: &str| DebianLayerLock {
            target: "python-3.11".into(),
            layer: 2,
            arch: "amd64".into(),
            inputs: inputs.into(),
            packages: vec![deb.clone()],
        };
        lock.record_debian(entry("one"));
        lock.record_debian(entry("two"));
        lock.save(&path).unwrap();
        let back = Lockfile::load(&path).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.debian.len(), 1);
        assert!(back.debian("python-3.11", 2, "amd64", "one").is_none());
        assert_eq!(
            back.debian("python-3.11", 2, "amd64", "two").unwrap(),
            [deb]
        );
    }

    /// Two builds of one project that pin different layers and save one after the other, each
    /// from what it loaded at its start: the file keeps both, and a layer both changed has the
    /// later one's pins.
    #[test]
    fn concurrent_saves_keep_each_others_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipes/recipes.lock");
        let entry = |target: &str, inputs: &str| PipLayerLock {
            target: target.into(),
            layer: 1,
            platform: "linux/amd64".into(),
            inputs: inputs.into(),
            packages: Vec::new(),
        };
        let mut start = Lockfile::load(&path).unwrap();
        start.record_pip(entry("shared", "old"));
        start.save(&path).unwrap();

        let loaded_a = Lockfile::load(&path).unwrap();
        let loaded_b = Lockfile::load(&path).unwrap();
        let mut a = loaded_a.clone();
        a.record_pip(entry("api", "a"));
        let mut b = loaded_b.clone();
        b.record_pip(entry("jupyter", "b"));
        b.record_pip(entry("shared", "new"));
        b.save_changes(&loaded_b, &path).unwrap();
        a.save_changes(&loaded_a, &path).unwrap();

        let back = Lockfile::load(&path).unwrap();
        for (target, inputs) in [("api", "a"), ("jupyter", "b"), ("shared", "new")] {
            assert!(
                back.pip(target, 1, "linux/amd64", inputs).is_some(),
                "{target} lost: {back:?}"
            );
        }
    }

    #[test]
    fn a_damaged_lock_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipes.lock");
        std::fs::write(&path, "version = 1\n[[debian]]\ntarget = 3\n").unwrap();
        let error = Lockfile::load(&path).unwrap_err().to_string();
        assert!(
            error.ends_with("delete it and run `oci-build lock`"),
            "{error}"
        );
    }
}
