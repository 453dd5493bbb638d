//! The recipe file format, as TOML sees it: plain data, except that a `[[layer]]` reads the
//! key of each registered package kind as that kind's spec (`crate::source::kinds`). Loading
//! (variables, variants, `from` chains) and checks are the parent module's.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::source::kinds::{self, LockedSpec};

/// One `recipes/*.toml` or `layers/*.toml` file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    /// Target name; defaults to the file name without `.toml`.
    pub name: Option<String>,
    /// The image reference the target is named and tagged as, e.g.
    /// `"${MLRUN_DOCKER_REGISTRY}${MLRUN_DOCKER_REPO}/mlrun:${MLRUN_VERSION}"`.
    pub image: Option<String>,
    /// Appended to the tag of `image` (variants use it: `-py39`).
    pub tag_suffix: Option<String>,
    pub description: Option<String>,
    /// `scratch`, `oci:DIR[:TAG]`, a recipe target or a layers/ definition.
    pub from: Option<String>,
    pub platforms: Option<Vec<String>>,
    /// Defaults of variables, overridden by environment variables of the same name.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default, rename = "layer")]
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub config: ConfigSpec,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub variants: BTreeMap<String, VariantSpec>,
    /// Variables the target cannot be built without, each with the reason told to a user
    /// who has not set it: `MLRUN_SOURCE_DIR = "MLRun's API server is not in the mlrun package"`.
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
}

/// `[variants.NAME]`: the target `<recipe>-<NAME>` built from the same recipe with changes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub from: Option<String>,
    pub tag_suffix: Option<String>,
    pub platforms: Option<Vec<String>>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// One `[[layer]]`: exactly one source of content, optionally with paths removed from below.
/// Besides the keys here, a layer takes one key per locked package kind (`debian`, `pip`,
/// `conda`: `crate::source::kinds`), read as that kind's spec.
#[derive(Clone, Debug, Default)]
pub struct LayerSpec {
    /// Shown in the image history.
    pub comment: Option<String>,
    /// Local files copied into the image (like COPY --chown --chmod).
    pub files: Option<Vec<FileCopySpec>>,
    /// Packages of a locked kind, by recipe key: `debian = { … }` installs from a Debian
    /// archive as apt and dpkg would, `pip = { … }` from a package index's wheels, `conda = {
    /// … }` solved from channels into a prefix. More than one is refused when checked.
    pub locked: Vec<LockedSpec>,
    /// Users and groups added to the base's /etc/passwd and /etc/group, with their homes.
    pub accounts: Option<Vec<crate::source::accounts::AccountSpec>>,
    /// The layer is left out when this is empty, `false` or `0` (after variables):
    /// `when = "${CONDA_CHANNEL}"` adds a layer only where a channel is configured.
    pub when: Option<String>,
    /// Paths of the layers below to delete (written as OCI whiteouts).
    pub remove: Vec<String>,
    /// Directories whose contents from the layers below are hidden, so that this layer's
    /// entries under them are all they hold (written as OCI opaque whiteouts).
    pub replace: Vec<String>,
}

/// The keys of a `[[layer]]` that are not a locked kind's.
const LAYER_KEYS: &[&str] = &["comment", "files", "accounts", "when", "remove", "replace"];

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(LayerVisitor)
    }
}

struct LayerVisitor;

impl<'de> Visitor<'de> for LayerVisitor {
    type Value = LayerSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [[layer]] table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LayerSpec, A::Error> {
        let mut layer = LayerSpec::default();
        while let Some(key) = map.next_key_seed(LayerKey)? {
            match key.as_str() {
                "comment" => layer.comment = Some(map.next_value()?),
                "files" => layer.files = Some(map.next_value()?),
                "accounts" => layer.accounts = Some(map.next_value()?),
                "when" => layer.when = Some(map.next_value()?),
                "remove" => layer.remove = map.next_value()?,
                "replace" => layer.replace = map.next_value()?,
                kind => layer
                    .locked
                    .push(map.next_value_seed(kinds::SpecSeed(kind))?),
            }
        }
        Ok(layer)
    }
}

/// A key of a `[[layer]]`, refused while it is read so that the error points at the key.
struct LayerKey;

impl<'de> DeserializeSeed<'de> for LayerKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        let key = String::deserialize(deserializer)?;
        if LAYER_KEYS.contains(&key.as_str()) || kinds::KEYS.contains(&key.as_str()) {
            return Ok(key);
        }
        let expected: Vec<&str> = LAYER_KEYS.iter().chain(kinds::KEYS).copied().collect();
        Err(de::Error::custom(format!(
            "unknown field `{key}`, expected one of `{}`",
            expected.join("`, `")
        )))
    }
}

/// One copy: `src` (relative to the project directory) to `dest` in the image; without `src`,
/// an empty directory at `dest`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopySpec {
    pub src: Option<String>,
    pub dest: String,
    /// Octal mode for regular files, e.g. "0644". Default: 0755 if the host file is executable
    /// by anyone, else 0644.
    pub mode: Option<String>,
    /// Octal mode for directories. Default 0755.
    pub dir_mode: Option<String>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Copied only into the image of this platform (`"linux/arm64"`): a binary built for each.
    pub platform: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Directories put in front of the base image's PATH.
    #[serde(default)]
    pub path_prepend: Vec<String>,
    /// Directories put after the base image's PATH.
    #[serde(default)]
    pub path_append: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `"8080"`, `"8080/tcp"` or `"53/udp"`.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}
