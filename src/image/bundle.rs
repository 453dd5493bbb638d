//! Mirror bundles: one OCI image layout holding many images from many repositories, for
//! carrying images into an air-gapped site (`dir:PATH`, or the same in a tar: `oci-archive:`).
//!
//! Each image is an `index.json` entry named `REPOSITORY:TAG` (`org.opencontainers.image.ref.name`,
//! e.g. `mlrun/mlrun:1.0`) with [`ANNOTATION_MIRROR_REFERENCE`] holding the full reference it was
//! copied from. OCI 1.1 referrers ride along the way registries without the referrers API keep
//! them: an index tagged `REPOSITORY:sha256-<hex>` lists the referrers of `sha256:<hex>`. So a
//! bundle reads like a registry whose tags are the ref names, and is written the same way.
//!
//! A bundle read from disk is outside input: its blobs are opened only as regular files named by
//! a parsed digest (never through a symlink), and every ref name of its `index.json` must be a
//! valid OCI ref name, so that none can act as a path.
//!
//! Blobs are renamed into place complete and `index.json` is replaced atomically after each
//! image, so an interrupted copy leaves a bundle that a rerun completes.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::layout::{Fault, LayoutDir, MAX_DOCUMENT_SIZE};
use super::spec::{self, Descriptor, Index};
use crate::digest::Digest;

/// The full reference an image of a bundle was copied from (`docker.io/mlrun/mlrun:1.0`).
pub const ANNOTATION_MIRROR_REFERENCE: &str = "io.oci-build.mirror.reference";
pub use super::layout::valid_ref_name;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle `{bundle}` is not an OCI image layout (it has no `oci-layout` file)")]
    NotALayout { bundle: String },
    #[error("bundle `{bundle}`: cannot {action}")]
    Io {
        bundle: String,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("bundle `{bundle}`: `{file}` is not valid JSON of the expected shape")]
    BadJson {
        bundle: String,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("bundle `{bundle}`: blob {digest} (file `{file}`) is missing")]
    MissingBlob {
        bundle: String,
        digest: Digest,
        file: String,
    },
    #[error(
        "bundle `{bundle}`: blob {digest} (file `{file}`) is corrupt: its content hashes to {found} ({size} bytes)"
    )]
    CorruptBlob {
        bundle: String,
        digest: Digest,
        file: String,
        found: Digest,
        size: u64,
    },
    #[error("bundle `{bundle}`: {what} (file `{file}`) is missing or not of its listed size")]
    MissingInput {
        bundle: String,
        what: String,
        file: String,
    },
    #[error(
        "bundle `{bundle}`: `{file}` is a symlink or special file, not a regular file; refusing to follow it"
    )]
    NotRegular { bundle: String, file: String },
    #[error(
        "bundle `{bundle}`: index.json names an image `{name}`, which is not a valid ref name (REPOSITORY:TAG)"
    )]
    BadRefName { bundle: String, name: String },
    /// The listing beside the layout (`inputs.json`) could not be read or is not valid. Its
    /// error is of a later stage (offline), which this module does not name.
    #[error("bundle `{bundle}`: cannot check the inputs it lists")]
    BadInputs {
        bundle: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "bundle `{bundle}`: blob {digest} (file `{file}`) is {size} bytes, but a descriptor says {expected}"
    )]
    WrongSize {
        bundle: String,
        digest: Digest,
        file: String,
        size: u64,
        expected: u64,
    },
    #[error(
        "bundle `{bundle}`: blob {digest} (file `{file}`) is {size} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit for manifests and indexes"
    )]
    DocumentTooLarge {
        bundle: String,
        digest: Digest,
        file: String,
        size: u64,
    },
}

/// An open bundle directory. `name` is how messages call it (`dir:out` or `oci-archive:b.tar`,
/// whose directory is a temporary unpacking).
pub struct Bundle {
    files: LayoutDir,
    name: String,
    index: Mutex<Index>,
}

