//! The lock file, `recipes/recipes.lock`: what builds resolved, pinned so that the next build
//! installs the same packages without reading an index.
//!
//! Each layer of a locked package kind ([`LockedSource`]: Debian, pip, conda) is pinned per
//! target, layer number and the kind's key (architecture, platform or subdir), together with a
//! hash of its inputs (the layer's spec and what it depends on below it). A layer whose inputs
//! changed is resolved again; `oci-build lock` resolves everything again. This module knows
//! the kinds only through that trait and the registered list (`crate::source::kinds`), which
//! [`kinds`] turns into the file's tables.

use std::any::Any;
use std::path::{Path, PathBuf};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use crate::source::LockedSource;
use crate::source::kinds::{KindVisitor, each_kind};

pub(crate) const LOCK_FILE: &str = "recipes/recipes.lock";
const FORMAT_VERSION: u32 = 1;

/// Every locked package kind, in the order the file lists their tables.
fn kinds() -> Vec<Box<dyn Section>> {
    struct Sections(Vec<Box<dyn Section>>);
    impl KindVisitor for Sections {
        fn visit<K: LockedSource>(&mut self) {
            self.0.push(Entries::<K>::empty());
        }
    }
    let mut sections = Sections(Vec::new());
    each_kind(&mut sections);
    sections.0
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock file `{path}` is not valid; delete it and run `oci-build lock`")]
    Invalid {
        path: PathBuf,
        #[source]
        source: InvalidLock,
    },
    #[error("cannot write lock file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong in a lock file's text.
#[derive(Debug, thiserror::Error)]
pub enum InvalidLock {
    /// toml's message alone: its whole display spans lines, quoting the file.
    #[error("{}", .0.message())]
    Toml(toml::de::Error),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("`version` is not a format version")]
    NotAVersion,
    #[error("format version {0} is not {FORMAT_VERSION}")]
    OtherVersion(u32),
    #[error("`{0}` is not an array of tables")]
    NotTables(&'static str),
    #[error("`{0}` is not a string")]
    NotAString(&'static str),
}

/// One layer's pins: `[[SECTION]]` with `target`, `layer`, the kind's key field, `inputs` and
/// `[[SECTION.packages]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerLock<P> {
    pub target: String,
    pub layer: usize,
    /// What the pins were resolved for, written as the kind's [`LockedSource::KEY_FIELD`].
    pub key: String,
    /// sha256 of what the layer's resolution depends on.
    pub inputs: String,
    pub packages: Vec<P>,
}

impl<P> LayerLock<P> {
    fn same_layer(&self, other: &LayerLock<P>) -> bool {
        self.target == other.target && self.layer == other.layer && self.key == other.key
    }
}

/// A [`LayerLock`] as the file writes it: the key under its kind's field name, in the order
/// target, layer, key, inputs, packages.
struct Keyed<'a, S: LockedSource>(&'a LayerLock<S::Pin>);

impl<S: LockedSource> Serialize for Keyed<'_, S> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        let mut table = serializer.serialize_struct("LayerLock", 5)?;
        table.serialize_field("target", &self.0.target)?;
        table.serialize_field("layer", &self.0.layer)?;
        table.serialize_field(S::KEY_FIELD, &self.0.key)?;
        table.serialize_field("inputs", &self.0.inputs)?;
        table.serialize_field("packages", &self.0.packages)?;
        table.end()
    }
}

/// The fields of a [`LayerLock`] but its key, read after the key is taken out of the table.
#[derive(Deserialize)]
struct Unkeyed<P> {
    target: String,
    layer: usize,
    inputs: String,
    packages: Vec<P>,
}

