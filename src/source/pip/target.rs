//! The Python an image runs: its exact version, the wheel tags it accepts and the marker
//! environment that requirements are evaluated in. Never the host's.

use std::str::FromStr;

use pep440_rs::Version;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

use super::InstallScheme;

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
