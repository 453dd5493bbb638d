//! Why no set of versions fits, in sentences about packages and versions: the solver's
//! derivation tree is reduced to what it rests on (who requires what, what the index lacks) and
//! the conflict among those is said the way pip says it ("app 1.0 requires dep<3,>=1, but the
//! layer asks for dep==3.0"). The solver's own wording (its synthetic root package and version,
//! `∅` for an empty range) never reaches the user.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use pep440_rs::Version;
use pubgrub::{DerivationTree, External, Ranges};

use super::Node;
use crate::source::pip::replace::InstalledDist;

/// What the resolution knows that its messages need.
pub(super) struct Told<'r> {
    /// Requirements as written, by the node and version stating them and the node required.
    pub texts: HashMap<(Node, Version, Node), Vec<String>>,
    pub below: &'r BTreeMap<String, InstalledDist>,
    /// Distributions below that the resolution kept at their version.
    pub pinned: &'r BTreeSet<String>,
}

type Tree = DerivationTree<Node, Ranges<Version>, String>;

/// One fact the failure rests on.
enum Fact<'t> {
    /// `from` (at versions `from_range`) requires `to` in `to_range`.
    Requires {
        from: &'t Node,
        from_range: &'t Ranges<Version>,
        to: &'t Node,
        to_range: &'t Ranges<Version>,
    },
    /// No usable version of the package in the range.
    NoVersions(&'t Node, &'t Ranges<Version>),
    /// The package in the range cannot be used, for the reason given.
    Unusable(&'t Node, &'t Ranges<Version>, &'t str),
}

/// The failure as one or a few sentences.
pub(super) fn sentences(tree: &Tree, told: &Told<'_>) -> String {
    let mut facts = Vec::new();
    collect(tree, &mut facts);
    if let Some(conflict) = conflict(&facts, told) {
        return conflict;
    }
    // No pair of facts says it alone: every fact, in the order the solver met them.
    let mut said: Vec<String> = Vec::new();
    for fact in &facts {
        let sentence = match fact {
            Fact::Requires {
                from,
                from_range,
                to,
                to_range,
            } => {
                // The solver's root takes itself as given; what it requires is what counts.
                if is_pin(from, to, told) {
                    continue;
                }
                requirement(from, from_range, to, to_range, told)
            }
            Fact::NoVersions(node, range) => no_versions(node, range),
            Fact::Unusable(node, range, why) => format!("{} {why}", who(node, range, told)),
        };
        if !said.contains(&sentence) {
            said.push(sentence);
        }
    }
    if said.is_empty() {
        return "no version of the requirements fits the image".to_owned();
    }
    said.join("; ")
}

fn collect<'t>(tree: &'t Tree, facts: &mut Vec<Fact<'t>>) {
    match tree {
        DerivationTree::External(External::NotRoot(..)) => {}
        DerivationTree::External(External::NoVersions(node, range)) => {
            if *node != Node::Root {
                facts.push(Fact::NoVersions(node, range));
            }
        }
        DerivationTree::External(External::FromDependencyOf(from, from_range, to, to_range)) => {
            facts.push(Fact::Requires {
                from,
                from_range,
                to,
                to_range,
            })
        }
        DerivationTree::External(External::Custom(node, range, why)) => {
            facts.push(Fact::Unusable(node, range, why))
        }
        DerivationTree::Derived(derived) => {
            collect(&derived.cause1, facts);
            collect(&derived.cause2, facts);
        }
    }
}

