//! What the terminal shows: progress bars (indicatif) on a TTY, one plain line per layer or
//! blob without one (CI logs), nothing with `-q`; and the shared output formats (JSON, sizes).
//! The library only calls the reporter traits; every line written to stderr for them is here.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use oci_build::layer::LayerBlob;
use oci_build::progress::{LayerStep, Reporter};
use oci_build::registry::push::PushReporter;

/// `--json`: the value, pretty-printed, on stdout (progress and results go to stderr).
pub(super) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A size in binary units with one decimal, e.g. `1.5 KiB`; bytes stay whole.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress bars on a terminal, one plain line per layer otherwise (CI logs), nothing with -q.
pub(super) struct TerminalReporter {
    quiet: bool,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalReporter {
    pub(super) fn new(quiet: bool) -> Self {
        TerminalReporter {
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    /// Clears a finished upload bar.
    pub(super) fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl PushReporter for TerminalReporter {
    fn blob_started(&self, _digest: &oci_build::digest::Digest, size: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let mut bar = self.bar.lock().expect("reporter lock");
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "uploading {bar:30} {binary_bytes}/{binary_total_bytes}",
                )
                .expect("template is valid"),
            );
            bar
        });
        bar.inc_length(size);
    }

    fn blob_bytes(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn blob_done(&self, digest: &oci_build::digest::Digest, size: u64, how: &'static str) {
        if self.quiet {
            return;
        }
        let line = format!("blob {digest} {} {how}", human_bytes(size));
        match self.bar.lock().expect("reporter lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl oci_build::registry::mirror::MirrorReporter for TerminalReporter {
    fn image_done(&self, image: &oci_build::registry::mirror::MirroredImage, dry_run: bool) {
        if self.quiet {
            return;
        }
        let line = if dry_run {
            format!(
                "would copy {} -> {} {} ({} blobs, {} referrers, {})",
                image.source,
                image.destination,
                image.digest,
                image.blobs,
                image.referrers,
                human_bytes(image.bytes)
            )
        } else {
            format!(
                "{} -> {} {} ({} blobs copied, {}; {} already there; {} mounted; {} referrers)",
                image.source,
                image.destination,
                image.digest,
                image.blobs_copied,
                human_bytes(image.bytes_copied),
                image.blobs_present,
                image.blobs_mounted,
                image.referrers
            )
        };
        match self.bar.lock().expect("reporter lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Reporter for TerminalReporter {
    fn base_pulled(&self, target: &str, reference: &str, platform: &str, downloaded: u64) {
        if !self.quiet {
            eprintln!(
                "{target}: base {reference} for {platform} ({} downloaded)",
                human_bytes(downloaded)
            );
        }
    }

    fn note(&self, target: &str, text: &str) {
        if self.quiet {
            return;
        }
        let line = format!("{target}: {text}");
        match self.bar.lock().expect("reporter lock").as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn layer_started(&self, target: &str, step: LayerStep<'_>, total_bytes: u64) {
        if self.quiet || !self.tty {
            return;
        }
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {binary_bytes}/{binary_total_bytes} {msg}",
            )
            .expect("template is valid"),
        );
        bar.set_prefix(format!("{target} [{}/{}]", step.number, step.of));
        bar.set_message(step.description.to_owned());
        *self.bar.lock().expect("reporter lock") = Some(bar);
    }

    fn layer_bytes(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn layer_finished(&self, target: &str, step: LayerStep<'_>, blob: &LayerBlob, cached: bool) {
        if let Some(bar) = self.bar.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        eprintln!(
            "{target} [{}/{}] {} {} {}{}",
            step.number,
            step.of,
            step.description,
            blob.digest,
            human_bytes(blob.size),
            if cached { " (cached)" } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(3 << 50), "3072.0 TiB");
    }
}
