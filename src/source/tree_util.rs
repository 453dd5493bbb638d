//! Entries that the package sources make themselves rather than copy from a package: files of
//! their own text (a dpkg database, `/etc/passwd`, `conda-meta` records, a venv's config) and
//! symlinks, owned by root like what a package manager running as root writes.

use std::sync::Arc;

use crate::layer::{Content, Entry, EntryKind};

/// A file holding `bytes`, owned by root.
pub(crate) fn inline_file(bytes: impl Into<Vec<u8>>, mode: u32) -> Entry {
    let bytes: Vec<u8> = bytes.into();
    Entry {
        kind: EntryKind::File {
            size: bytes.len() as u64,
            content: Content::Inline(Arc::from(bytes)),
        },
        mode,
        uid: 0,
        gid: 0,
    }
}

/// A symlink to `target`, owned by root.
pub(crate) fn symlink(target: &str) -> Entry {
    Entry {
        kind: EntryKind::Symlink {
            target: target.to_owned(),
        },
        mode: 0o777,
        uid: 0,
        gid: 0,
    }
}
