//! File-system helpers shared by every stage.
//!
//! Every file oci-build publishes (blobs, layouts, archives, the lock file, cache records,
//! credentials) is written to a temporary file beside its final path and renamed over it, so
//! a reader or a killed build never sees half a file. [`AtomicFile`] and [`write_atomic`] are
//! that sequence; [`Publish`] says who may read the result and whether it is fsync'd first.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

/// How a file is put into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Readable by everyone (0644) rather than left as temporary files are created (0600).
    public: bool,
    /// fsync'd before the rename, so that after a power failure the path holds the old or the
    /// new content, never an empty file.
    synced: bool,
}

impl Publish {
    /// 0644, like any file a build tool writes, so that skopeo, a web server or another user
    /// can read it: blobs, layouts, archives, the lock file.
    pub const PUBLIC: Publish = Publish {
        public: true,
        synced: false,
    };
    /// Left 0600 as created: files that may hold secrets, and cache files only this user reads.
    pub const PRIVATE: Publish = Publish {
        public: false,
        synced: false,
    };

    /// The same, fsync'd before the rename.
    pub const fn synced(self) -> Publish {
        Publish {
            synced: true,
            ..self
        }
    }
}

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it to its path,
/// and dropping it uncommitted removes it.
#[derive(Debug)]
pub struct AtomicFile {
    temp: NamedTempFile,
    path: PathBuf,
    publish: Publish,
}

impl AtomicFile {
    /// A temporary file in the directory of `path`, which must exist.
    pub fn create(path: &Path, publish: Publish) -> io::Result<AtomicFile> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        AtomicFile::create_in(dir, path, publish)
    }

    /// A temporary file in `temp_dir`, which must be on the filesystem of `path` (a cache's
    /// scratch directory) for the rename to work.
    pub fn create_in(temp_dir: &Path, path: &Path, publish: Publish) -> io::Result<AtomicFile> {
        Ok(AtomicFile {
            temp: NamedTempFile::new_in(temp_dir)?,
            path: path.to_owned(),
            publish,
        })
    }

    pub fn as_file(&self) -> &File {
        self.temp.as_file()
    }

    /// Sets the mode, fsyncs when asked, and renames the file to its path, replacing what was
    /// there.
    pub fn commit(self) -> io::Result<()> {
        persist(self.temp, &self.path, self.publish)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Replaces the file at `path` with `bytes`, atomically (see the module doc).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], publish: Publish) -> io::Result<()> {
    let mut file = AtomicFile::create(path, publish)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Renames a finished temporary file to `path` as `publish` says; for files whose name is known
/// only once written (a cache blob, named by its digest).
pub(crate) fn persist(temp: NamedTempFile, path: &Path, publish: Publish) -> io::Result<()> {
    if publish.synced {
        temp.as_file().sync_all()?;
    }
    if publish.public {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Moves a directory built under a temporary name to `dir`. When that fails, another build put
/// the same content there first; theirs is as good as ours, and ours is removed.
pub(crate) fn publish_dir(temp: TempDir, dir: &Path) {
    let kept = temp.keep();
    if std::fs::rename(&kept, dir).is_err() {
        let _ = std::fs::remove_dir_all(&kept);
    }
}

/// Holds an exclusive advisory lock on a directory until dropped. Two oci-build processes that
/// read, change and rewrite a file of that directory (a lock file, an OCI layout's
/// `index.json`) take it around the whole sequence, so neither loses the other's update.
/// Readers need none: files are replaced by rename, whole.
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

impl DirLock {
    /// Waits for the lock on `dir`, which must exist.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let handle = File::open(dir)?;
        handle.lock()?;
        Ok(DirLock { _dir: handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_atomic_write_replaces_the_file_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", Publish::PUBLIC).unwrap();
        assert_eq!(
            (std::fs::read(&path).unwrap(), mode(&path)),
            (b"one".to_vec(), 0o644)
        );
        write_atomic(&path, b"two", Publish::PRIVATE.synced()).unwrap();
        assert_eq!(
            (std::fs::read(&path).unwrap(), mode(&path)),
            (b"two".to_vec(), 0o600)
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file is left"
        );
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = AtomicFile::create(&path, Publish::PUBLIC).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let other = File::open(dir.path()).unwrap();
        assert!(other.try_lock().is_err(), "the lock is not exclusive");
        drop(first);
        assert!(
            other.try_lock().is_ok(),
            "dropping the guard did not unlock"
        );
    }
}
