//! Starting an unpacked image the way a container runtime starts it, for tests that check an
//! image doing its job: the process umoci's runtime configuration describes (entrypoint + cmd,
//! environment, working directory, user and group from the image config), in a chroot of the
//! rootfs, with its own /proc (a mount and PID namespace, so nothing outlives the test) and
//! the device nodes a runtime gives every container. util-linux's `unshare` does the chroot,
//! the working directory and the switch to the image's uid and gid (dropping supplementary
//! groups, as `setpriv --clear-groups` does) in that order, which is a runtime's order.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The process of an unpacked bundle's `config.json` (OCI runtime spec, written by umoci from
/// the image config).
#[derive(Debug, Clone)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
}

impl Process {
    pub fn of_bundle(bundle: &Path) -> Process {
        let text = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        let config: Value = serde_json::from_str(&text).unwrap();
        let process = &config["process"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        Process {
            args: strings(&process["args"]),
            env: strings(&process["env"]),
            cwd: process["cwd"].as_str().unwrap_or("/").to_owned(),
            uid: process["user"]["uid"].as_u64().unwrap() as u32,
            gid: process["user"]["gid"].as_u64().unwrap() as u32,
        }
    }

    /// This process with `args` instead of the image's command (entrypoint kept out too), as
    /// `docker run --entrypoint`.
    pub fn with_args(&self, args: &[&str]) -> Process {
        Process {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..self.clone()
        }
    }

    /// This process with `KEY=VALUE` set, replacing the image's value of KEY.
    pub fn with_env(&self, key: &str, value: &str) -> Process {
        let prefix = format!("{key}=");
        let mut env: Vec<String> = self
            .env
            .iter()
            .filter(|e| !e.starts_with(&prefix))
            .cloned()
            .collect();
        env.push(format!("{key}={value}"));
        Process {
            env,
            ..self.clone()
        }
    }
}

/// An unpacked image (umoci's bundle) ready to run processes in.
pub struct Container {
    pub rootfs: PathBuf,
    pub process: Process,
}

impl Container {
    pub fn new(bundle: &Path) -> Container {
        let rootfs = bundle.join("rootfs");
        make_devices(&rootfs);
        // A runtime makes the mount points it needs; an image from scratch has no /proc.
        std::fs::create_dir_all(rootfs.join("proc")).unwrap();
        Container {
            process: Process::of_bundle(bundle),
            rootfs,
        }
    }

    fn command(&self, process: &Process) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(format!("--root={}", self.rootfs.display()))
            .arg(format!("--wd={}", process.cwd))
            .arg(format!("--setgid={}", process.gid))
            .arg(format!("--setuid={}", process.uid));
        if self.rootfs.join("usr/bin/env").exists() {
            // env -i: the image's environment and nothing of the test's; env also finds the
            // program on the image's PATH, as a runtime does.
            command
                .args(["--", "/usr/bin/env", "-i"])
                .args(&process.env)
                .args(&process.args)
                .env_clear();
        } else {
            // An image without env(1) (distroless-like, as oci-build's own): unshare hands the
            // image's environment on, and its execvp searches the image's PATH.
            command.env_clear().arg("--").args(&process.args);
            for pair in &process.env {
                if let Some((key, value)) = pair.split_once('=') {
                    command.env(key, value);
                }
            }
        }
        command
    }

    /// Runs `process` to its end and returns what it did, failed or not.
    pub fn output(&self, process: &Process) -> std::process::Output {
        self.command(process).output().unwrap()
    }

    /// Runs `process` to its end and returns its output, failing the test with its output when
    /// it fails.
    pub fn run(&self, process: &Process) -> String {
        let out = self.output(process);
        assert!(
            out.status.success(),
            "{:?} as {}:{} in the image: {}\nstdout: {}\nstderr: {}",
            process.args,
            process.uid,
            process.gid,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `process` in the background, its output going to `<bundle>/<name>.log`; the
    /// returned guard kills it (and everything it started) when dropped.
    pub fn start(&self, process: &Process, name: &str) -> Running {
        let log = self.rootfs.with_file_name(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        // runc hands the process's stdio to the container's user, so that a program that
        // reopens /dev/stderr (nginx's `error_log /dev/stderr`) may.
        std::os::unix::fs::fchown(&file, Some(process.uid), Some(process.gid)).unwrap();
        let child = self
            .command(process)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Running {
            child,
            log,
            what: format!("{:?}", process.args),
        }
    }
}

/// A process started by [`Container::start`].
pub struct Running {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `url` until it answers 2xx (returning the body), failing with the process's log
    /// when it exits or `limit` passes first.
    pub fn wait_for_http(&mut self, url: &str, limit: Duration) -> String {
        let client = crate::common::http_client()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before {url} answered:\n{}",
                    self.what,
                    self.log()
                );
            }
            if let Ok(response) = client.get(url).send()
                && response.status().is_success()
            {
                return response.text().unwrap();
            }
            assert!(
                start.elapsed() < limit,
                "{url} did not answer within {limit:?}; {}'s log:\n{}",
                self.what,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The process unshare forked is PID 1 of the container's PID namespace: killing it
        // takes everything the image started with it. (unshare's --kill-child does not: the
        // switch to the image's user clears the parent-death signal it relies on.)
        let pid = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        for init in children.unwrap_or_default().split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", init]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The character devices every container gets (/dev/null, zero, full, random, urandom, tty)
/// and the links to the process's own descriptors (/dev/fd, stdin, stdout, stderr); git
/// refuses to start without /dev/null and Python's `os.urandom` may need /dev/urandom.
fn make_devices(rootfs: &Path) {
    let dev = rootfs.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(name);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, path).unwrap();
        }
    }
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        if path.exists() {
            continue;
        }
        crate::common::tool(
            "mknod",
            &[
                "-m",
                "666",
                &path.display().to_string(),
                "c",
                &major.to_string(),
                &minor.to_string(),
            ],
        );
    }
}

/// A TCP port nobody listens on now, for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails at once, saying so, when `port` is taken: an image that listens on a fixed port
/// cannot be tested while something else holds it.
pub fn require_free(port: u16) {
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "port {port} is in use on this machine: the image under test listens on it"
    );
}
