//! Requirements as pip reads them: recipe lines and requirements files with `-r`/`-c`
//! includes, `--hash` pins, index options and `--only-binary`/`--no-binary`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::collections::BTreeSet;

use pep508_rs::{PackageName, Requirement, VerbatimUrl};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RequirementsError {
    #[error("cannot read requirements file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: `{line}` is not a valid requirement: {message}")]
    Invalid {
        origin: String,
        line: String,
        message: String,
    },
    #[error("{origin}: option `{option}` is not supported by oci-build")]
    Unsupported { origin: String, option: String },
    #[error("{origin}: `{requirement}` {problem}")]
    Direct {
        origin: String,
        requirement: String,
        problem: String,
    },
    #[error("requirements file `{0}` includes itself")]
    Cycle(PathBuf),
}

/// One requirement with the hashes it was pinned to (empty: not pinned).
#[derive(Clone, Debug)]
pub struct Pinned {
    pub requirement: Requirement<VerbatimUrl>,
    pub hashes: Vec<Digest>,
}

/// Everything a set of requirement sources says.
#[derive(Clone, Debug, Default)]
pub struct Requirements {
    pub requirements: Vec<Pinned>,
    pub constraints: Vec<Pinned>,
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<String>,
    pub no_index: bool,
    pub pre: bool,
    /// Which distributions may come from wheels and which from sdists.
    pub formats: FormatControl,
    /// Project directories and direct references (`./app`, `name @ file:///…`,
    /// `name @ https://…#sha256=…`), and the layer's `sources` entries.
    pub(crate) direct: Vec<super::direct::Direct>,
    /// The project directory: recipe lines' relative paths start there, and the lock names
    /// paths inside it relative to it.
    pub root: PathBuf,
}

/// pip's `--only-binary` and `--no-binary`: per package, whether a wheel or an sdist may be
/// used. Each option's value is `:all:`, `:none:` or comma-separated names, applied in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormatControl {
    only_binary: BTreeSet<String>,
    no_binary: BTreeSet<String>,
}

/// What kinds of files one distribution may be installed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub binary: bool,
    pub source: bool,
}

impl Formats {
    pub const ANY: Formats = Formats {
        binary: true,
        source: true,
    };
}

const ALL: &str = ":all:";

impl FormatControl {
    /// `--only-binary VALUE`.
    pub fn add_only_binary(&mut self, value: &str, origin: &str) -> Result<(), RequirementsError> {
        let FormatControl {
            only_binary,
            no_binary,
        } = self;
        apply(value, origin, only_binary, no_binary)
    }

    /// `--no-binary VALUE`.
    pub fn add_no_binary(&mut self, value: &str, origin: &str) -> Result<(), RequirementsError> {
        let FormatControl {
            only_binary,
            no_binary,
        } = self;
        apply(value, origin, no_binary, only_binary)
    }

    /// pip's rule: a name given explicitly wins over `:all:`; `name` is normalised.
    pub fn formats(&self, name: &str) -> Formats {
        const ONLY_BINARY: Formats = Formats {
            binary: true,
            source: false,
        };
        const NO_BINARY: Formats = Formats {
            binary: false,
            source: true,
        };
        if self.only_binary.contains(name) {
            ONLY_BINARY
        } else if self.no_binary.contains(name) {
            NO_BINARY
        } else if self.only_binary.contains(ALL) {
            ONLY_BINARY
        } else if self.no_binary.contains(ALL) {
            NO_BINARY
        } else {
            Formats::ANY
        }
    }

    pub fn is_empty(&self) -> bool {
        self.only_binary.is_empty() && self.no_binary.is_empty()
    }

    /// pip's environment form (`PIP_ONLY_BINARY`, `PIP_NO_BINARY`), empty where unset.
    pub fn env_values(&self) -> (String, String) {
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        (join(&self.only_binary), join(&self.no_binary))
    }
}

