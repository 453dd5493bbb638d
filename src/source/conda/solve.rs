//! Solving a `conda` layer's specs against its channels' repodata with rattler's resolvo
//! backend, into the packages a lock pins.

use std::str::FromStr;

use rattler_conda_types::{
    Channel, GenericVirtualPackage, MatchSpec, PackageName, ParseStrictness, RepoData,
    RepoDataRecord, Version, package::BuildString,
};
use rattler_solve::{SolveError, SolverImpl, SolverTask, resolvo};

use super::channel::{self, ChannelError, ResolvedChannel};
use super::{CondaError, CondaSpec, LockedConda};
use crate::digest::Digest;

/// The records of a channel's `subdir` and `noarch` repodata.
fn channel_records(
    http: &reqwest::blocking::Client,
    channel: &ResolvedChannel,
    subdir: &str,
) -> Result<Vec<RepoDataRecord>, CondaError> {
    let url =
        url::Url::parse(&format!("{}/", channel.url)).map_err(|source| ChannelError::Url {
            channel: channel.name.clone(),
            source,
        })?;
    let rattler_channel = Channel::from_url(url);
    let mut records = Vec::new();
    let mut found = false;
    for dir in [subdir, "noarch"] {
        let Some((url, bytes)) = channel::fetch_repodata(http, channel, dir)? else {
            continue;
        };
        found = true;
        let repodata: RepoData =
            serde_json::from_slice(&bytes).map_err(|source| ChannelError::BadRepodata {
                url: url.clone(),
                source,
            })?;
        for record in repodata.into_repo_data_records(&rattler_channel) {
            // A repodata.json can list other subdirs' packages; only these two install.
            if record.package_record.subdir != dir {
                continue;
            }
            // Its `base_url` or an entry may point anywhere; a remote channel stays remote.
            channel::check_scheme(channel, record.url.as_str())?;
            records.push(record);
        }
    }
    if !found {
        return Err(ChannelError::NoRepodata {
            channel: channel.url.clone(),
            subdir: subdir.to_owned(),
        }
        .into());
    }
    Ok(records)
}

/// Solves `spec` for `subdir`; packages sorted by name.
pub(crate) fn solve(
    spec: &CondaSpec,
    subdir: &str,
    channels: &[ResolvedChannel],
    http: &reqwest::blocking::Client,
) -> Result<Vec<LockedConda>, CondaError> {
    let specs = spec
        .specs
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|source| CondaError::BadSpec {
                spec: s.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let virtual_packages = super::virtual_packages(subdir)
        .into_iter()
        .map(|(name, version)| {
            let (version, build) = version.split_once('=').unwrap_or((&version, "0"));
            Ok(GenericVirtualPackage {
                name: PackageName::new_unchecked(name.clone()),
                version: Version::from_str(version).map_err(|source| CondaError::BadVersion {
                    spec: format!("{name}={version}"),
                    source,
                })?,
                build_string: BuildString::new_unchecked(build),
            })
        })
        .collect::<Result<Vec<_>, CondaError>>()?;

    let per_channel = channels
        .iter()
        .map(|c| channel_records(http, c, subdir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut task = SolverTask::from_iter(per_channel.iter());
    task.specs = specs;
    task.virtual_packages = virtual_packages;
    let listed = spec.specs.join(", ");
    let solved = resolvo::Solver
        .solve(task)
        .map_err(|e| match e {
            SolveError::Unsolvable(reasons) => CondaError::Unsatisfiable {
                specs: listed.clone(),
                conflict: one_sentence(&reasons),
            },
            other => CondaError::Solve {
                specs: listed.clone(),
                source: other,
            },
        })?
        .records;

    let mut locked = Vec::new();
    for record in solved {
        let (channel, _) = channels
            .iter()
            .zip(&per_channel)
            .find(|(_, records)| records.iter().any(|r| r.url == record.url))
            .expect("solved records come from the channels' repodata");
        locked.push(lock_entry(channel, &record)?);
    }
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(locked)
}

pub(crate) fn lock_entry(
    channel: &ResolvedChannel,
    record: &RepoDataRecord,
) -> Result<LockedConda, CondaError> {
    let package = &record.package_record;
    let filename = record.identifier.to_file_name();
    let sha256 = package
        .sha256
        .and_then(|h| Digest::from_hex(&hex::encode(&h[..])).ok())
        .ok_or_else(|| CondaError::NoSha256 {
            package: filename.clone(),
            channel: channel.name.clone(),
        })?;
    let beside = format!("{}/{}/{}", channel.url, package.subdir, filename);
    Ok(LockedConda {
        name: package.name.as_normalized().to_owned(),
        version: package.version.to_string(),
        build: package.build.as_str().to_owned(),
        subdir: package.subdir.clone(),
        channel: channel.name.clone(),
        // A mirror serves files beside its repodata; only a repodata `base_url` elsewhere
        // needs the URL pinned.
        url: (record.url.as_str() != beside).then(|| record.url.to_string()),
        filename,
        sha256,
        md5: package.md5.map(|h| hex::encode(&h[..])),
        size: package.size,
    })
}

/// resolvo explains a conflict as an indented tree; a build error is one line, so the tree is
/// flattened: a line that introduces the next ("… would require", "… options:") runs into it,
/// other lines are separated by `;`.
fn one_sentence(reasons: &[String]) -> String {
    let mut out = String::new();
    let mut joiner = "";
    for reason in reasons {
        for line in reason.lines() {
            let line = line
                .trim_start_matches(|c: char| c.is_whitespace() || "│├└─".contains(c))
                .trim();
            if line.is_empty() || line == "The following packages are incompatible" {
                continue;
            }
            if !out.is_empty() {
                out.push_str(if joiner.is_empty() { "; " } else { joiner });
            }
            let (text, next) = if let Some(text) = line.strip_suffix(':') {
                (text, ": ")
            } else if line.ends_with("would require") || line.ends_with("would constrain") {
                (line, " ")
            } else {
                (line, "")
            };
            out.push_str(text);
            joiner = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_trees_become_one_line() {
        let tree = "The following packages are incompatible\n├─ a * can be installed with any of the following options:\n│  └─ a 1 would require\n│     └─ b >=2, for which no candidates were found.\n";
        assert_eq!(
            one_sentence(&[tree.to_owned()]),
            "a * can be installed with any of the following options: a 1 would require b >=2, for which no candidates were found."
        );
    }
}
