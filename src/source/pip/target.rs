//! The Python an image runs: its exact version, the wheel tags it accepts and the marker
//! environment that requirements are evaluated in. Never the host's.

use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

use super::scan::PythonBase;
use super::{InstallScheme, PipError, PipSpec};
use crate::layer::ImagePath;

/// The C library of the image, which decides its manylinux or musllinux tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Libc {
    Glibc { major: u32, minor: u32 },
    Musl { major: u32, minor: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PythonTarget {
    /// The full version (`3.11.2`): markers use it, not the host's.
    pub version: String,
    /// The wheel platform machine (`x86_64`, `aarch64`).
    pub machine: String,
    pub libc: Libc,
    pub scheme: InstallScheme,
}

impl PythonTarget {
    pub fn major_minor(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(3), parts.next().unwrap_or(0))
    }

    pub fn full_version(&self) -> Version {
        Version::from_str(&self.version).expect("target versions are checked when detected")
    }

    /// The marker environment of the image (PEP 508), for CPython on Linux.
    pub fn marker_environment(&self) -> MarkerEnvironment {
        let (major, minor) = self.major_minor();
        let short = format!("{major}.{minor}");
        MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &self.version,
            os_name: "posix",
            platform_machine: &self.machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: "Linux",
            platform_version: "",
            python_full_version: &self.version,
            python_version: &short,
            sys_platform: "linux",
        })
        .expect("the marker environment's versions are valid")
    }

    /// Every tag the image's interpreter accepts, most specific first (the order pip's
    /// `packaging.tags.sys_tags` gives, so that the same wheel is chosen).
    pub fn compatible_tags(&self) -> Vec<(String, String, String)> {
        let (major, minor) = self.major_minor();
        let platforms = self.platform_tags();
        let cp = format!("cp{major}{minor}");
        let mut tags = Vec::new();
        let mut push = |py: &str, abi: &str, plat: &str| {
            tags.push((py.to_owned(), abi.to_owned(), plat.to_owned()));
        };
        for plat in &platforms {
            push(&cp, &cp, plat);
        }
        for plat in &platforms {
            push(&cp, "abi3", plat);
        }
        for plat in &platforms {
            push(&cp, "none", plat);
        }
        // abi3 wheels built for older CPythons run on newer ones.
        for older in (2..minor).rev() {
            for plat in &platforms {
                push(&format!("cp{major}{older}"), "abi3", plat);
            }
        }
        let mut py_versions = vec![format!("py{major}{minor}"), format!("py{major}")];
        py_versions.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
        for py in &py_versions {
            for plat in &platforms {
                push(py, "none", plat);
            }
        }
        push(&cp, "none", "any");
        for py in &py_versions {
            push(py, "none", "any");
        }
        tags
    }

    fn platform_tags(&self) -> Vec<String> {
        let arch = &self.machine;
        let mut plats = Vec::new();
        match self.libc {
            Libc::Glibc { major, minor } => {
                // manylinux_2_17 is the oldest any current architecture other than x86 had.
                let oldest = if arch == "x86_64" || arch == "i686" {
                    5
                } else {
                    17
                };
                if major == 2 {
                    for m in (oldest..=minor).rev() {
                        plats.push(format!("manylinux_2_{m}_{arch}"));
                        // The legacy aliases sit where their glibc version does.
                        match m {
                            17 => plats.push(format!("manylinux2014_{arch}")),
                            12 => plats.push(format!("manylinux2010_{arch}")),
                            5 => plats.push(format!("manylinux1_{arch}")),
                            _ => {}
                        }
                    }
                }
            }
            Libc::Musl { major, minor } => {
                for m in (0..=minor).rev() {
                    plats.push(format!("musllinux_{major}_{m}_{arch}"));
                }
            }
        }
        plats.push(format!("linux_{arch}"));
        plats
    }

    /// The rank of a wheel's best tag (lower is better), or None where the image cannot use it.
    pub fn wheel_rank(
        tags: &[(String, String, String)],
        python: &[String],
        abi: &[String],
        platform: &[String],
    ) -> Option<usize> {
        tags.iter().position(|(p, a, pl)| {
            python.iter().any(|x| x == p) && abi.iter().any(|x| x == a) && platform.contains(pl)
        })
    }
}