/// pip's `handle_mutual_excludes`: `:all:` replaces both sets, `:none:` empties `target`, a
/// name moves from `other` to `target`.
fn apply(
    value: &str,
    origin: &str,
    target: &mut BTreeSet<String>,
    other: &mut BTreeSet<String>,
) -> Result<(), RequirementsError> {
    for item in value.split(',').map(str::trim) {
        match item {
            ALL => {
                other.clear();
                target.clear();
                target.insert(ALL.to_owned());
            }
            ":none:" => target.clear(),
            name => {
                let name = PackageName::from_str(name).map_err(|e| RequirementsError::Invalid {
                    origin: origin.to_owned(),
                    line: value.to_owned(),
                    message: format!("expected `:all:`, `:none:` or package names: {e}"),
                })?;
                other.remove(name.as_ref());
                target.insert(name.as_ref().to_owned());
            }
        }
    }
    Ok(())
}

impl Requirements {
    /// Adds one requirement line written in a recipe.
    pub fn add_line(&mut self, line: &str, origin: &str) -> Result<(), RequirementsError> {
        self.parse_line(line, origin, None, false)
    }

    /// Reads a requirements file (and what it includes).
    pub fn add_file(&mut self, path: &Path) -> Result<(), RequirementsError> {
        self.read_file(path, false, &mut Vec::new())
    }

