//! The recipe file format, as TOML sees it. Plain data; loading and checks live in `load`.

use std::collections::BTreeMap;

use serde::Deserialize;

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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Shown in the image history.
    pub comment: Option<String>,
    /// Local files copied into the image (like COPY --chown --chmod).
    pub files: Option<Vec<FileCopySpec>>,
    /// Packages from a Debian archive, installed as apt and dpkg would.
    pub debian: Option<crate::source::debian::DebianSpec>,
    /// Python packages from a package index, installed from wheels.
    pub pip: Option<crate::source::pip::PipSpec>,
    /// Conda packages solved from channels and installed into a prefix, as conda would.
    pub conda: Option<crate::source::conda::CondaSpec>,
    /// Users and groups added to the base's /etc/passwd and /etc/group, with their homes.
    pub accounts: Option<Vec<crate::source::accounts::AccountSpec>>,
    /// The layer is left out when this is empty, `false` or `0` (after variables):
    /// `when = "${CONDA_CHANNEL}"` adds a layer only where a channel is configured.
    pub when: Option<String>,
    /// Paths of the layers below to delete (written as OCI whiteouts).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Directories whose contents from the layers below are hidden, so that this layer's
    /// entries under them are all they hold (written as OCI opaque whiteouts).
    #[serde(default)]
    pub replace: Vec<String>,
}

/// One copy: `src` (relative to the project directory) to `dest` in the image.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopySpec {
    pub src: String,
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