/// One kind's layers, kept apart from the others' types so that the lock file holds any kind.
trait Section: Send + Sync {
    fn name(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn boxed_clone(&self) -> Box<dyn Section>;
    fn same(&self, other: &dyn Section) -> bool;
    fn is_empty(&self) -> bool;
    fn debug(&self) -> String;
    /// Reads the kind's table of a parsed file.
    fn read(&mut self, value: toml::Value) -> Result<(), InvalidLock>;
    /// `[[SECTION]]` tables, as TOML.
    fn write(&self) -> String;
    /// Records into `into` each layer of this section that `loaded` does not have as it is.
    fn record_changes(&self, loaded: &dyn Section, into: &mut dyn Section);
}

struct Entries<S: LockedSource>(Vec<LayerLock<S::Pin>>);

impl<S: LockedSource> Entries<S> {
    fn empty() -> Box<dyn Section> {
        Box::new(Entries::<S>(Vec::new()))
    }

    fn of(section: &dyn Section) -> &[LayerLock<S::Pin>] {
        &section
            .as_any()
            .downcast_ref::<Entries<S>>()
            .expect("sections are found by name")
            .0
    }

    /// Records a layer's pins, replacing what was pinned for the same layer before; sorted by
    /// target, layer and key so that the file does not depend on the order builds ran in.
    fn record(&mut self, entry: LayerLock<S::Pin>) {
        self.0.retain(|l| !l.same_layer(&entry));
        self.0.push(entry);
        self.0
            .sort_by(|a, b| (&a.target, a.layer, &a.key).cmp(&(&b.target, b.layer, &b.key)));
    }
}

impl<S: LockedSource> Section for Entries<S> {
    fn name(&self) -> &'static str {
        S::SECTION
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn boxed_clone(&self) -> Box<dyn Section> {
        Box::new(Entries::<S>(self.0.clone()))
    }
    fn same(&self, other: &dyn Section) -> bool {
        other.name() == S::SECTION && Entries::<S>::of(other) == self.0.as_slice()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn debug(&self) -> String {
        format!("{}: {:?}", S::SECTION, self.0)
    }
    fn read(&mut self, value: toml::Value) -> Result<(), InvalidLock> {
        let toml::Value::Array(items) = value else {
            return Err(InvalidLock::NotTables(S::SECTION));
        };
        for item in items {
            let toml::Value::Table(mut table) = item else {
                return Err(InvalidLock::NotTables(S::SECTION));
            };
            let key = match table.remove(S::KEY_FIELD) {
                Some(toml::Value::String(key)) => key,
                Some(_) => return Err(InvalidLock::NotAString(S::KEY_FIELD)),
                None => return Err(InvalidLock::Missing(S::KEY_FIELD)),
            };
            let rest: Unkeyed<S::Pin> = toml::Value::Table(table)
                .try_into()
                .map_err(InvalidLock::Toml)?;
            self.0.push(LayerLock {
                target: rest.target,
                layer: rest.layer,
                key,
                inputs: rest.inputs,
                packages: rest.packages,
            });
        }
        Ok(())
    }
    fn write(&self) -> String {
        let tables: Vec<Keyed<S>> = self.0.iter().map(Keyed).collect();
        let mut document = std::collections::BTreeMap::new();
        document.insert(S::SECTION, tables);
        toml::to_string(&document).expect("lock files serialise")
    }
    fn record_changes(&self, loaded: &dyn Section, into: &mut dyn Section) {
        let loaded = Entries::<S>::of(loaded);
        let into = into
            .as_any_mut()
            .downcast_mut::<Entries<S>>()
            .expect("sections are found by name");
        for entry in self.0.iter().filter(|e| !loaded.contains(e)) {
            into.record(entry.clone());
        }
    }
}

/// The lock file: its format version and each kind's layers, in the order of [`kinds`].
pub(crate) struct Lockfile {
    pub version: u32,
    sections: Vec<Box<dyn Section>>,
}

impl Clone for Lockfile {
    fn clone(&self) -> Self {
        Lockfile {
            version: self.version,
            sections: self.sections.iter().map(|s| s.boxed_clone()).collect(),
        }
    }
}

impl PartialEq for Lockfile {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.sections.len() == other.sections.len()
            && self
                .sections
                .iter()
                .zip(&other.sections)
                .all(|(a, b)| a.same(b.as_ref()))
    }
}

impl Eq for Lockfile {}

impl std::fmt::Debug for Lockfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sections: Vec<String> = self.sections.iter().map(|s| s.debug()).collect();
        f.debug_struct("Lockfile")
            .field("version", &self.version)
            .field("sections", &sections)
            .finish()
    }
}

