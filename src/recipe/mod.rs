//! Recipes: the TOML files of a project, their variables, variants and `from` chains.
//!
//! A project directory holds `recipes/*.toml` (each a build target, plus `<name>-<variant>`
//! for each `[variants.NAME]`), `layers/*.toml` (reusable bases, same format, not targets) and
//! optionally `recipes/_vars.toml` (variable defaults shared by every recipe).
//!
//! Variables: `${NAME}` in any string is replaced by the variable's value: the environment
//! variable NAME if set, else the variant's, the recipe's or the shared default. `$${` writes
//! a literal `${`; a lone `$` (as in `$PATH`) is left alone. This module does no image work:
//! it turns files into checked [`Recipe`] values.

pub mod schema;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::image::spec::Platform;
use crate::layer::ImagePath;
use crate::reference::Reference;
use crate::source::LockedSpec;
use crate::source::locked::SpecContext;
use crate::transport::Transport;
use schema::VariantSpec;
pub use schema::{ConfigSpec, FileCopySpec, LayerSpec, RecipeFile};
// A checked layer is what sources read, so sources define it; recipes build it.
pub use crate::source::spec::{FileCopy, Layer, LayerSource};

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read `{file}`")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no target `{name}` in `{dir}` (targets: {available})")]
    UnknownTarget {
        name: String,
        dir: PathBuf,
        available: String,
    },
    #[error(
        "`{dir}` has no recipes/ directory with *.toml recipes; pass the project directory with -C"
    )]
    NoRecipes { dir: PathBuf },
    #[error("recipes form a cycle: {0}")]
    Cycle(String),
    #[error("{target} ({file}) needs {variable}: {why}")]
    NeedsVariable {
        target: String,
        file: PathBuf,
        variable: String,
        why: String,
    },
}

/// Where a recipe's image starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseRef {
    Scratch,
    /// `oci:DIR[:TAG]`, DIR relative to the project directory.
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// Another recipe target or a layers/ definition, by name.
    Definition(String),
    /// An image in a registry: `docker://REF`, or a plain reference such as `python:3.11`.
    Registry(Reference),
}

/// A recipe with variables substituted and every value checked.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub target: String,
    pub file: PathBuf,
    pub reference: Reference,
    pub description: Option<String>,
    pub from: BaseRef,
    /// None: inherit from the base, else the host's platform.
    pub platforms: Option<Vec<Platform>>,
    pub layers: Vec<Layer>,
    pub config: ConfigSpec,
    pub annotations: BTreeMap<String, String>,
    /// The first `[requires]` variable that is empty, with the recipe's reason.
    unmet: Option<(String, String)>,
}

impl Recipe {
    /// Fails, naming the variable and why the recipe needs it, when a variable of its
    /// `[requires]` table is empty: the target cannot be built or locked without it.
    pub fn check_requires(&self) -> Result<(), RecipeError> {
        match &self.unmet {
            None => Ok(()),
            Some((variable, why)) => Err(RecipeError::NeedsVariable {
                target: self.target.clone(),
                file: self.file.clone(),
                variable: variable.clone(),
                why: why.clone(),
            }),
        }
    }
}

struct Definition {
    file: PathBuf,
    variant: Option<String>,
}

/// The recipes of one project directory.
pub struct Project {
    root: PathBuf,
    targets: BTreeMap<String, Definition>,
    layer_defs: BTreeMap<String, Definition>,
    shared_vars: BTreeMap<String, String>,
    /// `[project] resolve_namespaces` of `recipes/_vars.toml`: namespaces whose short names
    /// `oci-build resolve` maps to the project's own images, besides the images' own.
    resolve_namespaces: Vec<String>,
    /// `[project] contexts`: variables naming directories outside the project that `files`
    /// layers and local pip projects may read, as a build context on the command line is.
    context_vars: Vec<String>,
}

/// `[project]` of `recipes/_vars.toml`: what the project says of itself.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectTable {
    #[serde(default)]
    resolve_namespaces: Vec<String>,
    #[serde(default)]
    contexts: Vec<String>,
}

