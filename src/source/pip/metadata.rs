//! Core metadata (`METADATA`, `PKG-INFO`): the fields resolution needs.

use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{Requirement, VerbatimUrl};

#[derive(Clone, Debug)]
pub(crate) struct CoreMetadata {
    // Required of every METADATA, and what a reader of it says; resolution goes by the
    // index's names and versions.
    #[allow(dead_code)]
    pub name: String,
    #[allow(dead_code)]
    pub version: Version,
    pub requires_dist: Vec<Requirement<VerbatimUrl>>,
    pub requires_python: Option<VersionSpecifiers>,
}

/// Why core metadata cannot be used. `what` names the file.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{what} has no {field}")]
    Missing { what: String, field: &'static str },
    #[error("{what}: version `{version}`")]
    Version {
        what: String,
        version: String,
        #[source]
        source: pep440_rs::VersionParseError,
    },
    /// `reason` is [`parse_requirement`](super::requirements::parse_requirement)'s, in words.
    #[error("{what}: Requires-Dist `{value}`: {reason}")]
    RequiresDist {
        what: String,
        value: String,
        reason: String,
    },
    #[error("{what}: Requires-Python `{spec}`")]
    RequiresPython {
        what: String,
        spec: String,
        #[source]
        source: pep440_rs::VersionSpecifiersParseError,
    },
}

/// Parses the email-header format of core metadata. `what` names the file for errors.
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<CoreMetadata, MetadataError> {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break; // the body (long description) follows the first blank line
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let missing = |field| MetadataError::Missing {
        what: what.to_owned(),
        field,
    };
    let name = get("name").ok_or_else(|| missing("Name"))?;
    let version = get("version").ok_or_else(|| missing("Version"))?;
    let version = Version::from_str(version).map_err(|source| MetadataError::Version {
        what: what.to_owned(),
        version: version.to_owned(),
        source,
    })?;
    let mut requires_dist = Vec::new();
    for (key, value) in &fields {
        if key == "requires-dist" {
            let requirement = super::requirements::parse_requirement(value).map_err(|reason| {
                MetadataError::RequiresDist {
                    what: what.to_owned(),
                    value: value.clone(),
                    reason,
                }
            })?;
            requires_dist.push(requirement);
        }
    }
    let requires_python = match get("requires-python") {
        Some(spec) if !spec.is_empty() => {
            Some(
                parse_requires_python(spec).map_err(|source| MetadataError::RequiresPython {
                    what: what.to_owned(),
                    spec: spec.to_owned(),
                    source,
                })?,
            )
        }
        _ => None,
    };
    Ok(CoreMetadata {
        name: name.to_owned(),
        version,
        requires_dist,
        requires_python,
    })
}

/// Requires-Python as indexes and metadata write it (some add spaces or a trailing comma).
pub(crate) fn parse_requires_python(
    spec: &str,
) -> Result<VersionSpecifiers, pep440_rs::VersionSpecifiersParseError> {
    let cleaned = spec.trim().trim_end_matches(',');
    VersionSpecifiers::from_str(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dependencies_and_python_bounds() {
        let text = b"Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.2.0\nRequires-Python: >=3.8,\nRequires-Dist: requests (>=2.0)\nRequires-Dist: pyyaml; extra == 'yaml'\nSummary: a long\n  folded line\n\nRequires-Dist: not-a-header\n";
        let meta = parse(text, "demo").unwrap();
        assert_eq!(meta.name, "Demo_Pkg");
        assert_eq!(meta.version.to_string(), "1.2.0");
        assert_eq!(meta.requires_dist.len(), 2);
        assert!(
            meta.requires_python
                .unwrap()
                .contains(&Version::from_str("3.11.2").unwrap())
        );
        assert!(
            parse(b"Name: x\n", "x.whl")
                .unwrap_err()
                .to_string()
                .contains("x.whl has no Version")
        );
    }

    #[test]
    fn requires_dist_names_ending_in_punctuation_are_refused() {
        let text = b"Name: demo\nVersion: 1.0\nRequires-Dist: numpy. (>=1)\n";
        let err = parse(text, "demo").unwrap_err().to_string();
        assert!(err.contains("Requires-Dist `numpy. (>=1)`"), "{err}");
    }
}
