//! Choosing the packages to install, the way `apt-get install --no-install-recommends` does
//! for a fresh image.
//!
//! Each requested package, then each Pre-Depends and Depends group of what was chosen, is
//! satisfied in order: by something already installed (a lower layer) or chosen, else by the
//! first alternative with a real package of a fitting version (the highest such version), else
//! by a package that Provides it (the first by name, so the choice never depends on index
//! order). Recommends and Suggests are not followed. Conflicts and Breaks among the result are
//! reported. The choice is deterministic: same indexes, same answer.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::version::{Alternatives, Dependency, Version};

/// One binary package from a Packages index.
#[derive(Clone, Debug)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub essential: bool,
    pub priority: String,
    /// Pre-Depends first, then Depends.
    pub depends: Vec<Alternatives>,
    /// Conflicts and Breaks.
    pub conflicts: Vec<Dependency>,
    pub provides: Vec<Dependency>,
}

/// A package of a lower layer.
#[derive(Clone, Debug)]
pub(crate) struct Installed {
    pub version: Version,
    pub provides: Vec<Dependency>,
    /// Conflicts and Breaks.
    pub conflicts: Vec<Dependency>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot install {chain}: {reason}")]
    Unsatisfiable { chain: String, reason: String },
    #[error("{a} conflicts with {b}, and both are needed ({a} by {a_chain}; {b} by {b_chain})")]
    Conflict {
        a: String,
        b: String,
        a_chain: String,
        b_chain: String,
    },
}

/// The packages of one architecture (plus `all`), newest version first per name.
pub(crate) struct Universe {
    by_name: HashMap<String, Vec<Package>>,
    /// Virtual name → (package name, version) of each provider.
    providers: HashMap<String, Vec<(String, Version)>>,
}

impl Universe {
    pub(crate) fn new(packages: impl IntoIterator<Item = Package>, arch: &str) -> Universe {
        let mut by_name: HashMap<String, Vec<Package>> = HashMap::new();
        for package in packages {
            if package.architecture == arch || package.architecture == "all" {
                by_name
                    .entry(package.name.clone())
                    .or_default()
                    .push(package);
            }
        }
        let mut providers: HashMap<String, Vec<(String, Version)>> = HashMap::new();
        for versions in by_name.values_mut() {
            versions.sort_by(|a, b| b.version.cmp(&a.version));
            versions.dedup_by(|a, b| a.version == b.version);
            for package in versions.iter() {
                for provided in &package.provides {
                    providers
                        .entry(provided.name.clone())
                        .or_default()
                        .push((package.name.clone(), package.version.clone()));
                }
            }
        }
        for list in providers.values_mut() {
            list.sort();
            list.dedup();
        }
        Universe { by_name, providers }
    }

    pub(crate) fn versions(&self, name: &str) -> &[Package] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Names of the packages an image starts with: Essential ones and Priority: required.
    pub(crate) fn required(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_name
            .values()
            .filter_map(|versions| versions.first())
            .filter(|p| p.essential || p.priority == "required")
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names
    }
}

struct State<'u> {
    universe: &'u Universe,
    installed: &'u BTreeMap<String, Installed>,
    chosen: BTreeMap<String, &'u Package>,
    /// Why each chosen package is there: the chain of names from the request.
    why: BTreeMap<String, Vec<String>>,
}

