//! File-system helpers shared by every stage.

use std::fs::File;
use std::io;
use std::path::Path;

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
