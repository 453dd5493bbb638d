//! The scripts an installer writes: entry point launchers and `#!python` scripts pointed at
//! the image's interpreter.
//!
//! Input: the image's interpreter path, an [`EntryPoint`] or a `.data/scripts` file. Output:
//! the bytes of the script to install (the caller makes it executable).
//!
//! Spec: entry points (<https://packaging.python.org/en/latest/specifications/entry-points/>)
//! and the `#!python` rewrite of the binary distribution format (PEP 427,
//! <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#recommended-installer-features>).

use super::dist_info::EntryPoint;

/// The `#!` line(s) that run a script with `interpreter` and `args` (empty, or starting with a
/// space). Kernels take only one argument and at most ~127 bytes after `#!`; otherwise the
/// script starts under `/bin/sh`, which re-executes it with the interpreter (Python reads the
/// second and third lines as a string).
fn shebang(interpreter: &str, args: &str) -> String {
    if !interpreter.contains(char::is_whitespace) && interpreter.len() + args.len() <= 125 {
        format!("#!{interpreter}{args}\n")
    } else {
        format!("#!/bin/sh\n'''exec' \"{interpreter}\"{args} \"$0\" \"$@\"\n' '''\n")
    }
}

/// A `.data/scripts` file whose first line starts with exactly `#!python` (`#!python`,
/// `#!pythonw`, …, optionally followed by arguments) with that line pointed at the image's
/// interpreter, keeping the arguments; `None` for any other file.
pub(super) fn rewrite_python_shebang(content: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    let rest = content.strip_prefix(b"#!python")?;
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // The interpreter name runs to the first blank (`w` of `pythonw`, `3` of `python3`).
    let args_at = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(line.len());
    let args = String::from_utf8_lossy(&line[args_at..]);
    let args = args.trim();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" {args}")
    };
    let mut out = shebang(interpreter, &args).into_bytes();
    out.extend_from_slice(body);
    Some(out)
}

