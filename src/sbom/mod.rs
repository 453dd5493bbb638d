//! What is in an image and how it was made: an SBOM (SPDX 2.3 or CycloneDX 1.6 JSON) and a
//! provenance statement (in-toto, SLSA provenance v1), attached to each platform manifest as
//! OCI 1.1 referrers.
//!
//! In: an image's layers reduced to [`scan::LayerPackages`] (a build's trees, or a foreign
//! image's tars), and for a build the locked inputs it used. Out: the documents' bytes, the same
//! for the same image (every list sorted, the time from SOURCE_DATE_EPOCH).
//! Specs: <https://spdx.github.io/spdx-spec/v2.3/>, <https://cyclonedx.org/docs/1.6/json/>,
//! <https://slsa.dev/spec/v1.0/provenance>, <https://github.com/in-toto/attestation/tree/main/spec/v1>,
//! package URLs: <https://github.com/package-url/purl-spec>.

mod cyclonedx;
mod license;
pub mod provenance;
pub mod read;
pub mod scan;
mod spdx;

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::image::spec::Platform;
use crate::source::locked::Input;

pub use license::{License, normalize as normalize_license};

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// Which SBOM format is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SbomFormat {
    #[default]
    Spdx,
    CycloneDx,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an SBOM format: use spdx or cyclonedx")]
pub struct SbomFormatError(String);

impl std::str::FromStr for SbomFormat {
    type Err = SbomFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spdx" | "spdx-json" => Ok(SbomFormat::Spdx),
            "cyclonedx" | "cyclonedx-json" => Ok(SbomFormat::CycloneDx),
            _ => Err(SbomFormatError(s.to_owned())),
        }
    }
}

impl SbomFormat {
    /// The media type of its documents, which is also the referrer's `artifactType`.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => SPDX_MEDIA_TYPE,
            SbomFormat::CycloneDx => CYCLONEDX_MEDIA_TYPE,
        }
    }
}

/// Where a package comes from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Ecosystem {
    Debian,
    Python,
    Conda,
}

/// One package found in an image (kept in registry cache records with the layer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// Debian's `Architecture`, conda's `subdir`.
    pub arch: Option<String>,
    /// Debian: the source package and its version. Conda: the build string (and nothing).
    pub source: Option<(String, String)>,
    /// As the package states it (see [`License`]).
    pub license: Option<String>,
    /// SHA256 of the file installed (the .deb, wheel, conda package), lowercase hex.
    pub sha256: Option<String>,
    pub file_name: Option<String>,
    /// Names it depends on; each inner list is alternatives, the first present one counts.
    pub depends: Vec<Vec<String>>,
}

impl Package {
    /// The name a dependency on this package uses, compared case- and separator-blind for
    /// Python (PEP 503).
    fn dependency_key(ecosystem: Ecosystem, name: &str) -> String {
        match ecosystem {
            Ecosystem::Python => python_name(name),
            _ => name.to_owned(),
        }
    }

    /// Its package URL.
    pub fn purl(&self) -> String {
        let version = purl_escape(&self.version);
        match self.ecosystem {
            Ecosystem::Debian => {
                let mut purl = format!("pkg:deb/debian/{}@{version}", purl_escape(&self.name));
                if let Some(arch) = &self.arch {
                    purl.push_str(&format!("?arch={}", purl_escape(arch)));
                }
                purl
            }
            Ecosystem::Python => format!(
                "pkg:pypi/{}@{version}",
                purl_escape(&python_name(&self.name))
            ),
            Ecosystem::Conda => {
                let mut qualifiers = Vec::new();
                if let Some((build, _)) = &self.source {
                    qualifiers.push(format!("build={}", purl_escape(build)));
                }
                if let Some(subdir) = &self.arch {
                    qualifiers.push(format!("subdir={}", purl_escape(subdir)));
                }
                let mut purl = format!("pkg:conda/{}@{version}", purl_escape(&self.name));
                if !qualifiers.is_empty() {
                    purl.push('?');
                    purl.push_str(&qualifiers.join("&"));
                }
                purl
            }
        }
    }
}