    fn read_file(
        &mut self,
        path: &Path,
        constraints: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), RequirementsError> {
        // Files are compared as the file system resolves them: `-r sub/../r.txt` in r.txt is
        // r.txt again, and would recurse until the stack overflows.
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if stack.contains(&resolved) {
            return Err(RequirementsError::Cycle(path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| RequirementsError::Read {
            path: path.to_owned(),
            source,
        })?;
        stack.push(resolved);
        let mut number = 0;
        let mut logical = String::new();
        for (index, raw) in text.lines().enumerate() {
            if logical.is_empty() {
                number = index + 1;
            }
            // A trailing backslash joins the next line, as in pip.
            if let Some(joined) = raw.strip_suffix('\\') {
                logical.push_str(joined);
                logical.push(' ');
                continue;
            }
            logical.push_str(raw);
            let line = std::mem::take(&mut logical);
            let origin = format!("{}:{number}", path.display());
            self.parse_file_line(&line, &origin, path, constraints, stack)?;
        }
        if !logical.is_empty() {
            let origin = format!("{}:{number}", path.display());
            self.parse_file_line(&logical, &origin, path, constraints, stack)?;
        }
        stack.pop();
        Ok(())
    }

    fn parse_file_line(
        &mut self,
        line: &str,
        origin: &str,
        file: &Path,
        constraints: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), RequirementsError> {
        self.parse_line(line, origin, Some((file, stack)), constraints)
    }

    fn parse_line(
        &mut self,
        line: &str,
        origin: &str,
        file: Option<(&Path, &mut Vec<PathBuf>)>,
        constraints: bool,
    ) -> Result<(), RequirementsError> {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            return Ok(());
        }
        if line.starts_with('-') {
            let (option, value) = split_option(line);
            let relative = |value: &str| -> PathBuf {
                match &file {
                    Some((file, _)) => file.parent().unwrap_or(Path::new(".")).join(value),
                    None => PathBuf::from(value),
                }
            };
            let needs_value = |value: Option<&str>| {
                value
                    .map(str::to_owned)
                    .ok_or_else(|| RequirementsError::Invalid {
                        origin: origin.to_owned(),
                        line: line.to_owned(),
                        message: format!("`{option}` needs a value"),
                    })
            };
            match option {
                "-r" | "--requirement" | "-c" | "--constraint" => {
                    let value = needs_value(value)?;
                    let included = relative(&value);
                    let as_constraints = constraints || option == "-c" || option == "--constraint";
                    match file {
                        Some((_, stack)) => self.read_file(&included, as_constraints, stack)?,
                        None => self.read_file(&included, as_constraints, &mut Vec::new())?,
                    }
                }
                "-i" | "--index-url" => self.index_url = Some(needs_value(value)?),
                "--extra-index-url" => self.extra_index_urls.push(needs_value(value)?),
                "-f" | "--find-links" => {
                    let value = needs_value(value)?;
                    // A local directory is relative to the file that names it.
                    if value.contains("://") {
                        self.find_links.push(value);
                    } else {
                        self.find_links.push(relative(&value).display().to_string());
                    }
                }
                "--no-index" => self.no_index = true,
                "--pre" => self.pre = true,
                "--only-binary" => self.formats.add_only_binary(&needs_value(value)?, origin)?,
                "--no-binary" => self.formats.add_no_binary(&needs_value(value)?, origin)?,
                // Options that only change how pip itself runs.
                "--prefer-binary" | "--trusted-host" => {}
                _ => {
                    return Err(RequirementsError::Unsupported {
                        origin: origin.to_owned(),
                        option: option.to_owned(),
                    });
                }
            }
            return Ok(());
        }
        let (spec, hashes) = split_hashes(line, origin)?;
        let base = match &file {
            Some((file, _)) => file.parent().unwrap_or(Path::new(".")).to_owned(),
            None => self.root.clone(),
        };
        let refuse = |problem: String| RequirementsError::Direct {
            origin: origin.to_owned(),
            requirement: spec.trim().to_owned(),
            problem,
        };
        if let Some(direct) =
            super::direct::parse(spec.trim(), &hashes, &base, &self.root).map_err(refuse)?
        {
            if constraints {
                return Err(refuse(
                    "is a direct reference, which a constraints file cannot hold".to_owned(),
                ));
            }
            self.direct.push(direct);
            return Ok(());
        }
        let requirement =
            parse_requirement(spec.trim()).map_err(|message| RequirementsError::Invalid {
                origin: origin.to_owned(),
                line: spec.trim().to_owned(),
                message,
            })?;
        let pinned = Pinned {
            requirement,
            hashes,
        };
        if constraints {
            self.constraints.push(pinned);
        } else {
            self.requirements.push(pinned);
        }
        Ok(())
    }
}

/// Parses one PEP 508 requirement. pep508_rs panics on a name or an extra that ends in `.`,
/// `-` or `_` when more text follows it (`numpy. >=1`, `a[b-]`): such names are refused here.
pub(crate) fn parse_requirement(text: &str) -> Result<Requirement<VerbatimUrl>, String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let rest = text.trim_start();
    let name_end = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
    let mut names = vec![&rest[..name_end]];
    if let Some(extras) = rest[name_end..].trim_start().strip_prefix('[') {
        let extras = extras.split(']').next().unwrap_or_default();
        names.extend(extras.split(|c: char| c == ',' || c.is_whitespace()));
    }
    if let Some(name) = names
        .iter()
        .find(|n| n.ends_with(['.', '-', '_']) && n.chars().all(name_char))
    {
        return Err(format!(
            "`{name}` is not a valid name: names end with a letter or digit"
        ));
    }
    Requirement::from_str(text).map_err(|e| e.message.to_string())
}

/// `# comment` ends a line where it starts one or follows whitespace (pip's rule).
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(at) => &line[..at],
        None => line,
    }
}

/// `--index-url=URL`, `--index-url URL`, `-iURL`.
fn split_option(line: &str) -> (&str, Option<&str>) {
    if let Some((option, value)) = line.split_once('=')
        && option.starts_with("--")
        && !option.contains(char::is_whitespace)
    {
        return (option, Some(value.trim()));
    }
    match line.split_once(char::is_whitespace) {
        Some((option, value)) => (option, Some(value.trim())),
        None => (line, None),
    }
}

