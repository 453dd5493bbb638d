//! Progress reporting, kept apart from the work: stages call a [`Reporter`], whose methods do
//! nothing unless the caller (the CLI) implements them. The library never writes to a terminal.

use crate::layer::LayerBlob;

/// What a build tells its caller as it goes. Calls for one layer come in the order
/// `layer_started`, any number of `layer_bytes`, `layer_finished`.
pub trait Reporter: Sync {
    /// A layer of `target` is about to be assembled; `total_bytes` is its content size.
    fn layer_started(&self, _target: &str, _step: LayerStep<'_>, _total_bytes: u64) {}
    /// `bytes` more content bytes went into the current layer.
    fn layer_bytes(&self, _bytes: u64) {}
    /// A registry base was pulled for a platform; `downloaded` bytes were not yet cached.
    fn base_pulled(&self, _target: &str, _reference: &str, _platform: &str, _downloaded: u64) {}
    /// The layer is in the cache; `cached` says whether it was already there.
    fn layer_finished(
        &self,
        _target: &str,
        _step: LayerStep<'_>,
        _blob: &LayerBlob,
        _cached: bool,
    ) {
    }
    /// A layer of `target` does something the user should know of: `text` is one line
    /// (`requests 2.34.2 → 2.32.4 (in mlrun/mlrun:1.12.1)`).
    fn note(&self, _target: &str, _text: &str) {}
}

/// Which layer of a recipe: 1-based position, count, and what it holds.
#[derive(Clone, Copy, Debug)]
pub struct LayerStep<'a> {
    pub number: usize,
    pub of: usize,
    pub description: &'a str,
}

/// A reporter that says nothing.
pub struct Silent;

impl Reporter for Silent {}