/// PEP 503's normalised name: lowercase, runs of `-_.` as one `-`.
fn python_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters, as package URLs want their parts.
fn purl_escape(part: &str) -> String {
    let mut out = String::new();
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The image a document describes.
#[derive(Clone, Debug)]
pub struct ImageSubject {
    /// The image's name (`registry/repository:tag`).
    pub name: String,
    pub platform: Platform,
    /// The platform manifest, which the documents are attached to.
    pub manifest: Digest,
    /// Its layers, bottom first.
    pub layers: Vec<LayerSubject>,
}

#[derive(Clone, Debug)]
pub struct LayerSubject {
    pub digest: Digest,
    /// How the image's history names it (`oci-build: debian bookworm: python3`).
    pub description: Option<String>,
}

/// Adds what the build's locked inputs know and the image does not: each package's file and
/// SHA256 (a .deb, wheel or conda package of the same name and version).
pub fn add_inputs(packages: &mut [Package], inputs: &[Input]) {
    let mut by_key: BTreeMap<(Ecosystem, String, String), &Input> = BTreeMap::new();
    for input in inputs {
        let ecosystem = match input.kind.to_string().as_str() {
            "deb" => Ecosystem::Debian,
            "pip" | "pip-built" => Ecosystem::Python,
            "conda" => Ecosystem::Conda,
            _ => continue,
        };
        let key = (
            ecosystem,
            Package::dependency_key(ecosystem, &input.name),
            input.version.clone(),
        );
        by_key.entry(key).or_insert(input);
    }
    for package in packages {
        let key = (
            package.ecosystem,
            Package::dependency_key(package.ecosystem, &package.name),
            package.version.clone(),
        );
        if let Some(input) = by_key.get(&key) {
            package.sha256 = Some(input.sha256.hex().to_owned());
            if !input.filename.is_empty() {
                let file = input.filename.rsplit('/').next().unwrap_or(&input.filename);
                package.file_name = Some(file.to_owned());
            }
        }
    }
}

/// For each package, the indexes of the packages it depends on that the image holds.
fn dependencies(packages: &[Package]) -> Vec<Vec<usize>> {
    let mut index: BTreeMap<(Ecosystem, String), usize> = BTreeMap::new();
    for (i, package) in packages.iter().enumerate() {
        index
            .entry((
                package.ecosystem,
                Package::dependency_key(package.ecosystem, &package.name),
            ))
            .or_insert(i);
    }
    packages
        .iter()
        .enumerate()
        .map(|(i, package)| {
            let mut found: Vec<usize> = package
                .depends
                .iter()
                .filter_map(|alternatives| {
                    alternatives.iter().find_map(|name| {
                        index
                            .get(&(
                                package.ecosystem,
                                Package::dependency_key(package.ecosystem, name),
                            ))
                            .copied()
                    })
                })
                .filter(|&j| j != i)
                .collect();
            found.sort_unstable();
            found.dedup();
            found
        })
        .collect()
}

/// The SBOM of `subject` holding `packages`, in `format`, created at `created` (RFC 3339).
pub fn sbom_document(
    format: SbomFormat,
    subject: &ImageSubject,
    packages: &[Package],
    created: &str,
) -> Vec<u8> {
    match format {
        SbomFormat::Spdx => spdx::document(subject, packages, created),
        SbomFormat::CycloneDx => cyclonedx::document(subject, packages, created),
    }
}

/// The tool as documents name it.
pub(crate) fn tool_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_escape_versions_and_normalise_python_names() {
        let deb = Package {
            ecosystem: Ecosystem::Debian,
            name: "libc6".into(),
            version: "1:2.36-9+deb12u4".into(),
            arch: Some("amd64".into()),
            source: None,
            license: None,
            sha256: None,
            file_name: None,
            depends: Vec::new(),
        };
        assert_eq!(
            deb.purl(),
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64"
        );
        let wheel = Package {
            ecosystem: Ecosystem::Python,
            name: "Typing_Extensions".into(),
            version: "4.12.2".into(),
            arch: None,
            ..deb.clone()
        };
        assert_eq!(wheel.purl(), "pkg:pypi/typing-extensions@4.12.2");
        let conda = Package {
            ecosystem: Ecosystem::Conda,
            name: "zlib".into(),
            version: "1.3".into(),
            arch: Some("linux-64".into()),
            source: Some(("h0_1".into(), String::new())),
            ..deb
        };
        assert_eq!(
            conda.purl(),
            "pkg:conda/zlib@1.3?build=h0_1&subdir=linux-64"
        );
    }
}
