//! Which package index to use, read the way pip and uv read it: the recipe, then the
//! requirements files, then `UV_INDEX_URL`/`PIP_INDEX_URL`, then pip's configuration files,
//! then the index the host's pip uses by default. No index address is written in oci-build.

use std::path::{Path, PathBuf};

use super::index::Sources;
use super::requirements::Requirements;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no package index is configured: set `index_url` in the pip layer, PIP_INDEX_URL, or index-url in pip.conf (the host's pip could not be asked for its default: {0})"
    )]
    NoIndex(String),
}

/// What the recipe says about indexes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecipeIndexes {
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub find_links: Vec<PathBuf>,
    pub no_index: bool,
}

pub(crate) fn sources(
    recipe: &RecipeIndexes,
    requirements: &Requirements,
) -> Result<Sources, ConfigError> {
    sources_from(
        recipe,
        requirements,
        &|name| std::env::var(name).ok(),
        &pip_config_files(),
    )
}

fn sources_from(
    recipe: &RecipeIndexes,
    requirements: &Requirements,
    env: &dyn Fn(&str) -> Option<String>,
    config_files: &[PathBuf],
) -> Result<Sources, ConfigError> {
    let config = PipConfig::read(config_files);
    let mut find_links: Vec<String> = recipe
        .find_links
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    find_links.extend(requirements.find_links.iter().cloned());
    let env_list = |name: &str| -> Vec<String> {
        env(name)
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    find_links.extend(env_list("PIP_FIND_LINKS"));
    find_links.extend(config.values("find-links"));
    find_links.dedup();
    let no_index = recipe.no_index
        || requirements.no_index
        || env("PIP_NO_INDEX").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"));
    if no_index {
        return Ok(Sources {
            index_urls: Vec::new(),
            find_links,
            offline: false,
        });
    }
    let primary = match recipe
        .index_url
        .clone()
        .or_else(|| requirements.index_url.clone())
        .or_else(|| env("UV_INDEX_URL"))
        .or_else(|| env("PIP_INDEX_URL"))
        .or_else(|| config.values("index-url").into_iter().next())
    {
        Some(url) => url,
        None => host_pip_default()?,
    };
    let mut index_urls = vec![primary];
    index_urls.extend(recipe.extra_index_urls.iter().cloned());
    index_urls.extend(requirements.extra_index_urls.iter().cloned());
    index_urls.extend(env_list("UV_EXTRA_INDEX_URL"));
    index_urls.extend(env_list("PIP_EXTRA_INDEX_URL"));
    index_urls.extend(config.values("extra-index-url"));
    let mut seen = std::collections::HashSet::new();
    index_urls.retain(|u| seen.insert(u.trim_end_matches('/').to_owned()));
    Ok(Sources {
        index_urls,
        find_links,
        offline: false,
    })
}

/// pip's configuration files, lowest precedence first (site, user, PIP_CONFIG_FILE).
fn pip_config_files() -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("/etc/xdg/pip/pip.conf"),
        PathBuf::from("/etc/pip.conf"),
    ];
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        files.push(home.join(".pip/pip.conf"));
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        files.push(config_home.join("pip/pip.conf"));
    }
    if let Some(file) = std::env::var_os("PIP_CONFIG_FILE") {
        files.push(PathBuf::from(file));
    }
    files
}

/// The `[global]` and `[install]` values of pip's INI files; later files win.
#[derive(Default)]
struct PipConfig {
    values: Vec<(String, Vec<String>)>,
}

impl PipConfig {
    fn read(files: &[PathBuf]) -> PipConfig {
        let mut config = PipConfig::default();
        for file in files {
            if let Ok(text) = std::fs::read_to_string(file) {
                config.parse(&text, file);
            }
        }
        config
    }

    fn parse(&mut self, text: &str, file: &Path) {
        let mut section = String::new();
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
                continue;
            }
            if trimmed.starts_with('[') && trimmed.ends_with(']') {
                section = trimmed[1..trimmed.len() - 1].trim().to_ascii_lowercase();
                current = None;
                continue;
            }
            let relevant = section == "global" || section == "install" || section == "download";
            // Continuation lines carry more values (`extra-index-url =` over several lines).
            if line.starts_with([' ', '\t']) {
                if let Some(at) = current {
                    self.values[at]
                        .1
                        .extend(trimmed.split_whitespace().map(str::to_owned));
                }
                continue;
            }
            let Some((key, value)) = trimmed.split_once(['=', ':']) else {
                continue;
            };
            if !relevant {
                current = None;
                continue;
            }
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            let values = value.split_whitespace().map(str::to_owned).collect();
            tracing::debug!(file = %file.display(), %key, "pip configuration");
            self.values.retain(|(k, _)| *k != key);
            self.values.push((key, values));
            current = Some(self.values.len() - 1);
        }
    }

    fn values(&self, key: &str) -> Vec<String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// The index the host's pip uses when nothing is configured, asked of pip itself so that no
/// index address lives in oci-build.
fn host_pip_default() -> Result<String, ConfigError> {
    let python = super::sdist::host_python();
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "from pip._internal.models.index import PyPI; print(PyPI.simple_url)",
        ])
        .output()
        .map_err(|e| ConfigError::NoIndex(format!("{}: {e}", python.display())))?;
    let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !url.contains("://") {
        return Err(ConfigError::NoIndex(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_recipe_requirements_environment_config() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pip.conf");
        std::fs::write(
            &conf,
            "[global]\nindex-url = https://conf.invalid/simple\nextra-index-url =\n  https://extra1.invalid/simple\n  https://extra2.invalid/simple\n[freeze]\nindex-url = https://ignored.invalid\n",
        )
        .unwrap();
        let files = [conf];
        let no_env = |_: &str| None;
        let got = sources_from(
            &RecipeIndexes::default(),
            &Requirements::default(),
            &no_env,
            &files,
        )
        .unwrap();
        assert_eq!(
            got.index_urls,
            [
                "https://conf.invalid/simple",
                "https://extra1.invalid/simple",
                "https://extra2.invalid/simple"
            ]
        );
        let env =
            |name: &str| (name == "PIP_INDEX_URL").then(|| "https://env.invalid/simple".to_owned());
        let got = sources_from(
            &RecipeIndexes::default(),
            &Requirements::default(),
            &env,
            &files,
        )
        .unwrap();
        assert_eq!(got.index_urls[0], "https://env.invalid/simple");
        let reqs = Requirements {
            index_url: Some("https://reqs.invalid/simple".to_owned()),
            ..Default::default()
        };
        let got = sources_from(&RecipeIndexes::default(), &reqs, &env, &files).unwrap();
        assert_eq!(got.index_urls[0], "https://reqs.invalid/simple");
        let recipe = RecipeIndexes {
            index_url: Some("https://recipe.invalid/simple".to_owned()),
            ..Default::default()
        };
        let got = sources_from(&recipe, &reqs, &env, &files).unwrap();
        assert_eq!(got.index_urls[0], "https://recipe.invalid/simple");
        let offline = RecipeIndexes {
            no_index: true,
            find_links: vec![PathBuf::from("/wheels")],
            ..Default::default()
        };
        let got = sources_from(&offline, &reqs, &env, &files).unwrap();
        assert!(got.index_urls.is_empty());
        assert_eq!(got.find_links, ["/wheels"]);
    }
}
