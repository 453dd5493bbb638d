//! `pip` layers: Python packages resolved from a package index, pinned in the lock file and
//! installed from wheels without running pip or the image's interpreter.
//!
//! Pipeline: requirements (recipe lines and requirements files) → target (the image's Python
//! and platform, read from the layers below) → resolution against the index's PEP 691 pages and
//! PEP 658 metadata → lock → download with hash checks → wheels installed into a layer tree.

pub mod wheel;

/// Where a wheel's parts go in the image, as the image's own pip would put them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InstallScheme {
    /// Pure-Python modules (`/usr/local/lib/python3.11/dist-packages` on Debian).
    pub purelib: String,
    /// Compiled modules; the same directory as `purelib` on Debian and in venvs.
    pub platlib: String,
    /// Console scripts and `.data/scripts` (`/usr/local/bin`).
    pub scripts: String,
    /// `.data/data` files, relative to this prefix (`/usr/local`).
    pub data: String,
    /// `.data/headers` go to `<headers>/<distribution name>`.
    pub headers: String,
    /// The interpreter that generated scripts name in their `#!` line.
    pub interpreter: String,
}