fn display(alternatives: &Alternatives) -> String {
    alternatives
        .iter()
        .map(|d| match &d.version {
            Some((relation, version)) => format!("{} ({relation} {version})", d.name),
            None => d.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

impl<'u> State<'u> {
    fn satisfied(&self, dependency: &Dependency) -> bool {
        let version_ok = |v: &Version| dependency.matches_version(v);
        if let Some(installed) = self.installed.get(&dependency.name)
            && version_ok(&installed.version)
        {
            return true;
        }
        if let Some(package) = self.chosen.get(&dependency.name)
            && version_ok(&package.version)
        {
            return true;
        }
        let provides = |provided: &Dependency| {
            provided.name == dependency.name
                && match (&dependency.version, &provided.version) {
                    (None, _) => true,
                    (Some(_), Some((_, v))) => version_ok(v),
                    (Some(_), None) => false,
                }
        };
        self.chosen
            .values()
            .any(|p| p.provides.iter().any(provides))
            || self
                .installed
                .values()
                .any(|i| i.provides.iter().any(provides))
    }

    /// The package that satisfies `dependency` if installed now, if any.
    fn pick(&self, dependency: &Dependency) -> Option<&'u Package> {
        let universe: &'u Universe = self.universe;
        if let Some(package) = universe
            .versions(&dependency.name)
            .iter()
            .find(|p| dependency.matches_version(&p.version))
        {
            return Some(package);
        }
        let providers = universe.providers.get(&dependency.name)?;
        providers.iter().find_map(|(name, version)| {
            let package = universe
                .versions(name)
                .iter()
                .find(|p| &p.version == version)?;
            let provided = package
                .provides
                .iter()
                .find(|d| d.name == dependency.name)?;
            let fits = match (&dependency.version, &provided.version) {
                (None, _) => true,
                (Some(_), Some((_, v))) => dependency.matches_version(v),
                (Some(_), None) => false,
            };
            fits.then_some(package)
        })
    }

    fn reason(&self, alternatives: &Alternatives) -> String {
        let mut reasons = Vec::new();
        for dependency in alternatives {
            let versions = self.universe.versions(&dependency.name);
            if versions.is_empty() && !self.universe.providers.contains_key(&dependency.name) {
                reasons.push(format!("no package {} in the indexes", dependency.name));
            } else {
                let available: Vec<String> =
                    versions.iter().map(|p| p.version.to_string()).collect();
                reasons.push(format!(
                    "{} is available only as {}",
                    dependency.name,
                    if available.is_empty() {
                        "a virtual package with no fitting provider".to_owned()
                    } else {
                        available.join(", ")
                    }
                ));
            }
        }
        reasons.join("; ")
    }
}

/// Whether `conflict` (of a package named `owner`) hits a package `name` at `version` that
/// provides `provides`. An unversioned conflict on a virtual name hits every provider but the
/// owner itself (Debian Policy §7.6.2).
fn hits(
    conflict: &Dependency,
    owner: &str,
    name: &str,
    version: &Version,
    provides: &[Dependency],
) -> bool {
    if name == owner {
        return false;
    }
    (conflict.name == name && conflict.matches_version(version))
        || (conflict.version.is_none() && provides.iter().any(|p| p.name == conflict.name))
}

/// Conflicts and Breaks among the chosen packages and against the lower layers, both ways.
fn check_conflicts(state: &State<'_>) -> Result<(), ResolveError> {
    let lower = "a lower layer".to_owned();
    let clash = |a: String, a_chain: String, b: String, b_chain: String| ResolveError::Conflict {
        a,
        b,
        a_chain,
        b_chain,
    };
    for package in state.chosen.values() {
        let a = format!("{} {}", package.name, package.version);
        let a_chain = state.why[&package.name].join(" → ");
        for conflict in &package.conflicts {
            for other in state.chosen.values() {
                if hits(
                    conflict,
                    &package.name,
                    &other.name,
                    &other.version,
                    &other.provides,
                ) {
                    let b = format!("{} {}", other.name, other.version);
                    return Err(clash(a, a_chain, b, state.why[&other.name].join(" → ")));
                }
            }
            for (name, installed) in state.installed {
                if hits(
                    conflict,
                    &package.name,
                    name,
                    &installed.version,
                    &installed.provides,
                ) {
                    let b = format!("{name} {}", installed.version);
                    return Err(clash(a, a_chain, b, lower));
                }
            }
        }
    }
    for (name, installed) in state.installed {
        for conflict in &installed.conflicts {
            for other in state.chosen.values() {
                if hits(conflict, name, &other.name, &other.version, &other.provides) {
                    let a = format!("{name} {}", installed.version);
                    let b = format!("{} {}", other.name, other.version);
                    return Err(clash(a, lower, b, state.why[&other.name].join(" → ")));
                }
            }
        }
    }
    Ok(())
}

/// Resolves `requests` (and, with `required`, the Essential/required set) on top of
/// `installed`. Returns the packages to add, sorted by name.
pub(crate) fn resolve<'u>(
    universe: &'u Universe,
    requests: &[Dependency],
    installed: &'u BTreeMap<String, Installed>,
    required: bool,
) -> Result<Vec<&'u Package>, ResolveError> {
    let mut state = State {
        universe,
        installed,
        chosen: BTreeMap::new(),
        why: BTreeMap::new(),
    };
    let mut queue: VecDeque<(Alternatives, Vec<String>)> = VecDeque::new();
    if required {
        for name in universe.required() {
            queue.push_back((
                vec![Dependency {
                    name,
                    arch: None,
                    version: None,
                }],
                Vec::new(),
            ));
        }
    }
    for request in requests {
        queue.push_back((vec![request.clone()], Vec::new()));
    }
    while let Some((alternatives, chain)) = queue.pop_front() {
        if alternatives.iter().any(|d| state.satisfied(d)) {
            continue;
        }
        let Some(package) = alternatives.iter().find_map(|d| state.pick(d)) else {
            let mut path = chain.clone();
            path.push(display(&alternatives));
            return Err(ResolveError::Unsatisfiable {
                chain: path.join(" → "),
                reason: state.reason(&alternatives),
            });
        };
        // A different version of a chosen package is needed: apt would fail the same way.
        if let Some(existing) = state.chosen.get(&package.name)
            && existing.version != package.version
        {
            let mut path = chain.clone();
            path.push(display(&alternatives));
            return Err(ResolveError::Unsatisfiable {
                chain: path.join(" → "),
                reason: format!(
                    "{} {} is already chosen (for {})",
                    existing.name,
                    existing.version,
                    state.why[&existing.name].join(" → ")
                ),
            });
        }
        let mut child_chain = chain;
        child_chain.push(format!("{} {}", package.name, package.version));
        state.chosen.insert(package.name.clone(), package);
        state.why.insert(package.name.clone(), child_chain.clone());
        for group in &package.depends {
            queue.push_back((group.clone(), child_chain.clone()));
        }
    }

    check_conflicts(&state)?;
    Ok(state.chosen.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::debian::version::parse_relations;

    fn package(name: &str, version: &str, depends: &str, provides: &str) -> Package {
        Package {
            name: name.to_owned(),
            version: version.parse().unwrap(),
            architecture: "amd64".to_owned(),
            essential: false,
            priority: "optional".to_owned(),
            depends: parse_relations(depends).unwrap(),
            conflicts: Vec::new(),
            provides: parse_relations(provides)
                .unwrap()
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    fn request(text: &str) -> Vec<Dependency> {
        parse_relations(text)
            .unwrap()
            .into_iter()
            .flatten()
            .collect()
    }

    fn names(packages: &[&Package]) -> Vec<String> {
        packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    #[test]
    fn follows_depends_alternatives_and_provides_deterministically() {
        let universe = Universe::new(
            vec![
                package(
                    "app",
                    "1.0",
                    "libc6 (>= 2.36), mta | exim4, python3:any",
                    "",
                ),
                package("libc6", "2.35", "", ""),
                package("libc6", "2.36-9", "", ""),
                package("postfix", "3.7", "libc6", "mta"),
                package("exim4", "4.96", "", "mta"),
                package("python3", "3.11.2-1", "", ""),
            ],
            "amd64",
        );
        let installed = BTreeMap::new();
        let chosen = resolve(&universe, &request("app"), &installed, false).unwrap();
        // The virtual `mta` goes to the first provider by name, not the first in the index.
        assert_eq!(
            names(&chosen),
            ["app=1.0", "exim4=4.96", "libc6=2.36-9", "python3=3.11.2-1"]
        );
    }

    #[test]
    fn lower_layers_count_as_installed() {
        let universe = Universe::new(
            vec![
                package("app", "1", "libc6 (>= 2.30)", ""),
                package("libc6", "2.36", "", ""),
            ],
            "amd64",
        );
        let installed = BTreeMap::from([(
            "libc6".to_owned(),
            Installed {
                version: "2.36".parse().unwrap(),
                provides: Vec::new(),
                conflicts: Vec::new(),
            },
        )]);
        let chosen = resolve(&universe, &request("app"), &installed, false).unwrap();
        assert_eq!(names(&chosen), ["app=1"]);
    }

    #[test]
    fn unsatisfiable_dependencies_name_the_chain() {
        let universe = Universe::new(
            vec![
                package("python3", "3.11", "libpython3.11-stdlib (= 3.11)", ""),
                package("libpython3.11-stdlib", "3.11", "libffi8 (>= 3.4)", ""),
                package("libffi8", "3.3", "", ""),
            ],
            "amd64",
        );
        let installed = BTreeMap::new();
        let error = resolve(&universe, &request("python3"), &installed, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot install python3 3.11 → libpython3.11-stdlib 3.11 → libffi8 (>= 3.4): libffi8 is available only as 3.3"
        );
        let error = resolve(&universe, &request("nosuch"), &installed, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot install nosuch: no package nosuch in the indexes"
        );
    }

    #[test]
    fn conflicts_are_reported_with_both_reasons() {
        let mut a = package("a", "1", "", "");
        a.conflicts = request("b");
        let universe = Universe::new(vec![a, package("b", "1", "", "")], "amd64");
        let installed = BTreeMap::new();
        let error = resolve(&universe, &request("a, b"), &installed, false).unwrap_err();
        assert!(matches!(error, ResolveError::Conflict { .. }), "{error}");
    }

    #[test]
    fn conflicts_reach_providers_of_virtual_names_and_lower_layers() {
        let mut exim = package("exim", "4", "", "mta");
        exim.conflicts = request("mta");
        let universe = Universe::new(
            vec![
                exim,
                package("postfix", "3", "", "mta"),
                package("sendmail", "8", "", ""),
            ],
            "amd64",
        );
        let none = BTreeMap::new();
        // Conflicting with a virtual name it provides itself is how Debian says "only one MTA".
        assert!(resolve(&universe, &request("exim"), &none, false).is_ok());
        let error = resolve(&universe, &request("exim, postfix"), &none, false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("exim 4 conflicts with postfix 3"),
            "{error}"
        );

        let lower = BTreeMap::from([(
            "postfix".to_owned(),
            Installed {
                version: "3".parse().unwrap(),
                provides: request("mta"),
                conflicts: request("sendmail"),
            },
        )]);
        let error = resolve(&universe, &request("sendmail"), &lower, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "postfix 3 conflicts with sendmail 8, and both are needed (postfix 3 by a lower layer; sendmail 8 by sendmail 8)"
        );
    }

    #[test]
    fn required_set_and_other_architectures() {
        let mut base = package("base-files", "12", "", "");
        base.essential = true;
        let mut other = package("arm-only", "1", "", "");
        other.architecture = "arm64".to_owned();
        let mut all = package("tzdata", "2024a", "", "");
        all.architecture = "all".to_owned();
        all.priority = "required".to_owned();
        let universe = Universe::new(vec![base, other, all], "amd64");
        let installed = BTreeMap::new();
        let chosen = resolve(&universe, &[], &installed, true).unwrap();
        assert_eq!(names(&chosen), ["base-files=12", "tzdata=2024a"]);
        assert!(resolve(&universe, &request("arm-only"), &installed, false).is_err());
    }
}
