//! Wheel file names and project names.
//!
//! Input: a wheel's file name or a project name as an index, a lock or a wheel's METADATA
//! spells it. Output: the parsed [`WheelName`] (the file name convention of the binary
//! distribution format, PEP 427 / PEP 491:
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#file-name-convention>)
//! and PEP 503 normalised names (<https://peps.python.org/pep-0503/#normalized-names>).
//! A file name is checked here before any of it becomes an image path.

use super::WheelError;

/// The parts of a wheel file name:
/// `{distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WheelName {
    /// The distribution name as written in the file name.
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    /// Compressed tag sets (`py2.py3`) split on `.`.
    pub python_tags: Vec<String>,
    pub abi_tags: Vec<String>,
    pub platform_tags: Vec<String>,
}

/// PEP 503 normalisation: lowercase, every run of `-`, `_` and `.` becomes one `-`.
pub(crate) fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A project name as PEP 508 allows it: ASCII letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit (so never `.`, `..` or a path).
pub(super) fn is_project_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits a wheel file name into its parts; the build tag must start with a digit.
pub(crate) fn parse_wheel_filename(filename: &str) -> Result<WheelName, WheelError> {
    let bad = |reason: &str| WheelError::BadFilename {
        filename: filename.to_owned(),
        reason: reason.to_owned(),
    };
    let stem = filename
        .strip_suffix(".whl")
        .ok_or_else(|| bad("it does not end in `.whl`"))?;
    if stem.contains(['/', '\\']) {
        return Err(bad("it contains a path separator"));
    }
    if stem.contains(|c: char| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains a control character or a blank"));
    }
    let parts: Vec<&str> = stem.split('-').collect();
    let (name, version, build, tags) = match parts.as_slice() {
        [name, version, py, abi, plat] => (*name, *version, None, [*py, *abi, *plat]),
        [name, version, build, py, abi, plat] => {
            if !build.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(bad("its build tag does not start with a digit"));
            }
            (
                *name,
                *version,
                Some((*build).to_owned()),
                [*py, *abi, *plat],
            )
        }
        _ => {
            return Err(bad(
                "it does not have 5 or 6 `-`-separated parts (name, version, optional build, python, abi, platform tags)",
            ));
        }
    };
    if !is_project_name(name) {
        return Err(bad(
            "its distribution name is not letters, digits, `_` and `.` starting and ending with a letter or digit",
        ));
    }
    if version.is_empty() {
        return Err(bad("its version is empty"));
    }
    let split = |set: &str| -> Result<Vec<String>, WheelError> {
        let tags: Vec<String> = set.split('.').map(str::to_owned).collect();
        if tags.iter().any(String::is_empty) {
            return Err(bad("it has an empty compatibility tag"));
        }
        Ok(tags)
    };
    Ok(WheelName {
        name: name.to_owned(),
        version: version.to_owned(),
        build,
        python_tags: split(tags[0])?,
        abi_tags: split(tags[1])?,
        platform_tags: split(tags[2])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_filenames_parse() {
        let name = parse_wheel_filename(
            "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(
            name,
            WheelName {
                name: "PyYAML".to_owned(),
                version: "6.0.1".to_owned(),
                build: None,
                python_tags: vec!["cp311".to_owned()],
                abi_tags: vec!["cp311".to_owned()],
                platform_tags: vec![
                    "manylinux_2_17_x86_64".to_owned(),
                    "manylinux2014_x86_64".to_owned()
                ],
            }
        );
        let name = parse_wheel_filename("six-1.16.0-1build2-py2.py3-none-any.whl").unwrap();
        assert_eq!(name.build.as_deref(), Some("1build2"));
        assert_eq!(name.python_tags, ["py2", "py3"]);
        assert_eq!(name.abi_tags, ["none"]);
        assert_eq!(name.platform_tags, ["any"]);
        for bad in [
            "six-1.16.0-py3-none-any.zip",
            "six-1.16.0-py3-any.whl",
            "six-1.16.0-build-py3-none-any.whl",
            "six-1.16.0-1-2-py3-none-any.whl",
            "../six-1.16.0-py3-none-any.whl",
            "six-1.16.0-py3..py2-none-any.whl",
            "-1.16.0-py3-none-any.whl",
        ] {
            assert!(parse_wheel_filename(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_normalise_per_pep_503() {
        assert_eq!(normalize_name("Friendly-Bard"), "friendly-bard");
        assert_eq!(normalize_name("FRIENDLY-BARD"), "friendly-bard");
        assert_eq!(normalize_name("friendly.bard"), "friendly-bard");
        assert_eq!(normalize_name("friendly_bard"), "friendly-bard");
        assert_eq!(normalize_name("friendly--bard"), "friendly-bard");
        assert_eq!(normalize_name("FrIeNdLy-._.-bArD"), "friendly-bard");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
    }
}