/// Wheel platform machine names for an OCI architecture.
pub(crate) fn wheel_machine(architecture: &str, variant: Option<&str>) -> String {
    match (architecture, variant) {
        ("amd64", _) => "x86_64".to_owned(),
        ("arm64", _) => "aarch64".to_owned(),
        ("386", _) => "i686".to_owned(),
        ("arm", Some("v7")) => "armv7l".to_owned(),
        ("ppc64le", _) => "ppc64le".to_owned(),
        ("s390x", _) => "s390x".to_owned(),
        (other, _) => other.to_owned(),
    }
}

fn dpkg_version(status: &str, package: &str) -> Option<String> {
    let mut name_matches = false;
    let mut installed = false;
    let mut version = None;
    for line in status.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if name_matches && installed {
                return version;
            }
            name_matches = false;
            installed = false;
            version = None;
        } else if let Some(name) = line.strip_prefix("Package: ") {
            name_matches = name.trim() == package;
        } else if let Some(state) = line.strip_prefix("Status: ") {
            installed = state.trim().ends_with(" installed");
        } else if let Some(v) = line.strip_prefix("Version: ") {
            version = Some(v.trim().to_owned());
        }
    }
    None
}

/// Debian version `2.36-9+deb12u7` or `1:3.11.2-6` → upstream `2.36`, `3.11.2`.
fn upstream(debian_version: &str) -> &str {
    let without_epoch = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, rest)| rest);
    without_epoch
        .rsplit_once('-')
        .map_or(without_epoch, |(upstream, _)| upstream)
}

