//! Both ends of a mirror: a repository on a registry, or a bundle (an OCI image layout).
//!
//! In: a [`Side`] and a repository on it. Out: manifests and indexes as their exact bytes
//! ([`Doc`]), by tag or digest, and the referrers of a digest: through the registry's referrers
//! API, else the index under the `sha256-<hex>` fallback tag (OCI distribution spec, "Listing
//! Referrers" and "Referrers Tag Schema":
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers>).
//! A bundle is read and written through [`Bundle`], the one OCI image layout reader and writer
//! for bundles (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>); an
//! `oci-archive:` end is that layout as a tar, unpacked here to be read or staged to be written.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, StatusCode};

use super::MirrorError;
use crate::digest::Digest;
use crate::image::bundle::Bundle;
use crate::image::spec::{self, Descriptor, Index};
use crate::image::{Blob, BlobData};
use crate::layer::cache::Cache;
use crate::registry::client::{Body, Request};
use crate::registry::{Registry, RegistryError, pull, read_limited, scope};

#[derive(Clone)]
pub(super) enum Side {
    Registry(Arc<Registry>),
    Bundle(Arc<Bundle>),
}

/// A manifest or index: its descriptor and exact bytes.
#[derive(Clone, Debug)]
pub(super) struct Doc {
    pub(super) descriptor: Descriptor,
    pub(super) bytes: Arc<[u8]>,
}

impl Doc {
    pub(super) fn blob(&self) -> Blob {
        Blob {
            descriptor: self.descriptor.clone(),
            data: BlobData::Bytes(self.bytes.clone()),
        }
    }
}

pub(super) use crate::image::referrer::fallback_tag;

impl Side {
    pub(super) fn name(&self, repository: &str) -> String {
        match self {
            Side::Registry(r) => format!("{}/{repository}", r.host),
            Side::Bundle(b) => b.name().to_owned(),
        }
    }

    /// A manifest or index by tag or digest; `None` when there is none.
    pub(super) fn get_doc(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Doc>, MirrorError> {
        let digest = reference.parse::<Digest>().ok();
        match self {
            Side::Registry(registry) => {
                let scopes = [scope(repository, "pull")];
                match pull::get_manifest(registry, repository, reference, &scopes, digest.as_ref())
                {
                    Ok((media_type, bytes, digest)) => Ok(Some(Doc {
                        descriptor: Descriptor::new(&media_type, digest, bytes.len() as u64),
                        bytes: Arc::from(bytes),
                    })),
                    Err(RegistryError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Side::Bundle(bundle) => {
                let descriptor = match &digest {
                    Some(digest) => {
                        let Ok(meta) = std::fs::symlink_metadata(bundle.blob_path(digest)) else {
                            return Ok(None);
                        };
                        // Checked against the digest by read_document; the type comes after.
                        Descriptor::new(spec::OCI_MANIFEST, digest.clone(), meta.len())
                    }
                    None => match bundle.tagged(&format!("{repository}:{reference}")) {
                        Some(d) => Descriptor::new(&d.media_type, d.digest, d.size),
                        None => return Ok(None),
                    },
                };
                let bytes = bundle.read_document(&descriptor)?;
                let mut descriptor = descriptor;
                if digest.is_some() {
                    descriptor.media_type = pull::media_type_of(&bytes);
                }
                Ok(Some(Doc {
                    descriptor,
                    bytes: Arc::from(bytes),
                }))
            }
        }
    }

    /// The referrers of `digest`: the registry's referrers API, else the fallback tag's index.
    pub(super) fn referrers(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, MirrorError> {
        if let Side::Registry(registry) = self {
            let scopes = [scope(repository, "pull")];
            let response = registry.send(&Request {
                method: Method::GET,
                url: registry.url(&format!("{repository}/referrers/{digest}")),
                scopes: &scopes,
                headers: vec![("Accept", spec::OCI_INDEX.to_owned())],
                body: Body::Empty,
                retry: true,
            })?;
            let is_index = response
                .headers()
                .get("Content-Type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(spec::OCI_INDEX));
            // docker-registry 2.8 answers 404 here: the fallback tag is then the only record.
            if response.status() == StatusCode::OK && is_index {
                let body = read_limited(registry, response, "a referrers list", 4 << 20)?;
                let index: Index = pull::parse(registry, &body, "referrers list")?;
                return Ok(index.manifests);
            }
        }
        match self.get_doc(repository, &fallback_tag(digest))? {
            None => Ok(Vec::new()),
            Some(doc) => Ok(parse_doc::<Index>(&doc, &self.name(repository))?.manifests),
        }
    }
}

pub(super) fn parse_doc<T: serde::de::DeserializeOwned>(
    doc: &Doc,
    source: &str,
) -> Result<T, MirrorError> {
    serde_json::from_slice(&doc.bytes).map_err(|e| MirrorError::BadDocument {
        source_name: source.to_owned(),
        what: format!("document {}", doc.descriptor.digest),
        source: e,
    })
}

// ---------------------------------------------------------------------------------------------
// Archives: unpacked to be read, staged as a directory to be written

pub(super) fn staging_dir(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".mirror-staging");
    file.with_file_name(name)
}

pub(super) fn unpack_into(file: &Path, dir: &Path) -> Result<(), MirrorError> {
    let read = |source| MirrorError::Read {
        path: file.to_owned(),
        source,
    };
    let reader = std::fs::File::open(file).map_err(read)?;
    tar::Archive::new(io::BufReader::new(reader))
        .unpack(dir)
        .map_err(read)
}

pub(super) fn unpack_archive(file: &Path, cache: &Cache) -> Result<tempfile::TempDir, MirrorError> {
    // On the cache's filesystem rather than /tmp, which is often small.
    let dir =
        tempfile::tempdir_in(cache.bucket(crate::layer::cache::Bucket::Tmp)).map_err(|source| {
            MirrorError::Read {
                path: cache.root().to_owned(),
                source,
            }
        })?;
    unpack_into(file, dir.path())?;
    Ok(dir)
}
