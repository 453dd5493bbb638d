//! oci-build: a daemonless, rootless OCI image builder for Python and ML images.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! recipe (TOML) ─▶ source (entries of each layer) ─▶ layer (tar ─▶ gzip|zstd ─▶ digests, cache)
//!               ─▶ image (config, manifest, index) ─▶ output (oci:, oci-archive:, docker-archive:)
//! ```
//!
//! [`build::Builder`] drives the stages for a target of a [`recipe::Project`];
//! [`schedule::build_targets`] builds several targets at once on one builder.
//!
//! Modules the binary, tests and fuzzers do not use are `pub(crate)`, and so is every item
//! nothing outside needs: `unreachable_pub` (denied with the other warnings in CI) keeps it so.

#![warn(unreachable_pub)]

pub mod build;
pub mod digest;
pub(crate) mod fsutil;
#[cfg(test)]
mod fuzz_tests;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub mod image;
pub mod inspect;
pub mod layer;
pub(crate) mod lock;
pub(crate) mod name;
pub mod offline;
pub mod progress;
pub mod recipe;
pub mod reference;
pub mod registry;
pub mod sbom;
pub mod schedule;
pub(crate) mod source;
pub mod time;
pub mod transport;
pub(crate) mod workers;

/// The pipeline stays visible only while data flows one way: no top-level module may import
/// one that imports it back, directly or through others. Same rule as
/// `tools/modcycles.py`: `crate::NAME` (or `oci_build::NAME`) paths outside comments and
/// outside everything from a file's first `#[cfg(test)]` on.
#[cfg(test)]
mod module_graph {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    type Graph = BTreeMap<String, BTreeSet<String>>;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("src/ is readable").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The module each `crate::`/`oci_build::` path on `line` names.
    fn imports(line: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for prefix in ["crate::", "oci_build::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                // `foocrate::x` is not a crate path.
                let before = rest[..at].chars().next_back();
                let tail = &rest[at + prefix.len()..];
                let len = tail
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..len];
                let starts_ident = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
                if starts_ident && !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    found.push(name);
                }
                rest = tail;
            }
        }
        found
    }

    fn graph(src: &Path) -> Graph {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut graph = Graph::new();
        for file in files {
            let relative = file.strip_prefix(src).expect("under src/");
            let top = relative
                .components()
                .next()
                .expect("a file name")
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "main" || top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source files are UTF-8");
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with("//") {
                    continue;
                }
                if line.starts_with("#[cfg(test)]") {
                    break;
                }
                for name in imports(line) {
                    if name != top {
                        graph
                            .entry(top.clone())
                            .or_default()
                            .insert(name.to_owned());
                    }
                }
            }
        }
        graph
    }

    fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    }

    /// Each set of modules that reach one another, as `a b c`, sorted.
    fn cycles(graph: &Graph) -> Vec<String> {
        let reach: BTreeMap<&String, BTreeSet<String>> =
            graph.keys().map(|m| (m, reachable(graph, m))).collect();
        let mut cycles = BTreeSet::new();
        for (module, from_it) in &reach {
            let members: Vec<&str> = reach
                .iter()
                .filter(|(other, from_other)| {
                    from_it.contains(other.as_str()) && from_other.contains(module.as_str())
                })
                .map(|(other, _)| other.as_str())
                .collect();
            if members.len() > 1 {
                cycles.insert(members.join(" "));
            }
        }
        cycles.into_iter().collect()
    }

    #[test]
    fn finds_a_cycle_and_ignores_test_code() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.rs", "use crate::b::X;\n");
        write(
            "b.rs",
            "// crate::c in a comment\npub fn f() { crate::c::g() }\n",
        );
        write(
            "c.rs",
            "use crate::d;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
        );
        write("d.rs", "pub fn g() { crate::b::f() }\n");
        assert_eq!(cycles(&graph(dir.path())), ["b c d"]);
    }

    #[test]
    fn top_level_modules_import_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let cycles = cycles(&graph(&src));
        assert!(
            cycles.is_empty(),
            "top-level modules import each other in a circle: {}",
            cycles.join("; ")
        );
    }
}