/// The launcher of an entry point: imports the object and exits with what it returns.
pub(super) fn launcher(interpreter: &str, ep: &EntryPoint, project: &str, version: &str) -> String {
    let (head, tail) = match ep.attr.split_once('.') {
        Some((head, tail)) => (head, format!(".{tail}")),
        None => (ep.attr.as_str(), String::new()),
    };
    format!(
        "{shebang}# -*- coding: utf-8 -*-\n\
         # `{name}`: entry point {module}:{attr} of {project} {version}, written by oci-build.\n\
         import sys\n\
         \n\
         from {module} import {head} as _entry_point\n\
         \n\
         if __name__ == \"__main__\":\n\
         \x20   sys.exit(_entry_point{tail}())\n",
        shebang = shebang(interpreter, ""),
        name = ep.name,
        module = ep.module,
        attr = ep.attr,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::EntryKind;
    use crate::source::pip::wheel::test_support::*;
    use std::fs;
    use std::process::Command;

    #[test]
    fn entry_points_become_launchers_that_run() {
        let s = setup();
        let files = demo_files(
            true,
            &[(
                "demo-1.0.dist-info/entry_points.txt",
                b"[console_scripts]\ndemo-cli = demo:main [extra1]\n\n[gui_scripts]\ndemo-gui=demo:Cli.run\n\n[other.group]\nignored = demo:main\n",
                0o100644,
            )],
        );
        let (tree, installed) = s.install(&wheel_bytes(&files)).unwrap();
        assert_eq!(
            installed.scripts,
            ["/usr/local/bin/demo-cli", "/usr/local/bin/demo-gui"]
        );
        for name in ["demo-cli", "demo-gui"] {
            let path = format!("usr/local/bin/{name}");
            assert_eq!(mode_of(&tree, &path), 0o755);
            assert!(is_inline(&tree, &path));
            let text = String::from_utf8(bytes_of(&tree, &path)).unwrap();
            assert!(text.starts_with("#!/usr/bin/python3\n"), "{text}");
        }
        let cli = String::from_utf8(bytes_of(&tree, "usr/local/bin/demo-cli")).unwrap();
        assert!(
            cli.contains("from demo import main as _entry_point\n"),
            "{cli}"
        );
        assert!(cli.contains("sys.exit(_entry_point())"), "{cli}");
        let gui = String::from_utf8(bytes_of(&tree, "usr/local/bin/demo-gui")).unwrap();
        assert!(
            gui.contains("from demo import Cli as _entry_point\n"),
            "{gui}"
        );
        assert!(gui.contains("sys.exit(_entry_point.run())"), "{gui}");
        assert!(tree.get(&p("usr/local/bin/ignored")).is_none());
        // RECORD lists the launchers with `../` paths from site-packages, as pip writes them.
        let record = String::from_utf8(bytes_of(
            &tree,
            "usr/local/lib/python3.11/dist-packages/demo-1.0.dist-info/RECORD",
        ))
        .unwrap();
        assert!(record.contains("../../../bin/demo-cli,sha256="), "{record}");
        check_record(
            &tree,
            "/usr/local/lib/python3.11/dist-packages",
            "demo-1.0.dist-info",
        );

        // Run them if the build machine has Python: the tree written out, the package on
        // PYTHONPATH, the launcher run by that interpreter.
        let Ok(version) = Command::new("python3").arg("--version").output() else {
            eprintln!("python3 not found; launchers not run");
            return;
        };
        assert!(version.status.success());
        let root = s.dir.path().join("image");
        for (path, entry) in tree.entries_with_parents() {
            let host = root.join(path.as_str());
            match entry.kind {
                EntryKind::Directory => fs::create_dir_all(&host).unwrap(),
                EntryKind::File { .. } => {
                    fs::create_dir_all(host.parent().unwrap()).unwrap();
                    fs::write(&host, bytes_of(&tree, path.as_str())).unwrap();
                }
                _ => unreachable!(),
            }
        }
        let run = |name: &str| {
            Command::new("python3")
                .arg(root.join("usr/local/bin").join(name))
                .env(
                    "PYTHONPATH",
                    root.join("usr/local/lib/python3.11/dist-packages"),
                )
                .env_remove("PYTHONHOME")
                .output()
                .unwrap()
        };
        let out = run("demo-cli");
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from demo\n");
        let out = run("demo-gui");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "gui run\n");
    }

    #[test]
    fn data_scripts_with_python_shebang_get_the_interpreter() {
        let s = setup();
        let files = demo_files(
            true,
            &[
                (
                    "demo-1.0.data/scripts/plain",
                    b"#!python\nprint(1)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/gui",
                    b"#!pythonw\r\nprint(2)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/args",
                    b"#!python -u -O\nprint(3)\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/shell",
                    b"#!/bin/sh\necho 4\n",
                    0o100644,
                ),
                (
                    "demo-1.0.data/scripts/pythonic",
                    b"#!/usr/bin/env python\n",
                    0o100644,
                ),
            ],
        );
        let (tree, installed) = s.install(&wheel_bytes(&files)).unwrap();
        assert_eq!(
            installed.scripts,
            ["args", "gui", "plain", "pythonic", "shell"].map(|n| format!("/usr/local/bin/{n}"))
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/plain"),
            b"#!/usr/bin/python3\nprint(1)\n"
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/gui"),
            b"#!/usr/bin/python3\nprint(2)\n"
        );
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/args"),
            b"#!/usr/bin/python3 -u -O\nprint(3)\n"
        );
        assert!(is_inline(&tree, "usr/local/bin/plain"));
        // Other scripts are left as they are, from the cache, but made executable.
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/shell"),
            b"#!/bin/sh\necho 4\n"
        );
        assert!(!is_inline(&tree, "usr/local/bin/shell"));
        assert_eq!(
            bytes_of(&tree, "usr/local/bin/pythonic"),
            b"#!/usr/bin/env python\n"
        );
        for name in ["plain", "gui", "args", "shell", "pythonic"] {
            assert_eq!(
                mode_of(&tree, &format!("usr/local/bin/{name}")),
                0o755,
                "{name}"
            );
        }
        // The .data directory itself is not installed.
        assert!(!tree.paths().any(|path| path.as_str().contains(".data")));
        check_record(
            &tree,
            "/usr/local/lib/python3.11/dist-packages",
            "demo-1.0.dist-info",
        );
    }

    #[test]
    fn long_interpreter_paths_start_through_sh() {
        let long = format!("/opt/{}/bin/python3", "v".repeat(130));
        let script = rewrite_python_shebang(b"#!python\nimport sys\n", &long).unwrap();
        let text = String::from_utf8(script).unwrap();
        assert!(text.starts_with("#!/bin/sh\n'''exec' \""), "{text}");
        assert!(
            text.ends_with("\"$0\" \"$@\"\n' '''\nimport sys\n"),
            "{text}"
        );
        assert!(rewrite_python_shebang(b"#!/usr/bin/python\n", "/x").is_none());
    }
}
