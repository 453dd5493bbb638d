//! Image references (`[registry/]repository[:tag][@digest]`), normalised the way docker does.
//!
//! `mlrun/mlrun` is `docker.io/mlrun/mlrun:latest`; `python:3.11` is
//! `docker.io/library/python:3.11`; the first component is a registry when it has a `.` or
//! `:` or is `localhost`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[error("`{reference}` is not a valid image reference: {reason}")]
pub struct ReferenceError {
    reference: String,
    reason: &'static str,
}

fn component_ok(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn tag_ok(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ReferenceError {
            reference: s.to_owned(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| err("the digest is not sha256:<64 hex digits>"))?,
                ),
            ),
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !tag_ok(tag)
        {
            return Err(err(
                "the tag may hold letters, digits, `.`, `_` and `-`, up to 128",
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if !repository.split('/').all(component_ok) {
            return Err(err(
                "repository names are lowercase letters, digits and `._-` separated by `/`",
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl Reference {
    /// The tag, `latest` when neither tag nor digest was given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The short form docker prints (`mlrun/mlrun:1.0`, `python:3.11`), as `RepoTags` use it.
    pub fn familiar(&self) -> String {
        // The short form must parse back to this repository: `library/` goes only before a
        // single component (`library/a/b` as `a/b` is another repository), and the registry
        // stays when the first component would be read as one (`docker.io/a.b/c`).
        let first = self.repository.split('/').next().unwrap_or_default();
        let name = match self.repository.strip_prefix("library/") {
            _ if self.registry != DOCKER_HUB => format!("{}/{}", self.registry, self.repository),
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ if first.contains(['.', ':']) || first == "localhost" => {
                format!("{DOCKER_HUB}/{}", self.repository)
            }
            _ => self.repository.clone(),
        };
        format!("{name}:{}", self.tag_or_latest())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r: Reference = "mlrun/mlrun".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/mlrun/mlrun");
        assert_eq!(r.familiar(), "mlrun/mlrun:latest");
        let r: Reference = "python:3.11".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/python:3.11");
        assert_eq!(r.familiar(), "python:3.11");
        let r: Reference = "localhost:5000/a/b:1.0".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost:5000", "a/b")
        );
        let r: Reference = "quay.io/mlrun/mlrun:1.0-py39".parse().unwrap();
        assert_eq!(r.familiar(), "quay.io/mlrun/mlrun:1.0-py39");
    }

    #[test]
    fn familiar_form_parses_back_to_the_same_repository() {
        for (reference, familiar) in [
            ("library/a/b:1", "library/a/b:1"),
            ("docker.io/a.b/c", "docker.io/a.b/c:latest"),
            ("docker.io/localhost/c", "docker.io/localhost/c:latest"),
        ] {
            let r: Reference = reference.parse().unwrap();
            assert_eq!(r.familiar(), familiar);
            let again: Reference = r.familiar().parse().unwrap();
            assert_eq!(
                (again.registry, again.repository),
                (r.registry, r.repository)
            );
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert!("MLRun/mlrun".parse::<Reference>().is_err());
        assert!("a:b:c".parse::<Reference>().is_err());
        assert!("a@sha256:12".parse::<Reference>().is_err());
    }
}
