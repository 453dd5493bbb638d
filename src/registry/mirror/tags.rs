//! Tag selection: which tags of a repository named without a tag are mirrored.
//!
//! In: a repository on a registry, `--tags-regex` and `--latest`. Out: the chosen tags. The
//! tags come from the registry's tag list, page by page through its `Link` header (OCI
//! distribution spec, "Listing Tags":
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags>);
//! `--latest` orders them as semantic versions (<https://semver.org/spec/v2.0.0.html>).

use std::cmp::Ordering as CmpOrdering;

use reqwest::Method;

use super::MirrorError;
use crate::registry::client::{Body, Request};
use crate::registry::{Registry, check, pull, read_limited, scope};

/// A semantic version (semver.org 2.0), as tags spell them, with an optional leading `v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Version {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

/// Numeric identifiers sort before alphanumeric ones (semver §11.4.3): variant order does it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    Numeric(u64),
    Text(String),
}

impl Version {
    /// `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build`; anything else is not a version.
    pub(super) fn parse(tag: &str) -> Option<Version> {
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        // Build metadata does not take part in ordering (docker tags cannot hold `+` anyway).
        let tag = tag.split('+').next()?;
        let (core, pre) = match tag.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (tag, None),
        };
        let numbers: Vec<u64> = core
            .split('.')
            .map(|n| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect::<Option<_>>()?;
        let core: [u64; 3] = numbers.try_into().ok()?;
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        id.parse().ok().map(Identifier::Numeric)
                    } else {
                        Some(Identifier::Text(id.to_owned()))
                    }
                })
                .collect::<Option<_>>()?,
        };
        Some(Version { core, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.core.cmp(&other.core).then_with(|| {
            // A pre-release sorts below its release (semver §11.3).
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => CmpOrdering::Equal,
                (true, false) => CmpOrdering::Greater,
                (false, true) => CmpOrdering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// Which tags of a repository named without a tag are copied.
#[derive(Clone, Debug, Default)]
pub struct TagSelection {
    /// Tags matching this (unanchored, like grep; anchor with `^…$`).
    pub regex: Option<regex::Regex>,
    /// Of those, the N highest semantic versions (tags that are not versions are dropped).
    pub latest: Option<usize>,
}

impl TagSelection {
    pub fn new(regex: Option<&str>, latest: Option<usize>) -> Result<TagSelection, MirrorError> {
        let regex = regex
            .map(|r| {
                regex::Regex::new(r).map_err(|source| MirrorError::BadRegex {
                    regex: r.to_owned(),
                    source,
                })
            })
            .transpose()?;
        Ok(TagSelection { regex, latest })
    }

    pub fn is_empty(&self) -> bool {
        self.regex.is_none() && self.latest.is_none()
    }

    /// The chosen tags: by version, highest first, with `latest`; else sorted by name.
    pub fn select(&self, tags: &[String]) -> Vec<String> {
        let matching = tags
            .iter()
            .filter(|t| self.regex.as_ref().is_none_or(|r| r.is_match(t)));
        match self.latest {
            Some(n) => {
                let mut versions: Vec<(Version, &String)> = matching
                    .filter_map(|t| Some((Version::parse(t)?, t)))
                    .collect();
                versions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
                versions
                    .into_iter()
                    .take(n)
                    .map(|(_, t)| t.clone())
                    .collect()
            }
            None => {
                let mut chosen: Vec<String> = matching.cloned().collect();
                chosen.sort();
                chosen
            }
        }
    }
}

/// Every tag of `repository`, following the `Link` header of each page.
pub(super) fn list_tags(registry: &Registry, repository: &str) -> Result<Vec<String>, MirrorError> {
    #[derive(serde::Deserialize)]
    struct TagList {
        tags: Option<Vec<String>>,
    }
    let scopes = [scope(repository, "pull")];
    let mut url = registry.url(&format!("{repository}/tags/list?n=1000"));
    let mut tags = Vec::new();
    // A bound on pages, so that a registry answering with a loop cannot keep us forever.
    for _ in 0..10_000 {
        let response = registry.send(&Request {
            method: Method::GET,
            url: url.clone(),
            scopes: &scopes,
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
        })?;
        let response = check(registry, response, repository, "pull", || {
            format!("tag list of {repository}")
        })?;
        let next = response
            .headers()
            .get("Link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .and_then(|link| url.join(&link).ok());
        let body = read_limited(registry, response, "a tag list", 16 << 20)?;
        let page: TagList = pull::parse(registry, &body, "tag list")?;
        tags.extend(page.tags.unwrap_or_default());
        match next {
            Some(link) => url = link,
            None => break,
        }
    }
    Ok(tags)
}

/// The target of `<URL>; rel="next"` in a Link header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_orders_like_semver_org() {
        let ordered = [
            "0.9.10",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "v1.0.0",
            "1.2.0",
            "1.10.0",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (
                Version::parse(pair[0]).unwrap(),
                Version::parse(pair[1]).unwrap(),
            );
            assert!(a < b, "{} < {}", pair[0], pair[1]);
        }
        for not in ["latest", "1.2", "1.2.x", "1..2", "1.2.3-", "1.2.3-a..b"] {
            assert!(Version::parse(not).is_none(), "{not}");
        }
    }

    #[test]
    fn selection_by_regex_and_latest() {
        let tags: Vec<String> = [
            "1.9.0",
            "1.10.0",
            "1.10.1-rc1",
            "latest",
            "2.0.0",
            "1.2.3-py39",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let latest2 = TagSelection::new(None, Some(2)).unwrap();
        assert_eq!(latest2.select(&tags), ["2.0.0", "1.10.1-rc1"]);
        let releases = TagSelection::new(Some(r"^\d+\.\d+\.\d+$"), Some(2)).unwrap();
        assert_eq!(releases.select(&tags), ["2.0.0", "1.10.0"]);
        let py39 = TagSelection::new(Some("-py39$"), None).unwrap();
        assert_eq!(py39.select(&tags), ["1.2.3-py39"]);
        assert!(TagSelection::new(Some("("), None).is_err());
    }

    #[test]
    fn link_header_names_the_next_page() {
        assert!(next_link("</v2/a/tags/list?last=x&n=2>; rel=\"next\"").is_some());
    }
}
