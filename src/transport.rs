//! Image locations in the containers-image convention skopeo and podman users know:
//! `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]`.
//!
//! REF is the name the image is stored under (the `org.opencontainers.image.ref.name`
//! annotation, or docker's `RepoTags`); it may itself hold `:` and `/` (`mlrun/mlrun:1.0`),
//! so only the first `:` after the transport separates the path from it.

use std::fmt;
use std::path::PathBuf;

use crate::image::ImageArtifact;
use crate::image::archive::{self, ArchiveError};
use crate::image::layout::{self, LayoutError};
use crate::reference::Reference;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Oci {
        dir: PathBuf,
        name: Option<String>,
    },
    OciArchive {
        file: PathBuf,
        name: Option<String>,
    },
    DockerArchive {
        file: PathBuf,
        name: Option<String>,
    },
    /// `docker://REF`: an image in a registry.
    Docker(Reference),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not an image location: use oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF]"
)]
pub struct TransportParseError(String);

impl std::str::FromStr for Transport {
    type Err = TransportParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(reference) = s.strip_prefix("docker://") {
            return reference
                .parse()
                .map(Transport::Docker)
                .map_err(|_| TransportParseError(s.to_owned()));
        }
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| TransportParseError(s.to_owned()))?;
        let (path, name) = match rest.split_once(':') {
            Some((path, name)) => (path, Some(name.to_owned()).filter(|n| !n.is_empty())),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(TransportParseError(s.to_owned()));
        }
        let path = PathBuf::from(path);
        Ok(match kind {
            "oci" => Transport::Oci { dir: path, name },
            "oci-archive" => Transport::OciArchive { file: path, name },
            "docker-archive" => Transport::DockerArchive { file: path, name },
            _ => return Err(TransportParseError(s.to_owned())),
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, path, name) = match self {
            Transport::Docker(reference) => return write!(f, "docker://{reference}"),
            Transport::Oci { dir, name } => ("oci", dir, name),
            Transport::OciArchive { file, name } => ("oci-archive", file, name),
            Transport::DockerArchive { file, name } => ("docker-archive", file, name),
        };
        write!(f, "{kind}:{}", path.display())?;
        if let Some(name) = name {
            write!(f, ":{name}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("`{0}` is a registry; push there with `oci-build push` or `build --push`")]
    Registry(String),
}

impl Transport {
    pub fn name(&self) -> Option<&str> {
        match self {
            Transport::Oci { name, .. }
            | Transport::OciArchive { name, .. }
            | Transport::DockerArchive { name, .. } => name.as_deref(),
            Transport::Docker(reference) => reference.tag.as_deref(),
        }
    }

    /// The same location with `name` as its REF.
    pub fn with_name(&self, name: String) -> Transport {
        match self.clone() {
            Transport::Oci { dir, .. } => Transport::Oci {
                dir,
                name: Some(name),
            },
            Transport::OciArchive { file, .. } => Transport::OciArchive {
                file,
                name: Some(name),
            },
            Transport::DockerArchive { file, .. } => Transport::DockerArchive {
                file,
                name: Some(name),
            },
            Transport::Docker(reference) => Transport::Docker(Reference {
                tag: Some(name),
                ..reference
            }),
        }
    }

    /// Writes `artifact` here under the REF of this location, or the image's own name
    /// (`mlrun/mlrun:1.0`) when none was given. Returns the location with its REF filled in.
    pub fn write(
        &self,
        artifact: &ImageArtifact,
        reference: &Reference,
    ) -> Result<Transport, OutputError> {
        let name = self
            .name()
            .map(str::to_owned)
            .unwrap_or_else(|| reference.familiar());
        match self {
            Transport::Oci { dir, .. } => layout::write_layout(dir, artifact, &name)?,
            Transport::OciArchive { file, .. } => {
                archive::write_oci_archive(file, artifact, &name)?
            }
            Transport::DockerArchive { file, .. } => {
                archive::write_docker_archive(file, artifact, std::slice::from_ref(&name))?
            }
            Transport::Docker(_) => return Err(OutputError::Registry(self.to_string())),
        }
        Ok(self.with_name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_colons_and_slashes() {
        let t: Transport = "oci:out:mlrun/mlrun:1.0".parse().unwrap();
        assert_eq!(
            t,
            Transport::Oci {
                dir: "out".into(),
                name: Some("mlrun/mlrun:1.0".into())
            }
        );
        assert_eq!(t.to_string(), "oci:out:mlrun/mlrun:1.0");
        assert!(matches!(
            "docker-archive:/tmp/x.tar".parse::<Transport>().unwrap(),
            Transport::DockerArchive { name: None, .. }
        ));
        let pushed: Transport = "docker://localhost:5000/a/b:1".parse().unwrap();
        assert_eq!(pushed.to_string(), "docker://localhost:5000/a/b:1");
        assert!("docker://Bad Name".parse::<Transport>().is_err());
        assert!("ftp:x".parse::<Transport>().is_err());
        assert!("oci:".parse::<Transport>().is_err());
    }
}