/// Splits `name==1.0 --hash=sha256:abc --hash=sha256:def` into the requirement and its hashes.
fn split_hashes(line: &str, origin: &str) -> Result<(String, Vec<Digest>), RequirementsError> {
    let Some(at) = line.find("--hash") else {
        return Ok((line.to_owned(), Vec::new()));
    };
    let mut hashes = Vec::new();
    let rest = line[at..].replace("--hash=", "--hash ");
    let mut words = rest.split_whitespace();
    while let Some(word) = words.next() {
        if word != "--hash" {
            return Err(RequirementsError::Invalid {
                origin: origin.to_owned(),
                line: line.to_owned(),
                message: format!("unexpected `{word}` after a --hash option"),
            });
        }
        let value = words.next().unwrap_or_default();
        match value
            .split_once(':')
            .filter(|(algorithm, _)| *algorithm == "sha256")
            .and_then(|(_, hex)| Digest::from_hex(&hex.to_ascii_lowercase()).ok())
        {
            Some(digest) => hashes.push(digest),
            None => {
                return Err(RequirementsError::Invalid {
                    origin: origin.to_owned(),
                    line: line.to_owned(),
                    message: format!("`--hash {value}` is not a sha256:<64 hex digits> hash"),
                });
            }
        }
    }
    Ok((line[..at].to_owned(), hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_with_includes_hashes_and_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.txt"),
            "--index-url https://index.invalid/simple\n\
             # a comment\n\
             requests[socks]>=2.31 ; python_version >= \"3.8\"  # trailing\n\
             pyyaml==6.0.1 \\\n    --hash=sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\
             -c constraints.txt\n\
             -f wheels\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("constraints.txt"), "urllib3<2\n").unwrap();
        std::fs::write(dir.path().join("top.txt"), "-r base.txt\nclick\n").unwrap();
        let mut reqs = Requirements::default();
        reqs.add_file(&dir.path().join("top.txt")).unwrap();
        let names: Vec<String> = reqs
            .requirements
            .iter()
            .map(|p| p.requirement.name.to_string())
            .collect();
        assert_eq!(names, ["requests", "pyyaml", "click"]);
        assert_eq!(reqs.requirements[0].requirement.extras.len(), 1);
        assert_eq!(
            reqs.requirements[1].hashes,
            [Digest::from_hex(&"a".repeat(64)).unwrap()]
        );
        assert_eq!(reqs.constraints.len(), 1);
        assert_eq!(reqs.constraints[0].requirement.name.to_string(), "urllib3");
        assert_eq!(
            reqs.index_url.as_deref(),
            Some("https://index.invalid/simple")
        );
        assert_eq!(
            reqs.find_links,
            [dir.path().join("wheels").display().to_string()]
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.txt");
        std::fs::write(&file, "numpy\nnot a requirement!!\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(err.to_string().contains("r.txt:2"), "{err}");
        std::fs::write(&file, "-e .\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(err.to_string().contains("`-e`"), "{err}");
        std::fs::write(&file, "-r r.txt\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(matches!(err, RequirementsError::Cycle(_)), "{err}");
        let err = Requirements::default()
            .add_line(
                "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl",
                "recipe",
            )
            .unwrap_err();
        assert!(
            matches!(err, RequirementsError::Direct { .. })
                && err.to_string().contains("has no hash"),
            "{err}"
        );
    }

    #[test]
    fn only_binary_and_no_binary_follow_pip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.txt");
        std::fs::write(
            &file,
            "--only-binary=:all:\n--no-binary Foo_Bar,baz\nsrconly\n",
        )
        .unwrap();
        let mut reqs = Requirements::default();
        reqs.add_file(&file).unwrap();
        let formats = &reqs.formats;
        assert_eq!(
            formats.formats("srconly"),
            Formats {
                binary: true,
                source: false
            }
        );
        // A name given explicitly wins over `:all:`, and names are normalised.
        let built = Formats {
            binary: false,
            source: true,
        };
        assert_eq!(formats.formats("foo-bar"), built);
        assert_eq!(formats.formats("baz"), built);
        // `:all:` on the other option clears what came before; `:none:` clears its own.
        let mut control = reqs.formats.clone();
        control.add_no_binary(":all:", "test").unwrap();
        assert_eq!(control.formats("srconly"), built);
        control.add_no_binary(":none:", "test").unwrap();
        assert!(control.is_empty());
        assert_eq!(control.formats("srconly"), Formats::ANY);
        control.add_only_binary("a,b", "test").unwrap();
        control.add_no_binary("b", "test").unwrap();
        assert_eq!(control.env_values(), ("a".to_owned(), "b".to_owned()));
        std::fs::write(&file, "--only-binary\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(err.to_string().contains("r.txt:1"), "{err}");
        std::fs::write(&file, "--only-binary not/a name\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(err.to_string().contains("r.txt:1"), "{err}");
    }

    /// A requirements file's paths start at its own directory; the lock names them from the
    /// project directory. A constraints file holds no direct reference.
    #[test]
    fn direct_references_in_files_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("requirements")).unwrap();
        let file = root.join("requirements/app.txt");
        std::fs::write(&file, "../app[api]\nclick\n").unwrap();
        let mut reqs = Requirements {
            root: root.clone(),
            ..Requirements::default()
        };
        reqs.add_file(&file).unwrap();
        assert_eq!(reqs.requirements.len(), 1);
        assert_eq!(reqs.direct.len(), 1);
        assert_eq!(reqs.direct[0].shown, "./app");
        assert_eq!(reqs.direct[0].extras.len(), 1);
        std::fs::write(root.join("requirements/c.txt"), "../app\n").unwrap();
        std::fs::write(&file, "-c c.txt\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(
            err.to_string().contains("c.txt:1") && err.to_string().contains("constraints"),
            "{err}"
        );
        std::fs::write(&file, "./missing\n").unwrap();
        let err = Requirements::default().add_file(&file).unwrap_err();
        assert!(err.to_string().contains("app.txt:1"), "{err}");
    }

    #[test]
    fn an_include_of_itself_by_another_spelling_is_a_cycle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("r.txt"), "-r sub/../r.txt\n").unwrap();
        let err = Requirements::default()
            .add_file(&dir.path().join("r.txt"))
            .unwrap_err();
        assert!(matches!(err, RequirementsError::Cycle(_)), "{err}");
    }

    #[test]
    fn hashes_that_are_not_hex_are_refused() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let bad = format!("{}=5", &hex[..62]);
        let err = Requirements::default()
            .add_line(&format!("pyyaml --hash=sha256:{bad}"), "recipe")
            .unwrap_err();
        assert!(
            err.to_string().contains("is not a sha256:<64 hex digits>"),
            "{err}"
        );
        let mut reqs = Requirements::default();
        reqs.add_line(
            &format!("pyyaml --hash=sha256:{}", hex.to_ascii_uppercase()),
            "recipe",
        )
        .unwrap();
        assert_eq!(
            reqs.requirements[0].hashes,
            [Digest::from_hex(hex).unwrap()]
        );
    }

    #[test]
    fn names_ending_in_punctuation_are_refused_not_a_panic() {
        for line in [
            "numpy. >=1",
            "numpy-;python_version>'3'",
            "a[b-]",
            "a [ok, b_ ]",
            "a[b.",
        ] {
            let err = Requirements::default()
                .add_line(line, "recipe")
                .unwrap_err();
            assert!(
                err.to_string().contains("is not a valid name"),
                "{line}: {err}"
            );
        }
        // Valid names with inner punctuation still parse.
        let mut reqs = Requirements::default();
        reqs.add_line("zope.interface[test-extra]>=5", "recipe")
            .unwrap();
        assert_eq!(reqs.requirements[0].requirement.extras.len(), 1);
    }
}
