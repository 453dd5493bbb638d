//! Layer keys that mean the same on every machine, for a layer cache shared through a registry.
//!
//! The local key ([`super::layer_key`]) names host files by their stamp (path, inode, time),
//! which no other machine shares, and is known only once the layer's tree is listed, which for
//! a package layer means its packages are downloaded. A portable key is made of what decides
//! the layer's bytes and nothing of the machine:
//!
//! - a tree that is cheap to list (`files`, `accounts`, a layer that only removes): the tree as
//!   the local key sees it, with host files by the SHA256 of their bytes instead of their stamp;
//! - a package layer (Debian, pip, conda): its kind, the lock's key and inputs hash (the spec
//!   and what the layers below hold that resolving reads), the pins as the lock holds them, its
//!   `remove` and `replace` paths, and the diff_ids of every layer below (which decide what the
//!   install reads of them: the dpkg status, the Python there, the directories it keeps);
//!
//! and in both, oci-build's version (how inputs become bytes), the compressor, the time of
//! every entry and the platform.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::cache::{CacheKey, CacheKeyBuilder};
use super::{AssembleOptions, ImagePath, LayerTree};
use crate::digest::Digest;

/// What every portable key starts with.
fn start(kind: &str, options: &AssembleOptions, platform: &str) -> CacheKeyBuilder {
    let mut key = CacheKeyBuilder::new(kind);
    key.field(env!("CARGO_PKG_VERSION").as_bytes())
        .field(options.compression.cache_tag().as_bytes())
        .num(options.mtime)
        .field(platform.as_bytes());
    key
}

/// The portable key of a listed tree: host files by the hash of their bytes, read here.
pub fn tree_key(
    tree: &LayerTree,
    options: &AssembleOptions,
    platform: &str,
) -> io::Result<CacheKey> {
    let mut key = start("portable-tree-v1", options, platform);
    super::tree_fields(tree, &mut key, &mut |key, path, _stamp| {
        key.field(sha256_of_file(path)?.as_bytes());
        Ok(())
    })?;
    Ok(key.finish())
}

/// A package layer, as its lock entry pins it.
pub struct LockedLayer<'a> {
    /// The kind's section (`debian`, `pip`, `conda`).
    pub kind: &'a str,
    /// The lock entry's key field (architecture, platform, subdir) and inputs hash.
    pub lock_key: &'a str,
    pub inputs: &'a str,
    /// The pins, serialised as the lock file keeps them.
    pub pins: &'a str,
    pub remove: &'a [ImagePath],
    pub replace: &'a [ImagePath],
}

/// The portable key of a package layer on top of layers with the diff_ids `below`.
pub fn locked_key(
    layer: &LockedLayer<'_>,
    below: &[Digest],
    options: &AssembleOptions,
    platform: &str,
) -> CacheKey {
    let mut key = start("portable-locked-v1", options, platform);
    key.field(layer.kind.as_bytes())
        .field(layer.lock_key.as_bytes())
        .field(layer.inputs.as_bytes())
        .field(layer.pins.as_bytes());
    for (section, paths) in [("remove", layer.remove), ("replace", layer.replace)] {
        key.field(b"")
            .field(section.as_bytes())
            .num(paths.len() as u64);
        for path in paths {
            key.field(path.as_str().as_bytes());
        }
    }
    key.field(b"").field(b"below").num(below.len() as u64);
    for diff_id in below {
        key.field(diff_id.to_string().as_bytes());
    }
    key.finish()
}

/// `key` made valid for this oci-build executable only: with its size, time and inode. A
/// locked key says nothing of how pins become a tree, which is code: a release's version stands
/// for it in a registry cache, but a build of oci-build between releases keeps the version.
/// For a key used only in the local cache, any other executable (a rebuild, an upgrade) lists
/// the layer's tree again instead of taking a blob an older one made. None where the executable
/// cannot be found.
pub fn for_this_executable(key: &CacheKey) -> Option<CacheKey> {
    static IDENTITY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let identity = IDENTITY.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::env::current_exe()
            .and_then(std::fs::metadata)
            .inspect_err(
                |error| tracing::debug!(%error, "no locked keys: this executable is not found"),
            )
            .ok()?;
        Some(format!(
            "{} {}.{} {}:{}",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.dev(),
            meta.ino()
        ))
    });
    let mut local = CacheKeyBuilder::new("executable-v1");
    local
        .field(key.as_str().as_bytes())
        .field(identity.as_ref()?.as_bytes());
    Some(local.finish())
}

fn sha256_of_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, Content, Entry, EntryKind, FileStamp};

    fn options() -> AssembleOptions {
        AssembleOptions {
            mtime: 0,
            compression: Compression::Gzip,
            threads: 1,
        }
    }

    fn tree_of(path: &Path) -> LayerTree {
        let mut tree = LayerTree::default();
        tree.insert(
            ImagePath::new("/app/main.py").unwrap(),
            Entry {
                kind: EntryKind::File {
                    content: Content::Host {
                        path: path.to_owned(),
                        stamp: FileStamp::of(path),
                    },
                    size: std::fs::metadata(path).unwrap().len(),
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
        tree
    }

    /// The same bytes at another path (another checkout, another runner) give the same key;
    /// other bytes of the same size do not, nor does another platform.
    #[test]
    fn tree_keys_follow_file_bytes_not_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.py"), dir.path().join("b.py"));
        std::fs::write(&a, "print(1)\n").unwrap();
        std::fs::write(&b, "print(1)\n").unwrap();
        let key = |path: &Path, platform| tree_key(&tree_of(path), &options(), platform).unwrap();
        assert_eq!(key(&a, "linux/amd64"), key(&b, "linux/amd64"));
        assert_ne!(
            crate::layer::layer_key(&tree_of(&a), &options()),
            crate::layer::layer_key(&tree_of(&b), &options())
        );
        assert_ne!(key(&a, "linux/amd64"), key(&a, "linux/arm64"));
        std::fs::write(&b, "print(2)\n").unwrap();
        assert_ne!(key(&a, "linux/amd64"), key(&b, "linux/amd64"));
    }

    #[test]
    fn locked_keys_change_with_pins_and_with_the_layers_below() {
        let layer = |pins| LockedLayer {
            kind: "pip",
            lock_key: "linux/amd64",
            inputs: "abc",
            pins,
            remove: &[],
            replace: &[],
        };
        let below = [Digest::of_bytes(b"base")];
        let key =
            |pins, below: &[Digest]| locked_key(&layer(pins), below, &options(), "linux/amd64");
        assert_eq!(key("[1]", &below), key("[1]", &below));
        assert_ne!(key("[1]", &below), key("[2]", &below));
        assert_ne!(key("[1]", &below), key("[1]", &[]));
        let removing = [ImagePath::new("/tmp").unwrap()];
        let removes = LockedLayer {
            remove: &removing,
            ..layer("[1]")
        };
        assert_ne!(
            locked_key(&removes, &below, &options(), "linux/amd64"),
            key("[1]", &below)
        );
    }
}
