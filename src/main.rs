//! `oci-build`: parses the command line, runs one command, maps the outcome to an exit code.

mod cli;

use std::io::IsTerminal;

use clap::Parser;

fn main() {
    keep_large_buffers_out_of_the_heap();
    // Diagnostics for whoever debugs a build: OCI_BUILD_LOG=debug (tracing's filter syntax).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OCI_BUILD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("oci_build=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    let cli = cli::Cli::parse();
    if let Err(error) = cli::run(cli) {
        // One line: the error and each cause after it.
        let mut message = error.to_string();
        for cause in error.chain().skip(1) {
            message.push_str(": ");
            message.push_str(&cause.to_string());
        }
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

/// glibc serves an allocation from its heap once one of that size was freed (its mmap threshold
/// rises to the largest freed block, up to 32 MiB). Then the xz windows of `.deb` members
/// (8 MiB each) and other large transient buffers live in the heaps of the threads that
/// unpack, download and compress, between small allocations that outlive them, and the freed
/// space is neither reused nor returned: a cold build of ml-models-gpu peaked at 210-240 MB.
/// With a fixed threshold above the 1 MiB compression chunks (which are reused well in the
/// heap), larger blocks are mapped and unmapped whole; the peak is 114 MB, the time the same
/// within noise (benches/README.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_buffers_out_of_the_heap() {
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists. It fails only for an unknown parameter, and then the default stays.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_buffers_out_of_the_heap() {}
