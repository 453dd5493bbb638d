//! Sources and destinations, as `oci-build mirror` arguments name them, and the rewrite rule.
//!
//! In: the SOURCE arguments (an image reference with or without `docker://`, `dir:PATH` or its
//! alias `oci:PATH`, `oci-archive:FILE`, or `@FILE`, a list of those) and the `--to` argument (a
//! registry and repository prefix, or a bundle). Out: [`MirrorSource`]s, a [`MirrorDest`], and
//! for a registry destination the reference each image is copied to. Parsing only: nothing here
//! touches a registry or a bundle. Reference grammar: the OCI distribution spec,
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests>.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::MirrorError;
use crate::reference::Reference;

/// One SOURCE argument, after `@FILE` lists are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorSource {
    Image(Reference),
    Dir(PathBuf),
    Archive(PathBuf),
}

impl fmt::Display for MirrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorSource::Image(r) => write!(f, "docker://{r}"),
            MirrorSource::Dir(p) => write!(f, "dir:{}", p.display()),
            MirrorSource::Archive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl FromStr for MirrorSource {
    type Err = MirrorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let path = |p: &str| {
            if p.is_empty() {
                Err(MirrorError::BadSource(s.to_owned()))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some(p) = s.strip_prefix("dir:").or_else(|| s.strip_prefix("oci:")) {
            return Ok(MirrorSource::Dir(path(p)?));
        }
        if let Some(p) = s.strip_prefix("oci-archive:") {
            return Ok(MirrorSource::Archive(path(p)?));
        }
        let reference = s.strip_prefix("docker://").unwrap_or(s);
        reference
            .parse()
            .map(MirrorSource::Image)
            .map_err(|_| MirrorError::BadSource(s.to_owned()))
    }
}

impl MirrorSource {
    /// Parses one SOURCE argument: `@FILE` is a list of sources, one a line, `#` starting a
    /// comment; anything else is one source.
    pub fn parse_arg(arg: &str) -> Result<Vec<MirrorSource>, MirrorError> {
        let Some(file) = arg.strip_prefix('@') else {
            return Ok(vec![arg.parse()?]);
        };
        let file = PathBuf::from(file);
        let text = std::fs::read_to_string(&file).map_err(|source| MirrorError::Read {
            path: file.clone(),
            source,
        })?;
        let mut sources = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let source = line
                .parse()
                .map_err(|e: MirrorError| MirrorError::SourceList {
                    file: file.clone(),
                    line: number + 1,
                    source: Box::new(e),
                })?;
            sources.push(source);
        }
        Ok(sources)
    }
}

/// Where `--to` copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorDest {
    /// A registry and a repository prefix (possibly empty): `registry.example:5000/mlrun`.
    Registry {
        registry: String,
        prefix: String,
    },
    Dir(PathBuf),
    Archive(PathBuf),
}

impl fmt::Display for MirrorDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorDest::Registry { registry, prefix } if prefix.is_empty() => {
                write!(f, "{registry}")
            }
            MirrorDest::Registry { registry, prefix } => write!(f, "{registry}/{prefix}"),
            MirrorDest::Dir(p) => write!(f, "dir:{}", p.display()),
            MirrorDest::Archive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl FromStr for MirrorDest {
    type Err = MirrorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MirrorError::BadDestination(s.to_owned());
        if let Some(p) = s.strip_prefix("dir:").or_else(|| s.strip_prefix("oci:")) {
            return (!p.is_empty())
                .then(|| MirrorDest::Dir(PathBuf::from(p)))
                .ok_or_else(bad);
        }
        if let Some(p) = s.strip_prefix("oci-archive:") {
            return (!p.is_empty())
                .then(|| MirrorDest::Archive(PathBuf::from(p)))
                .ok_or_else(bad);
        }
        let rest = s
            .strip_prefix("docker://")
            .unwrap_or(s)
            .trim_end_matches('/');
        let (registry, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // The first component must name a registry, as in a reference: a bare `mlrun` would
        // silently mean Docker Hub.
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad());
        }
        // The prefix follows the repository-name rules: checked by parsing a reference under it.
        let probe = if prefix.is_empty() {
            format!("{registry}/probe")
        } else {
            format!("{registry}/{prefix}/probe")
        };
        match probe.parse::<Reference>() {
            Ok(r) if r.registry == registry && r.tag.is_none() && r.digest.is_none() => {
                Ok(MirrorDest::Registry {
                    registry: registry.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// The rewrite rule for a registry destination, skopeo sync's: the source registry is replaced,
/// and the repository's last component goes under the prefix, tag and digest unchanged.
/// `docker.io/mlrun/mlrun:1.0` to `registry.example:5000/mlrun` is
/// `registry.example:5000/mlrun/mlrun:1.0`; `quay.io/org/team/app:2` is `…/mlrun/app:2`.
pub(super) fn rewrite(original: &Reference, registry: &str, prefix: &str) -> Reference {
    let name = original
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&original.repository);
    Reference {
        registry: registry.to_owned(),
        repository: if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        },
        tag: original.tag.clone(),
        digest: original.digest.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn rewrite_keeps_the_last_component_under_the_prefix() {
        let dest = |s: &str| match s.parse::<MirrorDest>().unwrap() {
            MirrorDest::Registry { registry, prefix } => (registry, prefix),
            other => panic!("{other:?}"),
        };
        let (host, prefix) = dest("registry.example:5000/mlrun");
        assert_eq!(
            rewrite(&r("docker.io/mlrun/mlrun:1.0"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/mlrun:1.0"
        );
        assert_eq!(
            rewrite(&r("quay.io/org/team/app:2"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/app:2"
        );
        assert_eq!(
            rewrite(&r("python:3.11"), &host, &prefix).to_string(),
            "registry.example:5000/mlrun/python:3.11"
        );
        let (host, prefix) = dest("docker://registry.example/");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            rewrite(&r(&format!("ghcr.io/a/b@{digest}")), &host, &prefix).to_string(),
            format!("registry.example/b@{digest}")
        );
        let (_, prefix) = dest("localhost:5000/site/mirror");
        assert_eq!(prefix, "site/mirror");
        assert!("mlrun".parse::<MirrorDest>().is_err());
        assert!("registry.example/Bad".parse::<MirrorDest>().is_err());
        assert_eq!(
            "dir:out".parse::<MirrorDest>().unwrap(),
            MirrorDest::Dir("out".into())
        );
    }

    #[test]
    fn sources_and_lists_parse() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images.txt");
        std::fs::write(
            &list,
            "# site images\nregistry.example/a/b:1  # pinned\n\ndocker://quay.io/c/d:2\ndir:bundle\n",
        )
        .unwrap();
        let sources = MirrorSource::parse_arg(&format!("@{}", list.display())).unwrap();
        assert_eq!(
            sources,
            vec![
                MirrorSource::Image(r("registry.example/a/b:1")),
                MirrorSource::Image(r("quay.io/c/d:2")),
                MirrorSource::Dir("bundle".into()),
            ]
        );
        std::fs::write(&list, "ok.example/a:1\nNot A Ref\n").unwrap();
        let error = MirrorSource::parse_arg(&format!("@{}", list.display()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