/// Two requirements of one package that no version meets both of, best with the layer's own
/// request as the second: "A requires P…, but the layer asks for P…".
fn conflict(facts: &[Fact<'_>], told: &Told<'_>) -> Option<String> {
    let requires: Vec<(&Node, &Ranges<Version>, &Node, &Ranges<Version>)> = facts
        .iter()
        .filter_map(|fact| match fact {
            Fact::Requires {
                from,
                from_range,
                to,
                to_range,
            } if !is_pin(from, to, told) => Some((*from, *from_range, *to, *to_range)),
            _ => None,
        })
        .collect();
    let missing = |node: &Node, range: &Ranges<Version>| {
        facts.iter().any(|fact| match fact {
            Fact::NoVersions(n, none) => *n == node && range.subset_of(none),
            _ => false,
        })
    };
    let mut pairs = Vec::new();
    for (i, first) in requires.iter().enumerate() {
        for second in &requires[i + 1..] {
            if first.2 != second.2 || first.0 == second.0 {
                continue;
            }
            let both = first.3.intersection(second.3);
            if !both.is_empty() && !missing(first.2, &both) {
                continue;
            }
            // The layer's request last, as the thing that asks for more; what stays below
            // first, as the thing that cannot change.
            let installed_second =
                is_installed(second.0, second.1, told) && !is_installed(first.0, first.1, told);
            let (a, b) = if *first.0 == Node::Root || (installed_second && *second.0 != Node::Root)
            {
                (second, first)
            } else {
                (first, second)
            };
            let mut sentence = format!(
                "{}, but {}",
                requirement(a.0, a.1, a.2, a.3, told),
                requirement(b.0, b.1, b.2, b.3, told)
            );
            if !both.is_empty() {
                sentence.push_str(&format!(", and {}", no_versions(a.2, &both)));
            }
            // Best: a conflict with the layer's own request, then one with what stays below.
            let rank = (*b.0 != Node::Root, !is_installed(a.0, a.1, told));
            pairs.push((rank, sentence));
        }
    }
    if let Some((_, sentence)) = pairs.into_iter().min_by(|x, y| x.0.cmp(&y.0)) {
        return Some(sentence);
    }
    // One requirement that nothing available meets.
    requires
        .iter()
        .find_map(|(from, from_range, to, to_range)| {
            missing(to, to_range).then(|| {
                format!(
                    "{}, but {}",
                    requirement(from, from_range, to, to_range, told),
                    no_versions(to, to_range)
                )
            })
        })
}

/// The solver's root requiring a distribution below at its installed version: no request of
/// the user's, only what keeps it in place.
fn is_pin(from: &Node, to: &Node, told: &Told<'_>) -> bool {
    *from == Node::Root
        && matches!(to, Node::Dist(name) if told.pinned.contains(name))
        && !told
            .texts
            .contains_key(&(Node::Root, Version::new([0]), to.clone()))
}

fn is_installed(node: &Node, range: &Ranges<Version>, told: &Told<'_>) -> bool {
    match node {
        Node::Dist(name) | Node::Extra(name, _) => told
            .below
            .get(name)
            .is_some_and(|i| range.as_singleton() == Some(&i.version)),
        Node::Root => false,
    }
}

/// "app 1.0 requires dep<3,>=1", "the layer asks for dep==3.0".
fn requirement(
    from: &Node,
    from_range: &Ranges<Version>,
    to: &Node,
    to_range: &Ranges<Version>,
    told: &Told<'_>,
) -> String {
    // The versions of `from` in the range that the solver read this requirement of: the
    // solver widens a range to versions it never looked at, which the message leaves out.
    let mut written: Vec<(&Version, String)> = told
        .texts
        .iter()
        .filter(|((f, version, t), _)| f == from && t == to && from_range.contains(version))
        .map(|((_, version, _), texts)| (version, texts.join(" and ")))
        .collect();
    written.sort();
    let same_text = written.windows(2).all(|w| w[0].1 == w[1].1);
    let (from_range, text) = match (written.as_slice(), from) {
        ([(_, text), ..], Node::Root) => (from_range.clone(), text.clone()),
        ([(version, text)], _) => (Ranges::singleton((*version).clone()), text.clone()),
        ([(_, text), ..], _) if same_text => (from_range.clone(), text.clone()),
        _ => (from_range.clone(), format!("{to} {}", range_text(to_range))),
    };
    match from {
        Node::Root => format!("the layer asks for {text}"),
        _ => format!("{} requires {text}", who(from, &from_range, told)),
    }
}

/// A distribution at some versions: "app 1.0", "app 1.0 (installed in base layer 2)",
/// "app >=2.0".
fn who(node: &Node, range: &Ranges<Version>, told: &Told<'_>) -> String {
    if let Node::Dist(name) | Node::Extra(name, _) = node
        && let Some(installed) = told.below.get(name)
        && range.as_singleton() == Some(&installed.version)
    {
        return format!(
            "{node} {} (installed in {})",
            installed.version, installed.origin
        );
    }
    match range.as_singleton() {
        Some(version) => format!("{node} {version}"),
        None if *range == Ranges::full() => format!("every version of {node}"),
        None => format!("{node} {}", range_text(range)),
    }
}

fn no_versions(node: &Node, range: &Ranges<Version>) -> String {
    if *range == Ranges::full() {
        format!("no version of {node} is available for the image")
    } else {
        format!(
            "no version of {node} {} is available for the image",
            range_text(range)
        )
    }
}

/// A range as specifiers: `>=1,<3`, `==2.0`, `<1 or >=2`; "any version" or "no version" at the
/// ends.
pub(super) fn range_text(range: &Ranges<Version>) -> String {
    if range.is_empty() {
        return "(no version)".to_owned();
    }
    if *range == Ranges::full() {
        return "(any version)".to_owned();
    }
    let segments: Vec<String> = range
        .iter()
        .map(|(low, high)| match (low, high) {
            (Bound::Included(a), Bound::Included(b)) if a == b => format!("=={a}"),
            _ => {
                let low = match low {
                    Bound::Included(v) => Some(format!(">={v}")),
                    Bound::Excluded(v) => Some(format!(">{v}")),
                    Bound::Unbounded => None,
                };
                let high = match high {
                    Bound::Included(v) => Some(format!("<={v}")),
                    Bound::Excluded(v) => Some(format!("<{v}")),
                    Bound::Unbounded => None,
                };
                low.into_iter().chain(high).collect::<Vec<_>>().join(",")
            }
        })
        .collect();
    segments.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn v(text: &str) -> Version {
        Version::from_str(text).unwrap()
    }

    #[test]
    fn ranges_read_as_specifiers() {
        assert_eq!(range_text(&Ranges::singleton(v("2.0"))), "==2.0");
        assert_eq!(range_text(&Ranges::between(v("1"), v("3"))), ">=1,<3");
        assert_eq!(
            range_text(&Ranges::singleton(v("2.0")).complement()),
            "<2.0 or >2.0"
        );
        assert_eq!(range_text(&Ranges::empty()), "(no version)");
    }
}