/// A `[vars]` default of `recipes/_vars.toml`: a string, or a table whose `default` gives way
/// to the current directory when that directory holds `cwd_with` (oci-build run in the root
/// of a source checkout takes that checkout).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum SharedVar {
    Plain(String),
    Detected(DetectedVar),
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectedVar {
    default: String,
    cwd_with: String,
}

impl SharedVar {
    fn value(self) -> String {
        match self {
            SharedVar::Plain(value) => value,
            SharedVar::Detected(var) => {
                let marker = Path::new(&var.cwd_with);
                let cwd = std::env::current_dir().ok();
                match cwd {
                    Some(cwd) if marker.is_relative() && cwd.join(marker).exists() => {
                        cwd.display().to_string()
                    }
                    _ => var.default,
                }
            }
        }
    }
}

impl Project {
    /// Reads the project at `root`. Variables are overridden from the process environment
    /// when a recipe is loaded.
    pub fn open(root: &Path) -> Result<Project, RecipeError> {
        let root = fs::canonicalize(root).map_err(|source| RecipeError::Io {
            file: root.to_owned(),
            source,
        })?;
        let recipe_files = toml_files(&root.join("recipes"));
        if recipe_files.is_empty() {
            return Err(RecipeError::NoRecipes { dir: root });
        }
        let mut project = Project {
            root: root.clone(),
            targets: BTreeMap::new(),
            layer_defs: BTreeMap::new(),
            shared_vars: BTreeMap::new(),
            resolve_namespaces: Vec::new(),
            context_vars: Vec::new(),
        };
        let shared = root.join("recipes/_vars.toml");
        if shared.is_file() {
            let text = project.read(&shared)?;
            let table: toml::Table = parse_toml(&project.display(&shared), &text)?;
            for (key, value) in table {
                if key == "project" {
                    let table: ProjectTable = value.try_into().map_err(|e: toml::de::Error| {
                        project.invalid(&shared, &text, "[project]", e.message().to_owned())
                    })?;
                    project.resolve_namespaces = table.resolve_namespaces;
                    project.context_vars = table.contexts;
                    continue;
                }
                if key != "vars" {
                    return Err(project.invalid(
                        &shared,
                        &text,
                        &key,
                        format!("unknown key `{key}`; this file holds only [vars] and [project]"),
                    ));
                }
                let vars: BTreeMap<String, SharedVar> = value.try_into().map_err(|_| {
                    project.invalid(
                        &shared,
                        &text,
                        "[vars]",
                        "[vars] must map names to strings or to `{ default = \"…\", cwd_with = \"path\" }`"
                            .to_owned(),
                    )
                })?;
                project.shared_vars = vars
                    .into_iter()
                    .map(|(name, var)| (name, var.value()))
                    .collect();
            }
        }
        // layers/ definitions have variants too (`mlrun-runtime-py39`), but are not targets.
        for (stem, file) in toml_files(&root.join("layers")) {
            let text = project.read(&file)?;
            let parsed: RecipeFile = parse_toml(&project.display(&file), &text)?;
            for variant in parsed.variants.keys() {
                project.layer_defs.insert(
                    format!("{stem}-{variant}"),
                    Definition {
                        file: file.clone(),
                        variant: Some(variant.clone()),
                    },
                );
            }
            project.layer_defs.insert(
                stem,
                Definition {
                    file,
                    variant: None,
                },
            );
        }
        for (stem, file) in recipe_files {
            if stem.starts_with('_') {
                continue;
            }
            let text = project.read(&file)?;
            let parsed: RecipeFile = parse_toml(&project.display(&file), &text)?;
            let name = parsed.name.clone().unwrap_or(stem);
            for variant in parsed.variants.keys() {
                project.targets.insert(
                    format!("{name}-{variant}"),
                    Definition {
                        file: file.clone(),
                        variant: Some(variant.clone()),
                    },
                );
            }
            project.targets.insert(
                name,
                Definition {
                    file,
                    variant: None,
                },
            );
        }
        Ok(project)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The namespaces `oci-build resolve` maps to the project's images, besides their own.
    pub fn resolve_namespaces(&self) -> &[String] {
        &self.resolve_namespaces
    }

    pub fn target_names(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }

    fn read(&self, file: &Path) -> Result<String, RecipeError> {
        fs::read_to_string(file).map_err(|source| RecipeError::Io {
            file: self.display(file),
            source,
        })
    }

    /// `file` relative to the project directory, for messages.
    fn display(&self, file: &Path) -> PathBuf {
        file.strip_prefix(&self.root).unwrap_or(file).to_owned()
    }

    fn invalid(&self, file: &Path, text: &str, needle: &str, message: String) -> RecipeError {
        RecipeError::Invalid {
            file: self.display(file),
            line: line_of(text, needle),
            message,
        }
    }

    /// Loads a target (`mlrun`, `base-legacy`) or a layers/ definition by name.
    pub fn load(&self, name: &str) -> Result<Recipe, RecipeError> {
        if let Some(def) = self.targets.get(name) {
            return self.load_file(name, &def.file, def.variant.as_deref());
        }
        if let Some(def) = self.layer_defs.get(name) {
            return self.load_file(name, &def.file, def.variant.as_deref());
        }
        Err(RecipeError::UnknownTarget {
            name: name.to_owned(),
            dir: self.root.clone(),
            available: self.target_names().join(", "),
        })
    }

    /// Whether `name` is something `from` can refer to.
    pub fn has_definition(&self, name: &str) -> bool {
        self.targets.contains_key(name) || self.layer_defs.contains_key(name)
    }

    fn load_file(
        &self,
        target: &str,
        file: &Path,
        variant: Option<&str>,
    ) -> Result<Recipe, RecipeError> {
        let shown = self.display(file);
        let text = self.read(file)?;
        let raw: RecipeFile = parse_toml(&shown, &text)?;
        let variant_spec = variant.map(|v| raw.variants[v].clone()).unwrap_or_default();
        let vars = self.vars(&raw, &variant_spec);
        let recipe = substituted(&shown, &text, &vars)?;

        let invalid = |needle: &str, message: String| self.invalid(file, &text, needle, message);
        let reference = image_reference(
            recipe
                .image
                .clone()
                .unwrap_or_else(|| format!("{target}:latest")),
            variant_spec.tag_suffix.or(recipe.tag_suffix.clone()),
            &invalid,
        )?;
        let from = self.base_ref(variant_spec.from.or(recipe.from.clone()), &invalid)?;
        let platforms = checked_platforms(
            variant_spec.platforms.or(recipe.platforms.clone()),
            &invalid,
        )?;

        let unmet = raw
            .requires
            .iter()
            .find(|(name, _)| vars.get(*name).is_none_or(|v| v.trim().is_empty()))
            .map(|(name, why)| (name.clone(), why.clone()));
        let roots = self.readable_roots(&vars);
        let mut layers = Vec::new();
        for (index, spec) in recipe.layers.iter().enumerate() {
            let off = spec
                .when
                .as_deref()
                .is_some_and(|w| matches!(w.trim(), "" | "false" | "0"));
            // A recipe that cannot be built without a variable is not checked further
            // without it: `check_requires` says what is missing instead.
            if !off && unmet.is_none() {
                layers.push(self.check_layer(index, spec, &roots, &invalid)?);
            }
        }
        check_config(&recipe.config, &invalid)?;

        Ok(Recipe {
            target: target.to_owned(),
            file: shown,
            reference,
            description: recipe.description,
            from,
            platforms,
            layers,
            config: recipe.config,
            annotations: recipe.annotations,
            unmet,
        })
    }

    /// The directories a recipe may read local files from: the project's own, and those the
    /// `[project] contexts` variables name (relative values from the project directory).
    fn readable_roots(&self, vars: &BTreeMap<String, String>) -> Vec<PathBuf> {
        let mut roots = vec![self.root.clone()];
        for name in &self.context_vars {
            if let Some(value) = vars.get(name).filter(|v| !v.trim().is_empty())
                && let Ok(dir) = fs::canonicalize(self.root.join(value))
            {
                roots.push(dir);
            }
        }
        roots
    }

    /// The recipe's variables: the project's shared ones, the file's, the variant's, each set
    /// in the environment taken from there, then defaults naming another variable expanded.
    fn vars(&self, raw: &RecipeFile, variant: &VariantSpec) -> BTreeMap<String, String> {
        let mut vars = self.shared_vars.clone();
        vars.extend(raw.vars.clone());
        vars.extend(variant.vars.clone());
        for (name, value) in vars.iter_mut() {
            if let Ok(from_env) = std::env::var(name) {
                *value = from_env;
            }
        }
        // A default may name another variable (`MLRUN_PIN = "${MLRUN_VERSION}"`): one level.
        let snapshot = vars.clone();
        for value in vars.values_mut() {
            if value.contains("${")
                && let Ok(expanded) = expand(value, &snapshot)
            {
                *value = expanded;
            }
        }
        vars
    }

    /// What `from` names: scratch, an OCI layout, a definition of the project or a registry
    /// image.
    fn base_ref(
        &self,
        from: Option<String>,
        invalid: &dyn Fn(&str, String) -> RecipeError,
    ) -> Result<BaseRef, RecipeError> {
        Ok(match from.as_deref() {
            None | Some("scratch") => BaseRef::Scratch,
            Some(spec) if spec.starts_with("oci:") => match spec.parse::<Transport>() {
                Ok(Transport::Oci { dir, name }) => BaseRef::Layout {
                    dir: self.root.join(dir),
                    tag: name,
                },
                _ => {
                    return Err(invalid(
                        spec,
                        format!("`from = \"{spec}\"` is not oci:DIR[:REF]"),
                    ));
                }
            },
            Some(name) if self.has_definition(name) => BaseRef::Definition(name.to_owned()),
            Some(spec) if spec.starts_with("docker://") || spec.contains(['/', ':', '@']) => {
                let reference = spec.strip_prefix("docker://").unwrap_or(spec);
                BaseRef::Registry(reference.parse().map_err(
                    |e: crate::reference::ReferenceError| {
                        invalid(spec, format!("`from = \"{spec}\"`: {e}"))
                    },
                )?)
            }
            Some(other) => {
                let mut known: Vec<&str> = self.targets.keys().map(String::as_str).collect();
                known.extend(self.layer_defs.keys().map(String::as_str));
                return Err(invalid(
                    "from",
                    format!(
                        "`from = \"{other}\"` names no recipe or layers/ definition (known: {}); use `scratch`, `oci:DIR[:REF]` or `docker://REF` for other bases",
                        known.join(", ")
                    ),
                ));
            }
        })
    }

    fn check_layer(
        &self,
        index: usize,
        spec: &LayerSpec,
        roots: &[PathBuf],
        invalid: &dyn Fn(&str, String) -> RecipeError,
    ) -> Result<Layer, RecipeError> {
        let remove = spec
            .remove
            .iter()
            .map(|p| ImagePath::new(p).map_err(|e| invalid(p, format!("in `remove`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let replace = spec
            .replace
            .iter()
            .map(|p| ImagePath::new(p).map_err(|e| invalid(p, format!("in `replace`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let given: Vec<&str> = spec
            .files
            .as_ref()
            .map(|_| "files")
            .into_iter()
            .chain(spec.locked.iter().map(LockedSpec::key))
            .chain(spec.accounts.as_ref().map(|_| "accounts"))
            .collect();
        if given.len() > 1 {
            return Err(invalid(
                "[[layer]]",
                format!(
                    "layer {} has both `{}` and `{}`; give each its own layer",
                    index + 1,
                    given[0],
                    given[1]
                ),
            ));
        }
        let source = if let Some(locked) = spec.locked.first() {
            let context = SpecContext {
                layer: index + 1,
                root: &self.root,
            };
            let checked = locked
                .check(&context)
                .map_err(|problem| invalid(&problem.found, problem.message))?;
            LayerSource::Locked(Box::new(checked))
        } else if let Some(accounts) = &spec.accounts {
            LayerSource::Accounts(accounts.clone())
        } else if let Some(copies) = &spec.files {
            let mut checked = Vec::new();
            for copy in copies {
                checked.push(self.check_copy(copy, roots, invalid)?);
            }
            LayerSource::Files(checked)
        } else if !remove.is_empty() || !replace.is_empty() {
            LayerSource::Nothing
        } else {
            let keys: Vec<String> = ["files"]
                .into_iter()
                .chain(crate::source::kinds::KEYS.iter().copied())
                .chain(["accounts"])
                .map(|key| format!("`{key}`"))
                .collect();
            return Err(invalid(
                "[[layer]]",
                format!(
                    "layer {} has no content: give it {}, `remove` or `replace`",
                    index + 1,
                    keys.join(", ")
                ),
            ));
        };
        Ok(Layer {
            comment: spec.comment.clone(),
            source,
            remove,
            replace,
        })
    }

    /// `src` of a copy as an absolute path under one of `roots`.
    fn check_src(
        &self,
        src: &str,
        roots: &[PathBuf],
        invalid: &dyn Fn(&str, String) -> RecipeError,
    ) -> Result<PathBuf, RecipeError> {
        let found = fs::canonicalize(self.root.join(src)).map_err(|_| {
            invalid(
                src,
                format!(
                    "`src = \"{src}\"` does not exist (paths are relative to the project directory `{}`)",
                    self.root.display()
                ),
            )
        })?;
        if roots.iter().any(|root| found.starts_with(root)) {
            return Ok(found);
        }
        let contexts = if self.context_vars.is_empty() {
            String::new()
        } else {
            format!(
                " and the directories its variables {} name",
                self.context_vars.join(", ")
            )
        };
        Err(invalid(
            src,
            format!(
                "`src = \"{src}\"` leads outside the project directory `{}`{contexts}",
                self.root.display()
            ),
        ))
    }

    fn check_copy(
        &self,
        copy: &FileCopySpec,
        roots: &[PathBuf],
        invalid: &dyn Fn(&str, String) -> RecipeError,
    ) -> Result<FileCopy, RecipeError> {
        let platform = copy
            .platform
            .as_ref()
            .map(|p| {
                p.parse::<Platform>()
                    .map_err(|e| invalid(p, format!("`platform = \"{p}\"`: {e}")))
            })
            .transpose()?;
        let mut missing = false;
        let src = match &copy.src {
            // A platform's own file may be absent until that platform is built; it must then
            // exist, and it is never read unless it existed here, where it is checked.
            Some(src) if platform.is_some() && !self.root.join(src).exists() => {
                missing = true;
                Some(self.root.join(src))
            }
            Some(src) => Some(self.check_src(src, roots, invalid)?),
            None => None,
        };
        if !copy.dest.starts_with('/') {
            return Err(invalid(
                &copy.dest,
                format!(
                    "`dest = \"{}\"` must be an absolute path in the image",
                    copy.dest
                ),
            ));
        }
        if copy.dest.split('/').any(|part| part == "..") {
            return Err(invalid(
                &copy.dest,
                format!("`dest = \"{}\"` climbs out with `..`", copy.dest),
            ));
        }
        let mode = |field: &str, value: &Option<String>| -> Result<Option<u32>, RecipeError> {
            value
                .as_ref()
                .map(|m| {
                    u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| {
                            invalid(
                                m,
                                format!("`{field} = \"{m}\"` is not an octal mode like \"0644\""),
                            )
                        })
                })
                .transpose()
        };
        Ok(FileCopy {
            src,
            src_display: copy.src.clone().unwrap_or_default(),
            dest: copy.dest.clone(),
            mode: mode("mode", &copy.mode)?,
            dir_mode: mode("dir_mode", &copy.dir_mode)?,
            uid: copy.uid,
            gid: copy.gid,
            platform,
            missing,
        })
    }
}

/// `*.toml` files of a directory by file stem, sorted.
fn toml_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                out.insert(stem.to_owned(), path);
            }
        }
    }
    out
}

/// The recipe with its variables substituted in the parsed tree, then read again as a recipe:
/// the first parse has already reported syntax and schema errors with their positions.
fn substituted(
    shown: &Path,
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<RecipeFile, RecipeError> {
    let mut tree: toml::Value = toml::from_str(text).expect("parsed above");
    substitute(&mut tree, vars).map_err(|name| RecipeError::Invalid {
        file: shown.to_owned(),
        line: line_of(text, &format!("${{{name}}}")),
        message: format!(
            "unknown variable `{name}`; define it under [vars] or in recipes/_vars.toml"
        ),
    })?;
    tree.try_into()
        .map_err(|e: toml::de::Error| RecipeError::Invalid {
            file: shown.to_owned(),
            line: 0,
            message: e.message().to_owned(),
        })
}

/// The image the recipe is named and tagged as, its tag suffixed by the variant's or recipe's
/// `tag_suffix`.
fn image_reference(
    image: String,
    tag_suffix: Option<String>,
    invalid: &dyn Fn(&str, String) -> RecipeError,
) -> Result<Reference, RecipeError> {
    let mut reference: Reference = image
        .parse()
        .map_err(|e: crate::reference::ReferenceError| invalid("image", e.to_string()))?;
    if let Some(suffix) = tag_suffix {
        let tag = format!("{}{suffix}", reference.tag_or_latest());
        reference.tag = Some(tag);
    }
    Ok(reference)
}

fn checked_platforms(
    platforms: Option<Vec<String>>,
    invalid: &dyn Fn(&str, String) -> RecipeError,
) -> Result<Option<Vec<Platform>>, RecipeError> {
    let platforms = platforms
        .map(|list| {
            list.iter()
                .map(|p| p.parse::<Platform>().map_err(|e| invalid(p, e.to_string())))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if platforms.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid(
            "platforms",
            "`platforms` is empty; name at least one, like \"linux/amd64\"".to_owned(),
        ));
    }
    Ok(platforms)
}

/// Ports are PORT or PORT/tcp|udp|sctp; environment variable names non-empty without `=`.
fn check_config(
    config: &ConfigSpec,
    invalid: &dyn Fn(&str, String) -> RecipeError,
) -> Result<(), RecipeError> {
    for port in &config.ports {
        let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        if number.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(invalid(
                port,
                format!("port `{port}` is not PORT or PORT/tcp|udp|sctp"),
            ));
        }
    }
    for key in config.env.keys() {
        if key.is_empty() || key.contains('=') {
            return Err(invalid(
                key,
                format!("environment variable name `{key}` is empty or contains `=`"),
            ));
        }
    }
    Ok(())
}

fn parse_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, RecipeError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((0, 0));
        RecipeError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: e.message().trim_end().replace('\n', " "),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The line of the first occurrence of `needle`, for messages about values (1 if not found).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(1, |offset| line_col(text, offset).0)
}

/// Replaces `${NAME}` in every string of `value`; returns the first unknown name.
fn substitute(value: &mut toml::Value, vars: &BTreeMap<String, String>) -> Result<(), String> {
    match value {
        toml::Value::String(s) => *s = expand(s, vars)?,
        toml::Value::Array(items) => {
            for item in items {
                substitute(item, vars)?;
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                substitute(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The value of `NAME`, or of `NAME:pep440`: the value where it is a PEP 440 version, else
/// `0.0.0+` and the value as a local version label (`unstable` → `0.0.0+unstable`), the
/// version MLRun's build gives a source tree for a tag that is not a release.
fn expand_one(name: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    match name.split_once(':') {
        None => vars.get(name).cloned(),
        Some((var, "pep440")) => {
            let value = vars.get(var)?;
            if value.parse::<pep440_rs::Version>().is_ok() {
                return Some(value.clone());
            }
            let label: String = value
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
                .collect();
            let label = label.trim_matches('.');
            Some(if label.is_empty() {
                "0.0.0".to_owned()
            } else {
                format!("0.0.0+{label}")
            })
        }
        Some(_) => None,
    }
}

fn expand(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let name = &body[..end];
            out.push_str(&expand_one(name, vars).ok_or_else(|| name.to_owned())?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_keeps_lone_dollars() {
        let vars = BTreeMap::from([("V".to_owned(), "1.0".to_owned())]);
        assert_eq!(
            expand("a:${V}-$PATH-$${V}", &vars).unwrap(),
            "a:1.0-$PATH-${V}"
        );
        assert_eq!(expand("${NOPE}", &vars).unwrap_err(), "NOPE");
    }

    #[test]
    fn pep440_keeps_versions_and_makes_tags_local_labels() {
        let vars = |v: &str| BTreeMap::from([("V".to_owned(), v.to_owned())]);
        let as_version = |v: &str| expand("${V:pep440}", &vars(v)).unwrap();
        assert_eq!(as_version("1.12.1"), "1.12.1");
        assert_eq!(as_version("1.12.1-rc3"), "1.12.1-rc3");
        assert_eq!(as_version("unstable"), "0.0.0+unstable");
        assert_eq!(as_version("feature/x y"), "0.0.0+feature.x.y");
        assert_eq!(as_version("--"), "0.0.0");
        assert_eq!(
            expand("${V:upper}", &vars("1")).unwrap_err(),
            "V:upper",
            "an unknown filter is not silently dropped"
        );
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }
}

/// How `oci-build resolve` names a user's image reference, given the images the project's
/// targets build (named by the current variables) and the namespaces whose short names mean
/// them: a reference to one of them by its familiar short name (`mlrun/mlrun`,
/// `mlrun/ml-models`: a Docker Hub name in one of `namespaces`), with no tag, becomes the target's
/// full reference (registry prefix, repository and tag with its suffix); with a tag or a digest
/// it keeps them and gets only the registry and repository. Anything else is returned as given.
pub fn resolve_image(
    input: &str,
    family: &[Reference],
    namespaces: &[String],
) -> Result<String, crate::reference::ReferenceError> {
    let parsed: Reference = input.parse()?;
    let (namespace, name) = parsed
        .repository
        .rsplit_once('/')
        .unwrap_or(("", parsed.repository.as_str()));
    let short_form = parsed.registry == "docker.io"
        && !input.starts_with("docker.io/")
        && namespaces.iter().any(|n| n == namespace);
    let found = family
        .iter()
        .find(|r| r.repository.rsplit('/').next() == Some(name));
    let Some(target) = found.filter(|_| short_form) else {
        return Ok(input.to_owned());
    };
    if parsed.tag.is_none() && parsed.digest.is_none() {
        return Ok(target.familiar());
    }
    let name = target.familiar();
    let name = name
        .rsplit_once(':')
        .map_or(name.as_str(), |(name, _)| name)
        .to_owned();
    let mut out = name;
    if let Some(tag) = &parsed.tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = &parsed.digest {
        out.push('@');
        out.push_str(&digest.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn family(prefix: &str) -> Vec<Reference> {
        [
            "mlrun/mlrun:0.9.2",
            "mlrun/ml-models:0.9.2",
            "mlrun/ml-base:0.9.2-py39",
        ]
        .iter()
        .map(|r| format!("{prefix}{r}").parse().unwrap())
        .collect()
    }

    #[test]
    fn family_images_get_version_and_prefix_others_stay() {
        let mlrun = ["mlrun".to_owned()];
        let hub = family("");
        assert_eq!(
            resolve_image("mlrun/mlrun", &hub, &mlrun).unwrap(),
            "mlrun/mlrun:0.9.2"
        );
        let site = family("registry.site:5000/");
        assert_eq!(
            resolve_image("mlrun/ml-models", &site, &mlrun).unwrap(),
            "registry.site:5000/mlrun/ml-models:0.9.2"
        );
        // A pinned tag or digest is kept; only the registry moves.
        assert_eq!(
            resolve_image("mlrun/mlrun:1.6.0", &site, &mlrun).unwrap(),
            "registry.site:5000/mlrun/mlrun:1.6.0"
        );
        let digest = format!("mlrun/mlrun@sha256:{}", "a".repeat(64));
        assert_eq!(
            resolve_image(&digest, &site, &mlrun).unwrap(),
            format!("registry.site:5000/{digest}")
        );
        // Third-party references and other namespaces keep what they say.
        assert_eq!(
            resolve_image("python:3.11", &site, &mlrun).unwrap(),
            "python:3.11"
        );
        assert_eq!(
            resolve_image("acme/mlrun", &site, &mlrun).unwrap(),
            "acme/mlrun"
        );
        assert_eq!(
            resolve_image("quay.io/mlrun/mlrun", &site, &mlrun).unwrap(),
            "quay.io/mlrun/mlrun"
        );
    }
}