/// What [`Bundle::verify`] checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub bundle: String,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Entries of `inputs.json` (a directory written by `oci-build fetch`).
    pub inputs: usize,
}

impl Bundle {
    fn new(dir: &Path, name: &str) -> Bundle {
        Bundle {
            files: LayoutDir::new(dir),
            name: name.to_owned(),
            index: Mutex::new(Index::new(Some(spec::OCI_INDEX))),
        }
    }

    /// Opens an existing bundle.
    pub fn open(dir: &Path, name: &str) -> Result<Bundle, BundleError> {
        let bundle = Bundle::new(dir, name);
        if !bundle.files.is_layout() {
            return Err(BundleError::NotALayout {
                bundle: name.to_owned(),
            });
        }
        bundle
            .files
            .check_blob_dirs()
            .map_err(|f| bundle.error(f))?;
        let index = bundle.files.read_index().map_err(|f| bundle.error(f))?;
        if let Some(bad) = super::layout::invalid_ref_name(&index) {
            return Err(BundleError::BadRefName {
                bundle: name.to_owned(),
                name: bad.to_owned(),
            });
        }
        *bundle.index.lock().expect("index lock") = index;
        Ok(bundle)
    }

    /// Opens the bundle at `dir`, creating an empty one when there is none.
    pub fn create(dir: &Path, name: &str) -> Result<Bundle, BundleError> {
        let bundle = Bundle::new(dir, name);
        if bundle.files.is_layout() && bundle.files.has_index() {
            return Bundle::open(dir, name);
        }
        bundle.files.init().map_err(|f| bundle.error(f))?;
        bundle.save_index()?;
        Ok(bundle)
    }