impl Lockfile {
    pub(crate) fn path(project_root: &Path) -> PathBuf {
        project_root.join(LOCK_FILE)
    }

    /// A lock file that pins nothing.
    pub(crate) fn empty() -> Lockfile {
        Lockfile {
            version: FORMAT_VERSION,
            sections: kinds(),
        }
    }

    /// The lock file of a project, empty when there is none yet.
    pub(crate) fn load(path: &Path) -> Result<Lockfile, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lockfile::empty()),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |source: InvalidLock| LockError::Invalid {
            path: path.to_owned(),
            source,
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| invalid(InvalidLock::Toml(e)))?;
        let version = match table.remove("version") {
            Some(toml::Value::Integer(v)) => u32::try_from(v).ok(),
            Some(_) => None,
            None => return Err(invalid(InvalidLock::Missing("version"))),
        };
        let Some(version) = version else {
            return Err(invalid(InvalidLock::NotAVersion));
        };
        if version != FORMAT_VERSION {
            return Err(invalid(InvalidLock::OtherVersion(version)));
        }
        let mut lock = Lockfile::empty();
        for section in &mut lock.sections {
            if let Some(value) = table.remove(section.name()) {
                section.read(value).map_err(invalid)?;
            }
        }
        Ok(lock)
    }

    fn entries<S: LockedSource>(&self) -> &[LayerLock<S::Pin>] {
        let section = self
            .sections
            .iter()
            .find(|s| s.name() == S::SECTION)
            .expect("every kind is in `kinds`");
        Entries::<S>::of(section.as_ref())
    }

    /// The pins of a layer of kind `S`, if the file has them for these inputs.
    pub(crate) fn pins<S: LockedSource>(
        &self,
        target: &str,
        layer: usize,
        key: &str,
        inputs: &str,
    ) -> Option<&[S::Pin]> {
        self.entries::<S>()
            .iter()
            .find(|l| l.target == target && l.layer == layer && l.key == key && l.inputs == inputs)
            .map(|l| l.packages.as_slice())
    }

    /// The pins of a layer of kind `S` for lock key `key`, whatever inputs they were
    /// resolved for: what a prefetch fetches ahead of the build, which checks the inputs.
    pub(crate) fn pins_for_key<S: LockedSource>(
        &self,
        target: &str,
        layer: usize,
        key: &str,
    ) -> Option<&[S::Pin]> {
        self.entries::<S>()
            .iter()
            .find(|l| l.target == target && l.layer == layer && l.key == key)
            .map(|l| l.packages.as_slice())
    }

    /// How many layers of kind `S` the file pins.
    #[cfg(test)]
    pub(crate) fn layers<S: LockedSource>(&self) -> usize {
        self.entries::<S>().len()
    }

    /// Records a layer's pins, replacing what was pinned for the same layer before.
    pub(crate) fn record<S: LockedSource>(&mut self, entry: LayerLock<S::Pin>) {
        self.sections
            .iter_mut()
            .find(|s| s.name() == S::SECTION)
            .and_then(|s| s.as_any_mut().downcast_mut::<Entries<S>>())
            .expect("every kind is in `kinds`")
            .record(entry);
    }

    /// Writes the layers this lock pins differently from `loaded` (the file as this run read
    /// it) into the file at `path` as it is now, under a lock on its directory: two builds
    /// saving at once each keep the layers the other pinned.
    pub(crate) fn save_changes(&self, loaded: &Lockfile, path: &Path) -> Result<(), LockError> {
        let write_err = |source| LockError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let _guard = crate::fsutil::DirLock::acquire(dir).map_err(write_err)?;
        let mut current = Lockfile::load(path)?;
        for ((mine, before), now) in self
            .sections
            .iter()
            .zip(&loaded.sections)
            .zip(&mut current.sections)
        {
            mine.record_changes(before.as_ref(), now.as_mut());
        }
        current.save(path)
    }

    /// Writes the lock file (to a temporary file renamed over the old one).
    pub(crate) fn save(&self, path: &Path) -> Result<(), LockError> {
        let write_err = |source| LockError::Write {
            path: path.to_owned(),
            source,
        };
        let text = format!(
            "# Written by oci-build: the packages each layer installs, pinned by SHA256.\n# Refresh with `oci-build lock`.\n\n{}",
            self.to_toml()
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        crate::fsutil::write_atomic(path, text.as_bytes(), crate::fsutil::Publish::PUBLIC)
            .map_err(write_err)
    }

    /// The file's TOML: `version`, then each kind's tables that pin anything, as one
    /// serialisation of all of them would write it (a blank line between tables).
    fn to_toml(&self) -> String {
        let mut text = format!("version = {}\n", self.version);
        for section in self.sections.iter().filter(|s| !s.is_empty()) {
            text.push('\n');
            text.push_str(&section.write());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::debian::{Debian, LockedDeb};
    use crate::source::pip::Pip;

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
        let entry = |inputs: &str| LayerLock {
            target: "python-3.11".into(),
            layer: 2,
            key: "amd64".into(),
            inputs: inputs.into(),
            packages: vec![deb.clone()],
        };
        lock.record::<Debian>(entry("one"));
        lock.record::<Debian>(entry("two"));
        lock.save(&path).unwrap();
        let back = Lockfile::load(&path).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.layers::<Debian>(), 1);
        assert!(
            back.pins::<Debian>("python-3.11", 2, "amd64", "one")
                .is_none()
        );
        assert_eq!(
            back.pins::<Debian>("python-3.11", 2, "amd64", "two")
                .unwrap(),
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
        let entry = |target: &str, inputs: &str| LayerLock {
            target: target.into(),
            layer: 1,
            key: "linux/amd64".into(),
            inputs: inputs.into(),
            packages: Vec::new(),
        };
        let mut start = Lockfile::load(&path).unwrap();
        start.record::<Pip>(entry("shared", "old"));
        start.save(&path).unwrap();

        let loaded_a = Lockfile::load(&path).unwrap();
        let loaded_b = Lockfile::load(&path).unwrap();
        let mut a = loaded_a.clone();
        a.record::<Pip>(entry("api", "a"));
        let mut b = loaded_b.clone();
        b.record::<Pip>(entry("jupyter", "b"));
        b.record::<Pip>(entry("shared", "new"));
        b.save_changes(&loaded_b, &path).unwrap();
        a.save_changes(&loaded_a, &path).unwrap();

        let back = Lockfile::load(&path).unwrap();
        for (target, inputs) in [("api", "a"), ("jupyter", "b"), ("shared", "new")] {
            assert!(
                back.pins::<Pip>(target, 1, "linux/amd64", inputs).is_some(),
                "{target} lost: {back:?}"
            );
        }
    }

    /// Lock storage is generic over the package kinds; the file it writes must not change.
    #[test]
    fn the_committed_lock_file_is_written_back_byte_for_byte() {
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join(LOCK_FILE);
        let lock = Lockfile::load(&committed).unwrap();
        assert!(lock.layers::<Debian>() > 0 && lock.layers::<Pip>() > 0);
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("recipes.lock");
        lock.save(&copy).unwrap();
        assert!(
            std::fs::read(&copy).unwrap() == std::fs::read(&committed).unwrap(),
            "the re-saved lock file differs from {}",
            committed.display()
        );
    }

    #[test]
    fn a_damaged_lock_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipes.lock");
        std::fs::write(&path, "version = 1\n[[debian]]\ntarget = 3\n").unwrap();
        let error = Lockfile::load(&path).unwrap_err();
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        let error = error.to_string();
        assert!(
            error.ends_with("delete it and run `oci-build lock`"),
            "{error}"
        );
        // The cause follows, on the same line.
        let cause = cause.expect("the cause is kept");
        assert!(cause.contains("`arch`") && !cause.contains('\n'), "{cause}");
    }
}
