//! Every parser of `oci_build::fuzzing`. The input's first byte picks the parser, unless
//! `OCI_BUILD_FUZZ_PARSER` names one (`Wheel`, `Release`; see `Parser`), which then gets
//! every input whole.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_build::fuzzing::{Parser, run};

fn pinned() -> Option<Parser> {
    static PINNED: OnceLock<Option<Parser>> = OnceLock::new();
    *PINNED.get_or_init(|| {
        let name = std::env::var("OCI_BUILD_FUZZ_PARSER").ok()?;
        let found = Parser::ALL
            .into_iter()
            .find(|p| format!("{p:?}").eq_ignore_ascii_case(&name));
        // A misspelt name would fuzz nothing for hours: stop at once instead.
        assert!(
            found.is_some(),
            "OCI_BUILD_FUZZ_PARSER={name} names no parser"
        );
        found
    })
}

fuzz_target!(|data: &[u8]| {
    let (parser, bytes) = match pinned() {
        Some(parser) => (parser, data),
        None => match data.split_first() {
            Some((&which, rest)) => (Parser::ALL[usize::from(which) % Parser::ALL.len()], rest),
            None => return,
        },
    };
    // Refusals are fine; a panic (a parser's, or a broken invariant) is what libFuzzer reports.
    let _ = run(parser, bytes);
});
