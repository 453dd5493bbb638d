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

pub mod build;
pub mod digest;
pub mod fsutil;
#[cfg(test)]
mod fuzz_tests;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod lock;
pub mod name;
pub mod offline;
pub mod progress;
pub mod recipe;
pub mod reference;
pub mod registry;
pub mod schedule;
pub mod source;
pub mod time;
pub mod transport;
pub mod workers;