/// The Python of the image below (or the one the layer states), the platform it runs on, and
/// where its pip would install: read from the base's dpkg status, conda environments and
/// interpreter directories, never from the host.
pub(super) fn detect_target(
    spec: &PipSpec,
    base: &PythonBase,
    architecture: &str,
    variant: Option<&str>,
) -> Result<PythonTarget, PipError> {
    let status = &base.dpkg_status;
    // (prefix of the interpreter, version, Debian's dist-packages layout)
    let found: Option<(String, String, bool)> =
        if let Some((prefix, version)) = base.conda_pythons.last() {
            Some((prefix.clone(), version.clone(), false))
        } else if let Some(minor) = (6..=20)
            .rev()
            .find(|m| dpkg_version(status, &format!("libpython3.{m}-minimal")).is_some())
        {
            let version =
                dpkg_version(status, &format!("libpython3.{minor}-minimal")).expect("just found");
            Some(("/usr".to_owned(), upstream(&version).to_owned(), true))
        } else if let Some(dir) = base
            .stdlib_dirs
            .iter()
            .find(|d| d.starts_with("/usr/local/lib/"))
        {
            let short = dir.trim_start_matches("/usr/local/lib/python").to_owned();
            let version = base.env.get("PYTHON_VERSION").cloned().unwrap_or(short);
            Some(("/usr/local".to_owned(), version, false))
        } else {
            None
        };
    let (prefix, mut version, debian) = match (found, &spec.python) {
        (Some(found), _) => found,
        (None, Some(_)) => ("/usr/local".to_owned(), String::new(), false),
        (None, None) => return Err(PipError::NoPython),
    };
    if let Some(stated) = &spec.python {
        version = stated.clone();
    }
    let parts: Vec<&str> = version.split('.').collect();
    // Digits only: `parse::<u32>` alone takes `+11`, which no PEP 440 version has, and the
    // target's version must parse as one (`PythonTarget::full_version`).
    let number = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() < 2
        || !parts.iter().all(number)
        || parts.iter().any(|p| p.parse::<u32>().is_err())
        || Version::from_str(&version).is_err()
    {
        return Err(PipError::BadPython(version));
    }
    if let Some(venv) = &spec.venv {
        // It becomes image paths (`<venv>/pyvenv.cfg`, the site directory).
        let fits = venv.starts_with('/')
            && !venv.contains(|c: char| c.is_control())
            && ImagePath::new(&format!("{venv}/pyvenv.cfg")).is_ok();
        if !fits {
            return Err(PipError::BadVenv(venv.escape_debug().to_string()));
        }
    }
    let short = format!("{}.{}", parts[0], parts[1]);
    let libc = if let Some(glibc) = dpkg_version(status, "libc6") {
        let upstream = upstream(&glibc);
        let mut numbers = upstream.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Libc::Glibc {
            major: numbers.next().unwrap_or(2),
            minor: numbers.next().unwrap_or(0),
        }
    } else if base.musl {
        Libc::Musl { major: 1, minor: 2 }
    } else if let Some(glibc) = base.env.get("OCI_BUILD_GLIBC") {
        let mut numbers = glibc.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Libc::Glibc {
            major: numbers.next().unwrap_or(2),
            minor: numbers.next().unwrap_or(0),
        }
    } else {
        return Err(PipError::NoLibc);
    };
    let interpreter = format!("{prefix}/bin/python{short}");
    let scheme = match (&spec.venv, debian) {
        (Some(venv), _) => {
            let venv = venv.trim_end_matches('/');
            let site = format!("{venv}/lib/python{short}/site-packages");
            InstallScheme {
                purelib: site.clone(),
                platlib: site,
                scripts: format!("{venv}/bin"),
                data: venv.to_owned(),
                headers: format!("{venv}/include/site/python{short}"),
                interpreter: format!("{venv}/bin/python"),
            }
        }
        (None, true) => InstallScheme::debian(&short, interpreter),
        (None, false) => InstallScheme {
            purelib: format!("{prefix}/lib/python{short}/site-packages"),
            platlib: format!("{prefix}/lib/python{short}/site-packages"),
            scripts: format!("{prefix}/bin"),
            data: prefix.clone(),
            headers: format!("{prefix}/include/python{short}"),
            interpreter,
        },
    };
    Ok(PythonTarget {
        version,
        machine: wheel_machine(architecture, variant),
        libc,
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(machine: &str, libc: Libc) -> PythonTarget {
        PythonTarget {
            version: "3.11.2".to_owned(),
            machine: machine.to_owned(),
            libc,
            scheme: InstallScheme {
                purelib: String::new(),
                platlib: String::new(),
                scripts: String::new(),
                data: String::new(),
                headers: String::new(),
                interpreter: String::new(),
            },
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ranks_wheels_like_pip() {
        let t = target(
            "x86_64",
            Libc::Glibc {
                major: 2,
                minor: 36,
            },
        );
        let tags = t.compatible_tags();
        let rank = |py: &[&str], abi: &[&str], plat: &[&str]| {
            PythonTarget::wheel_rank(&tags, &strings(py), &strings(abi), &strings(plat))
        };
        let native = rank(
            &["cp311"],
            &["cp311"],
            &["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
        );
        let abi3 = rank(&["cp38"], &["abi3"], &["manylinux_2_17_x86_64"]);
        let pure = rank(&["py3"], &["none"], &["any"]);
        assert!(native.unwrap() < abi3.unwrap() && abi3.unwrap() < pure.unwrap());
        // Newer glibc than the image's, another Python, another machine: unusable.
        assert_eq!(
            rank(&["cp311"], &["cp311"], &["manylinux_2_38_x86_64"]),
            None
        );
        assert_eq!(
            rank(&["cp312"], &["cp312"], &["manylinux_2_17_x86_64"]),
            None
        );
        assert_eq!(
            rank(&["cp311"], &["cp311"], &["manylinux_2_17_aarch64"]),
            None
        );
        assert_eq!(
            rank(&["cp311"], &["cp311"], &["musllinux_1_1_x86_64"]),
            None
        );
        let arm = target(
            "aarch64",
            Libc::Glibc {
                major: 2,
                minor: 31,
            },
        )
        .compatible_tags();
        assert!(
            PythonTarget::wheel_rank(
                &arm,
                &strings(&["cp311"]),
                &strings(&["cp311"]),
                &strings(&["manylinux2014_aarch64"])
            )
            .is_some()
        );
        let musl = target("x86_64", Libc::Musl { major: 1, minor: 2 }).compatible_tags();
        assert!(
            PythonTarget::wheel_rank(
                &musl,
                &strings(&["cp311"]),
                &strings(&["cp311"]),
                &strings(&["musllinux_1_1_x86_64"])
            )
            .is_some()
        );
        assert!(
            PythonTarget::wheel_rank(
                &musl,
                &strings(&["cp311"]),
                &strings(&["cp311"]),
                &strings(&["manylinux2014_x86_64"])
            )
            .is_none()
        );
    }

    #[test]
    fn markers_see_the_target_not_the_host() {
        let env = target(
            "aarch64",
            Libc::Glibc {
                major: 2,
                minor: 36,
            },
        )
        .marker_environment();
        let req = |s: &str| {
            pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(s)
                .unwrap()
                .marker
        };
        assert!(req("a; python_full_version < '3.11.5'").evaluate(&env, &[]));
        assert!(!req("a; python_full_version >= '3.11.5'").evaluate(&env, &[]));
        assert!(
            req("a; platform_machine == 'aarch64' and sys_platform == 'linux'").evaluate(&env, &[])
        );
        assert!(!req("a; platform_machine == 'x86_64'").evaluate(&env, &[]));
    }
}
