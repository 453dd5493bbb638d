//! Distributions the layers below installed, and replacing one by another version as pip
//! does: the files its RECORD lists and its `.dist-info` directory are removed with whiteouts,
//! and the new version is installed in the same layer.
//!
//! RECORD comes from the layers below, which may be a pulled base: its paths are resolved
//! against the site directory and must stay inside the install prefix (`/usr/local`, the
//! venv, the conda prefix); a path leaving it is refused, not whited out.

use std::collections::BTreeMap;
use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::{Requirement, VerbatimUrl};

use super::InstallScheme;
use super::scan::PythonBase;
use crate::layer::{Entry, ImagePath, LayerTree};

/// A distribution installed below in the site directory a `pip` layer installs into.
#[derive(Clone, Debug)]
pub struct InstalledDist {
    pub version: Version,
    /// Its Requires-Dist as its METADATA below states them; None where that could not be read
    /// (the index's metadata of the same version is used instead).
    pub requires: Option<Vec<Requirement<VerbatimUrl>>>,
    /// A base image's reference or a recipe's layer (`mlrun/mlrun:1.12.1`, `app layer 1`).
    pub origin: String,
    /// Its `.dist-info` directory, an image path.
    pub dist_info: String,
    /// RECORD's paths, relative to the site directory; None where there is no RECORD to read
    /// (an egg or a distutils install, which pip cannot uninstall either).
    pub record: Option<Vec<String>>,
}

/// Why an installed distribution cannot be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error(
        "{name} {version} (installed in {origin}) cannot be replaced by {new}: it has no readable RECORD listing its files (an egg or distutils install, which pip cannot uninstall either)"
    )]
    NoRecord {
        name: String,
        version: String,
        origin: String,
        new: String,
    },
    #[error(
        "{name} {version} (installed in {origin}) cannot be replaced: its RECORD lists `{path}`, which is outside {prefix}"
    )]
    Outside {
        name: String,
        version: String,
        origin: String,
        path: String,
        prefix: String,
    },
}

/// The distributions of `base` installed in `site`, by normalised name.
pub(crate) fn installed_in(base: &PythonBase, site: &str) -> BTreeMap<String, InstalledDist> {
    let mut installed = BTreeMap::new();
    for dist in base.distributions.iter().filter(|d| d.site == site) {
        let Ok(version) = Version::from_str(&dist.version) else {
            continue;
        };
        let dist_info = format!("{}/{}-{}.dist-info", dist.site, dist.name, dist.version);
        // Scans keep no such names; a registry cache's record is outside input.
        if ImagePath::new(&dist_info).is_err() {
            continue;
        }
        let requires = dist.files.metadata.as_ref().and_then(|header| {
            super::metadata::parse(header.as_bytes(), &dist_info)
                .ok()
                .map(|meta| meta.requires_dist)
        });
        installed.insert(
            super::wheel::normalize_name(&dist.name),
            InstalledDist {
                version,
                requires,
                origin: dist.origin.clone(),
                dist_info,
                record: dist.files.record.clone(),
            },
        );
    }
    installed
}

/// Whites out what `old` installed (the files its RECORD lists, its `.dist-info`), except the
/// paths `tree` writes anew. `new` is the version replacing it, for messages.
pub(crate) fn remove_installed(
    tree: &mut LayerTree,
    name: &str,
    old: &InstalledDist,
    new: &str,
    scheme: &InstallScheme,
) -> Result<(), ReplaceError> {
    let record = old.record.as_ref().ok_or_else(|| ReplaceError::NoRecord {
        name: name.to_owned(),
        version: old.version.to_string(),
        origin: old.origin.clone(),
        new: new.to_owned(),
    })?;
    let prefix = scheme.data.trim_end_matches('/');
    let site = scheme.purelib.trim_end_matches('/');
    let dist_info = ImagePath::new(&old.dist_info).expect("scanned dist-info paths are clean");
    let outside = |path: &str| ReplaceError::Outside {
        name: name.to_owned(),
        version: old.version.to_string(),
        origin: old.origin.clone(),
        path: path.escape_debug().to_string(),
        prefix: prefix.to_owned(),
    };
    let mut removed = vec![dist_info.clone()];
    for listed in record {
        let path = resolve(site, listed)
            .filter(|p| p.starts_with(&format!("{prefix}/")))
            .and_then(|p| ImagePath::new(&p).ok())
            .ok_or_else(|| outside(listed))?;
        if path == dist_info || path.ancestors().any(|a| a == dist_info) {
            continue;
        }
        removed.push(path);
    }
    // The new version's file replaces the old one: no whiteout in the same layer.
    let written: std::collections::BTreeSet<ImagePath> = tree
        .paths()
        .flat_map(|p| p.ancestors().chain(std::iter::once(p.clone())))
        .collect();
    for path in removed {
        if written.contains(&path) {
            continue;
        }
        tree.insert(path, Entry::whiteout());
    }
    Ok(())
}

