//! The package kinds whose layers a lock file pins (Debian, pip, conda), as one interface.
//!
//! A kind says where its layers go in `recipes/recipes.lock` (its table and the field, beside
//! target and layer number, that names what its pins were resolved for) and what one pin is.
//! The lock module stores every kind's layers through this trait alone; adding a kind means
//! its own module, an implementation here and one line in `crate::lock`'s list of kinds.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A package kind whose layers are resolved once and then installed from pins.
pub trait LockedSource: 'static {
    /// The lock file's table of this kind's layers: `debian` is written `[[debian]]`.
    const SECTION: &'static str;
    /// The field of a lock entry that says what its pins were resolved for, beside the target
    /// and layer number: packages differ per architecture, platform or subdir.
    const KEY_FIELD: &'static str;
    /// One pinned package, as the lock file writes it (`[[SECTION.packages]]`).
    type Pin: Clone + std::fmt::Debug + Eq + Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// `debian` layers, pinned per Debian architecture (`amd64`).
pub struct Debian;

impl LockedSource for Debian {
    const SECTION: &'static str = "debian";
    const KEY_FIELD: &'static str = "arch";
    type Pin = super::debian::LockedDeb;
}

/// `pip` layers, pinned per image platform (`linux/amd64`): wheels differ per platform.
pub struct Pip;

impl LockedSource for Pip {
    const SECTION: &'static str = "pip";
    const KEY_FIELD: &'static str = "platform";
    type Pin = super::pip::LockedWheel;
}

/// `conda` layers, pinned per conda subdir (`linux-64`).
pub struct Conda;

impl LockedSource for Conda {
    const SECTION: &'static str = "conda";
    const KEY_FIELD: &'static str = "subdir";
    type Pin = super::conda::LockedConda;
}
