//! The locked package kinds, registered once.
//!
//! Everything that treats kinds alike (the recipe key of a `[[layer]]`, the lock file's tables,
//! `inputs.json` entries, building a layer) goes through [`LockedSpec`] and the functions here,
//! which `register!` generates from one line per kind. Adding a kind: its module implements
//! [`LockedSource`], and one line at the end of this file names it.

use serde::Deserializer;
use serde::de::DeserializeSeed;

use super::locked::{Input, InputKind, LockedSource, SpecContext, SpecProblem};
use super::{LockedLayer, SourceError};
use crate::layer::LayerTree;
use crate::layer::cache::Cache;

/// Called for each kind, in registration order (the order of the lock file's tables).
pub(crate) trait KindVisitor {
    fn visit<K: LockedSource>(&mut self);
}

/// Something done with a spec as its kind ([`LockedSpec::visit`]).
pub(crate) trait SpecVisitor {
    type Output;
    fn visit<K: LockedSource>(&mut self, spec: &K::Spec) -> Self::Output;
}

macro_rules! register {
    ($($variant:ident: $kind:ty),+ $(,)?) => {
        /// A locked layer's spec, by kind.
        // One per layer of a recipe, held in a box by the layer (`LayerSource::Locked`): the
        // sizes of the kinds' specs differ, which costs nothing here.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug)]
        pub enum LockedSpec {
            $($variant(<$kind as LockedSource>::Spec),)+
        }

        /// The recipe keys of the locked kinds, in registration order.
        pub(crate) const KEYS: &[&str] = &[$(<$kind as LockedSource>::SECTION),+];

        /// Visits every kind, in registration order.
        pub(crate) fn each_kind(visitor: &mut impl KindVisitor) {
            $(visitor.visit::<$kind>();)+
        }

        impl LockedSpec {
            /// The recipe key (and lock table) of the spec's kind.
            pub fn key(&self) -> &'static str {
                match self {
                    $(LockedSpec::$variant(_) => <$kind as LockedSource>::SECTION,)+
                }
            }

            /// Reads the value of recipe key `key`, which must be one of [`KEYS`].
            pub fn from_recipe<'de, D: Deserializer<'de>>(
                key: &str,
                deserializer: D,
            ) -> Result<LockedSpec, D::Error> {
                use serde::Deserialize;
                $(
                    if key == <$kind as LockedSource>::SECTION {
                        return <$kind as LockedSource>::Spec::deserialize(deserializer)
                            .map(LockedSpec::$variant);
                    }
                )+
                unreachable!("`{key}` is not a locked kind's key: `LayerKey` refuses it first")
            }

            pub fn check(&self, recipe: &SpecContext) -> Result<LockedSpec, SpecProblem> {
                match self {
                    $(LockedSpec::$variant(spec) => {
                        <$kind as LockedSource>::check_spec(spec, recipe).map(LockedSpec::$variant)
                    })+
                }
            }

            pub fn describe(&self) -> String {
                match self {
                    $(LockedSpec::$variant(spec) => <$kind as LockedSource>::describe(spec),)+
                }
            }

            pub fn path_prepend(&self) -> Vec<String> {
                match self {
                    $(LockedSpec::$variant(spec) => <$kind as LockedSource>::path_prepend(spec),)+
                }
            }

            /// Hands the spec, as its kind, to `visitor`.
            pub(crate) fn visit<V: SpecVisitor>(&self, visitor: &mut V) -> V::Output {
                match self {
                    $(LockedSpec::$variant(spec) => visitor.visit::<$kind>(spec),)+
                }
            }

            /// Builds the layer with `layer`, as its kind.
            pub fn build<L: LockedLayer>(&self, layer: &mut L) -> Result<LayerTree, L::Error> {
                match self {
                    $(LockedSpec::$variant(spec) => layer.build::<$kind>(spec),)+
                }
            }
        }

        /// The input kind named `name` in `inputs.json`, if `image` or a kind declares it.
        pub(crate) fn input_kind(name: &str) -> Option<InputKind> {
            std::iter::once(&InputKind::IMAGE)
                $(.chain(<$kind as LockedSource>::INPUT_KINDS))+
                .find(|kind| kind.name() == name)
                .copied()
        }

        /// How messages name a package input (None for `image`).
        pub(crate) fn describe_input(input: &Input) -> Option<String> {
            $(
                if <$kind as LockedSource>::INPUT_KINDS.contains(&input.kind) {
                    return Some(<$kind as LockedSource>::describe_input(input));
                }
            )+
            None
        }

        /// A package input's own checks (None for `image`).
        pub(crate) fn check_input(input: &Input) -> Option<Result<(), String>> {
            $(
                if <$kind as LockedSource>::INPUT_KINDS.contains(&input.kind) {
                    return Some(<$kind as LockedSource>::check_input(input));
                }
            )+
            None
        }

        /// Puts a derived input where the kind that declares it looks for it.
        pub(crate) fn place_derived(cache: &Cache, derived: &Input, blob: &std::path::Path) -> Result<(), SourceError> {
            $(
                if <$kind as LockedSource>::INPUT_KINDS.contains(&derived.kind) {
                    return <$kind as LockedSource>::place_derived(cache, derived, blob);
                }
            )+
            unreachable!("no kind declares the input kind {}", derived.kind)
        }
    };
}

// The kinds, one line each, in the order the lock file lists their tables.
register! {
    Debian: super::debian::Debian,
    Pip: super::pip::Pip,
    Conda: super::conda::Conda,
}

/// Reads one locked kind's spec from a recipe, keeping the deserializer's positions for errors.
pub(crate) struct SpecSeed<'a>(pub &'a str);

impl<'de> DeserializeSeed<'de> for SpecSeed<'_> {
    type Value = LockedSpec;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<LockedSpec, D::Error> {
        LockedSpec::from_recipe(self.0, deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(Vec<(&'static str, &'static str)>);
    impl KindVisitor for Names {
        fn visit<K: LockedSource>(&mut self) {
            self.0.push((K::SECTION, K::KEY_FIELD));
        }
    }

    #[test]
    fn kinds_are_visited_in_the_order_of_their_keys() {
        let mut names = Names(Vec::new());
        each_kind(&mut names);
        let sections: Vec<&str> = names.0.iter().map(|(section, _)| *section).collect();
        assert_eq!(sections, KEYS);
        assert_eq!(
            sections,
            ["debian", "pip", "conda"],
            "the lock file's table order"
        );
    }

    #[test]
    fn every_declared_input_kind_reads_back_and_names_are_unique() {
        let declared = [super::super::debian::kind::DEB]
            .into_iter()
            .chain([
                super::super::pip::kind::PIP,
                super::super::pip::kind::PIP_BUILT,
            ])
            .chain([super::super::conda::kind::CONDA]);
        let mut seen = vec![InputKind::IMAGE.name()];
        for kind in declared {
            assert_eq!(input_kind(kind.name()), Some(kind));
            assert!(!seen.contains(&kind.name()), "{kind} declared twice");
            seen.push(kind.name());
        }
        assert_eq!(input_kind("image"), Some(InputKind::IMAGE));
        assert_eq!(input_kind("apk"), None);
    }

    #[test]
    fn inputs_sort_as_the_inputs_file_always_listed_them() {
        let mut kinds = [
            super::super::conda::kind::CONDA,
            InputKind::IMAGE,
            super::super::pip::kind::PIP_BUILT,
            super::super::pip::kind::PIP,
            super::super::debian::kind::DEB,
        ];
        kinds.sort();
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["deb", "pip", "pip-built", "image", "conda"]);
    }
}