/// `listed` (relative to `site`, or absolute) as an absolute path with `.` and `..` resolved;
/// None where it climbs above `/` or holds a control character.
fn resolve(site: &str, listed: &str) -> Option<String> {
    if listed.contains(|c: char| c.is_control()) || listed.is_empty() {
        return None;
    }
    let joined = if listed.starts_with('/') {
        listed.to_owned()
    } else {
        format!("{site}/{listed}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::EntryKind;

    fn scheme() -> InstallScheme {
        InstallScheme::debian("3.11", "/usr/bin/python3.11".to_owned())
    }

    fn old(record: &[&str]) -> InstalledDist {
        InstalledDist {
            version: Version::from_str("2.0").unwrap(),
            requires: None,
            origin: "base layer 1".to_owned(),
            dist_info: "/usr/local/lib/python3.11/dist-packages/dep-2.0.dist-info".to_owned(),
            record: Some(record.iter().map(|p| (*p).to_owned()).collect()),
        }
    }

    fn whiteouts(tree: &LayerTree) -> Vec<String> {
        tree.paths()
            .filter(|p| matches!(tree.get(p).unwrap().kind, EntryKind::Whiteout))
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn whites_out_the_record_and_the_dist_info_but_not_what_the_layer_writes() {
        let mut tree = LayerTree::default();
        let site = "/usr/local/lib/python3.11/dist-packages";
        tree.insert(
            ImagePath::new(&format!("{site}/dep/__init__.py")).unwrap(),
            crate::source::tree_util::inline_file("new".to_owned(), 0o644),
        );
        let record = [
            "dep/__init__.py",
            "dep/old.py",
            "dep-2.0.dist-info/METADATA",
            "dep-2.0.dist-info/RECORD",
            "../../../bin/dep-tool",
            "./dep/./x.py",
        ];
        remove_installed(&mut tree, "dep", &old(&record), "1.5", &scheme()).unwrap();
        assert_eq!(
            whiteouts(&tree),
            [
                "/usr/local/bin/dep-tool",
                "/usr/local/lib/python3.11/dist-packages/dep-2.0.dist-info",
                "/usr/local/lib/python3.11/dist-packages/dep/old.py",
                "/usr/local/lib/python3.11/dist-packages/dep/x.py",
            ]
        );
    }

    /// A hostile RECORD below: nothing outside the install prefix is whited out.
    #[test]
    fn refuses_record_paths_outside_the_prefix() {
        for listed in [
            "../../../../../etc/passwd",
            "../../../../../../../../../etc/shadow",
            "/etc/cron.d/x",
            "dep/\nx",
            "",
        ] {
            let mut tree = LayerTree::default();
            let error = remove_installed(&mut tree, "dep", &old(&[listed]), "1.5", &scheme())
                .expect_err(listed);
            assert!(matches!(error, ReplaceError::Outside { .. }), "{error}");
            assert!(!error.to_string().contains('\n'), "{error}");
            assert!(whiteouts(&tree).is_empty());
        }
        let mut no_record = old(&[]);
        no_record.record = None;
        let error = remove_installed(
            &mut LayerTree::default(),
            "dep",
            &no_record,
            "1.5",
            &scheme(),
        )
        .unwrap_err();
        assert!(matches!(error, ReplaceError::NoRecord { .. }), "{error}");
    }
}