    pub fn dir(&self) -> &Path {
        self.files.path()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The error for what went wrong with a file of the bundle, naming the bundle as the user
    /// did (`dir:out`), not the directory it may have been unpacked to.
    fn error(&self, fault: Fault) -> BundleError {
        let bundle = self.name.clone();
        let file = |digest: &Digest| LayoutDir::blob_file(digest);
        match fault {
            Fault::NotRegular { file } => BundleError::NotRegular { bundle, file },
            Fault::MissingBlob { digest } => BundleError::MissingBlob {
                bundle,
                file: file(&digest),
                digest,
            },
            Fault::CorruptBlob {
                digest,
                found,
                size,
            } => BundleError::CorruptBlob {
                bundle,
                file: file(&digest),
                digest,
                found,
                size,
            },
            Fault::WrongSize {
                digest,
                size,
                expected,
            } => BundleError::WrongSize {
                bundle,
                file: file(&digest),
                digest,
                size,
                expected,
            },
            Fault::TooLarge { digest, size } => BundleError::DocumentTooLarge {
                bundle,
                file: file(&digest),
                digest,
                size,
            },
            Fault::BadJson { file, source } => BundleError::BadJson {
                bundle,
                file,
                source,
            },
            Fault::Io { action, source } => BundleError::Io {
                bundle,
                action,
                source,
            },
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.files.blob_path(digest)
    }

    /// Whether the bundle has a blob of the descriptor's size (blobs are renamed into place
    /// complete, so a file of the right size is the finished blob).
    pub fn has_blob(&self, descriptor: &Descriptor) -> bool {
        self.files.has_blob(descriptor)
    }

    /// Streams a blob through sha256 and compares it with its descriptor.
    pub fn verify_blob(&self, descriptor: &Descriptor) -> Result<(), BundleError> {
        self.files
            .verify_blob(descriptor)
            .map_err(|f| self.error(f))
    }

    /// A small document (manifest, index), verified against its descriptor.
    pub fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>, BundleError> {
        self.files
            .read_document(descriptor)
            .map_err(|f| self.error(f))
    }

    /// Puts a blob into place from a file (a hard link when possible; blobs never change).
    pub fn put_blob_file(&self, descriptor: &Descriptor, source: &Path) -> Result<(), BundleError> {
        self.files
            .put_blob_file(descriptor, source)
            .map_err(|f| self.error(f))
    }

    pub fn put_blob_bytes(&self, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), BundleError> {
        self.files
            .put_blob_bytes(descriptor, bytes)
            .map_err(|f| self.error(f))
    }

    /// The descriptor named `name` (`REPOSITORY:TAG`).
    pub fn tagged(&self, name: &str) -> Option<Descriptor> {
        self.index
            .lock()
            .expect("index lock")
            .manifests
            .iter()
            .find(|d| d.ref_name() == Some(name))
            .cloned()
    }

    /// The tags of `repository`, as the ref names `REPOSITORY:TAG` give them.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let prefix = format!("{repository}:");
        self.index
            .lock()
            .expect("index lock")
            .manifests
            .iter()
            .filter_map(|d| d.ref_name()?.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The images the bundle holds: (ref name, original reference, descriptor). Referrer
    /// indexes (tagged `sha256-…`, without the reference annotation) are not images.
    pub fn images(&self) -> Vec<(String, String, Descriptor)> {
        self.index
            .lock()
            .expect("index lock")
            .manifests
            .iter()
            .filter_map(|d| {
                let original = d.annotations.get(ANNOTATION_MIRROR_REFERENCE)?;
                Some((d.ref_name()?.to_owned(), original.clone(), d.clone()))
            })
            .collect()
    }

    /// Names `descriptor` `name` in index.json (replacing what had that name) and saves it.
    pub fn set_tag(
        &self,
        name: &str,
        descriptor: &Descriptor,
        original: Option<&str>,
    ) -> Result<(), BundleError> {
        self.put_entry(name, descriptor, original, None)
    }

    /// Names the image of one platform `name`, beside images of other platforms so named
    /// (`oci-build fetch` keeps only the platforms a build uses). `descriptor.platform` is set.
    pub fn set_platform_tag(
        &self,
        name: &str,
        descriptor: &Descriptor,
        original: &str,
    ) -> Result<(), BundleError> {
        self.put_entry(
            name,
            descriptor,
            Some(original),
            descriptor.platform.clone(),
        )
    }

    fn put_entry(
        &self,
        name: &str,
        descriptor: &Descriptor,
        original: Option<&str>,
        platform: Option<spec::Platform>,
    ) -> Result<(), BundleError> {
        let mut entry = Descriptor::new(
            &descriptor.media_type,
            descriptor.digest.clone(),
            descriptor.size,
        );
        entry.extra = descriptor.extra.clone();
        entry.platform = platform.clone();
        entry
            .annotations
            .insert(spec::ANNOTATION_REF_NAME.to_owned(), name.to_owned());
        if let Some(original) = original {
            entry
                .annotations
                .insert(ANNOTATION_MIRROR_REFERENCE.to_owned(), original.to_owned());
        }
        {
            let mut index = self.index.lock().expect("index lock");
            index
                .manifests
                .retain(|d| d.ref_name() != Some(name) || d.platform != platform);
            index.manifests.push(entry);
            index
                .manifests
                .sort_by(|a, b| a.ref_name().cmp(&b.ref_name()));
        }
        self.save_index()
    }

    /// Writes the bundle's index under the layout's lock, taking the snapshot inside it so
    /// that of two threads the later change is written last.
    fn save_index(&self) -> Result<(), BundleError> {
        let lock = self.files.lock().map_err(|f| self.error(f))?;
        let index = self.index.lock().expect("index lock").clone();
        self.files
            .write_index(&index, &lock)
            .map_err(|f| self.error(f))
    }

    /// Checks every blob file against the digest its name says, and every descriptor reachable
    /// from index.json (indexes, manifests, configs, layers) for presence and size.
    pub fn verify(&self) -> Result<VerifyReport, BundleError> {
        self.verify_with(|_| Ok(0))
    }

    /// [`Bundle::verify`], then `inputs` with the size of every blob by digest: it checks
    /// what a listing beside the layout (`inputs.json`) says and returns how many it listed.
    pub fn verify_with(
        &self,
        inputs: impl FnOnce(&HashMap<Digest, u64>) -> Result<usize, BundleError>,
    ) -> Result<VerifyReport, BundleError> {
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        let mut bytes = 0;
        for digest in self.files.list_blobs().map_err(|f| self.error(f))? {
            let (found, size) = self.files.hash_blob(&digest).map_err(|f| self.error(f))?;
            if found != digest {
                return Err(self.error(Fault::CorruptBlob {
                    digest,
                    found,
                    size,
                }));
            }
            bytes += size;
            sizes.insert(digest, size);
        }
        let index = self.index.lock().expect("index lock").clone();
        let mut pending: Vec<Descriptor> = index.manifests.clone();
        let mut seen = BTreeMap::new();
        while let Some(descriptor) = pending.pop() {
            if seen.insert(descriptor.digest.clone(), ()).is_some() {
                continue;
            }
            match sizes.get(&descriptor.digest) {
                None => {
                    return Err(self.error(Fault::MissingBlob {
                        digest: descriptor.digest.clone(),
                    }));
                }
                Some(&size) if size != descriptor.size => {
                    return Err(self.error(Fault::WrongSize {
                        digest: descriptor.digest.clone(),
                        size,
                        expected: descriptor.size,
                    }));
                }
                Some(_) => {}
            }
            let is_index = spec::is_index(&descriptor.media_type);
            if !(is_index || spec::is_manifest(&descriptor.media_type)) {
                continue;
            }
            let document = self.read_document(&descriptor)?;
            let bad_json = |source| {
                self.error(Fault::BadJson {
                    file: LayoutDir::blob_file(&descriptor.digest),
                    source,
                })
            };
            if is_index {
                let child: Index = serde_json::from_slice(&document).map_err(bad_json)?;
                pending.extend(child.manifests);
            } else {
                let manifest: spec::Manifest =
                    serde_json::from_slice(&document).map_err(bad_json)?;
                pending.push(manifest.config);
                pending.extend(manifest.layers);
            }
        }
        // A directory written by `oci-build fetch` lists its packages too; the caller knows
        // that format (offline), the bundle only says which blobs it holds.
        let inputs = inputs(&sizes)?;
        Ok(VerifyReport {
            bundle: self.name.clone(),
            images: self.images().len(),
            blobs: sizes.len(),
            bytes,
            inputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn ref_names_that_could_act_as_paths_are_invalid() {
        for good in [
            "mlrun/mlrun:1.0",
            "library/python:3.11_slim",
            "a/b@sha256:00ff",
            "x:sha256-ab",
        ] {
            assert!(valid_ref_name(good), "{good}");
        }
        for bad in [
            "../../x", "/etc/x", "a//b", "a/./b", "", ".hidden", "a/../b:1", "a\nb",
        ] {
            assert!(!valid_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_round_trip_and_a_flipped_byte_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(dir.path(), "dir:test").unwrap();
        let data = b"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\",\"size\":0},\"layers\":[]}";
        let descriptor = Descriptor::new(
            spec::OCI_MANIFEST,
            Digest::of_bytes(data),
            data.len() as u64,
        );
        bundle.put_blob_bytes(&descriptor, data).unwrap();
        bundle
            .set_tag(
                "team/app:1.0",
                &descriptor,
                Some("registry.example/team/app:1.0"),
            )
            .unwrap();
        let reopened = Bundle::open(dir.path(), "dir:test").unwrap();
        assert_eq!(reopened.tags("team/app"), vec!["1.0".to_owned()]);
        assert_eq!(reopened.images()[0].1, "registry.example/team/app:1.0");
        // The config is missing: verify names it.
        let error = reopened.verify().unwrap_err().to_string();
        assert!(error.contains("is missing"), "{error}");

        let path = reopened.blob_path(&descriptor.digest);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
        let error = reopened.verify_blob(&descriptor).unwrap_err().to_string();
        assert!(
            error.contains(&format!("blobs/sha256/{}", descriptor.digest.hex()))
                && error.contains("corrupt"),
            "{error}"
        );
    }
}
