//! Licenses as packages state them, made into SPDX license expressions where that is certain.
//!
//! Debian's copyright files use their own short names (`GPL-2+`, `Expat`), Python metadata a
//! classifier's words (`MIT License`) or an expression, conda a free string. A name whose SPDX
//! identifier is unambiguous becomes it; an expression whose every identifier is on the SPDX
//! list (<https://spdx.org/licenses/>, the common part of it held here) stays one; anything
//! else is kept verbatim as a license of its own (`LicenseRef-…` in SPDX documents, a named
//! license in CycloneDX), never guessed.

/// A package's license, as far as it can be said.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum License {
    /// A valid SPDX license expression.
    Spdx(String),
    /// A license as the package names it, not an SPDX expression.
    Other(String),
}

/// SPDX identifiers oci-build recognises (a subset of the SPDX license list).
const SPDX_IDS: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AFL-3.0",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "APSL-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "Beerware",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "CDDL-1.1",
    "CPL-1.0",
    "curl",
    "ECL-2.0",
    "EPL-1.0",
    "EPL-2.0",
    "EUPL-1.2",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "FTL",
    "GFDL-1.2-only",
    "GFDL-1.2-or-later",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ICU",
    "IJG",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Libpng",
    "libtiff",
    "MIT",
    "MIT-0",
    "MIT-CMU",
    "MPL-1.1",
    "MPL-2.0",
    "MS-PL",
    "NCSA",
    "OFL-1.1",
    "OpenSSL",
    "PHP-3.01",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "SGI-B-2.0",
    "Sleepycat",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "UPL-1.0",
    "Vim",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
];

/// SPDX license exceptions recognised after `WITH`.
const SPDX_EXCEPTIONS: &[&str] = &[
    "Autoconf-exception-3.0",
    "Bison-exception-2.2",
    "Classpath-exception-2.0",
    "GCC-exception-2.0",
    "GCC-exception-3.1",
    "LLVM-exception",
];

/// Names that mean exactly one SPDX identifier: Debian's short names, classifiers' words.
const ALIASES: &[(&str, &str)] = &[
    ("GPL-1", "GPL-1.0-only"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("GPL-3.0+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("GFDL-1.2", "GFDL-1.2-only"),
    ("GFDL-1.2+", "GFDL-1.2-or-later"),
    ("GFDL-1.3", "GFDL-1.3-only"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"),
    ("Expat", "MIT"),
    ("MIT License", "MIT"),
    ("Apache-2", "Apache-2.0"),
    ("ISC License (ISCL)", "ISC"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    ("Python Software Foundation License", "PSF-2.0"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
    ("zlib/libpng License", "Zlib"),
    ("public-domain", ""),
];

fn spdx_id(token: &str) -> Option<&'static str> {
    if let Some((_, id)) = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(token))
    {
        return (!id.is_empty()).then_some(*id);
    }
    SPDX_IDS
        .iter()
        .find(|id| id.eq_ignore_ascii_case(token))
        .copied()
}

/// The license `raw` as an SPDX expression where every part of it is certain, else as it is.
pub fn normalize(raw: &str) -> License {
    let raw = raw.trim();
    if let Some(id) = spdx_id(raw) {
        return License::Spdx(id.to_owned());
    }
    spdx_expression(raw).map_or_else(|| License::Other(raw.to_owned()), License::Spdx)
}

/// `raw` as an SPDX expression: identifiers (or aliases) joined by AND/OR (Debian's `and`,
/// `or`), WITH an exception, in parentheses. None where anything is unknown.
fn spdx_expression(raw: &str) -> Option<String> {
    let spaced = raw.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = Vec::new();
    let mut expect_operand = true;
    let mut after_with = false;
    let mut depth = 0i32;
    for token in spaced.split_whitespace() {
        let upper = token.to_ascii_uppercase();
        match upper.as_str() {
            "(" if expect_operand => {
                depth += 1;
                out.push("(".to_owned());
            }
            ")" if !expect_operand && depth > 0 => {
                depth -= 1;
                out.push(")".to_owned());
            }
            "AND" | "OR" if !expect_operand => {
                out.push(upper);
                expect_operand = true;
            }
            "WITH" if !expect_operand => {
                out.push(upper);
                expect_operand = true;
                after_with = true;
            }
            _ if expect_operand && after_with => {
                let exception = SPDX_EXCEPTIONS
                    .iter()
                    .find(|e| e.eq_ignore_ascii_case(token))?;
                out.push((*exception).to_owned());
                expect_operand = false;
                after_with = false;
            }
            _ if expect_operand => {
                out.push(spdx_id(token)?.to_owned());
                expect_operand = false;
            }
            _ => return None,
        }
    }
    (!expect_operand && depth == 0 && !out.is_empty())
        .then(|| out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// An SPDX `LicenseRef-` identifier for a license that is not an SPDX expression: letters,
/// digits, `.` and `-` only.
pub(super) fn license_ref(raw: &str) -> String {
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.truncate(64);
    let id = id.trim_matches('-');
    format!("LicenseRef-{}", if id.is_empty() { "unnamed" } else { id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certain_names_become_spdx_and_the_rest_stays_as_stated() {
        let spdx = |s: &str| License::Spdx(s.to_owned());
        assert_eq!(normalize("GPL-2+"), spdx("GPL-2.0-or-later"));
        assert_eq!(normalize("Expat"), spdx("MIT"));
        assert_eq!(normalize("mit"), spdx("MIT"));
        assert_eq!(
            normalize("GPL-2+ or Artistic-1.0"),
            spdx("GPL-2.0-or-later OR Artistic-1.0")
        );
        assert_eq!(
            normalize("(Apache-2.0 OR MIT) AND BSD-3-Clause"),
            spdx("(Apache-2.0 OR MIT) AND BSD-3-Clause")
        );
        assert_eq!(
            normalize("GPL-3+ WITH GCC-exception-3.1"),
            spdx("GPL-3.0-or-later WITH GCC-exception-3.1")
        );
        for other in [
            "BSD License",
            "public-domain",
            "GPL-2+ or",
            "Apache 2.0",
            "MIT AND (X",
        ] {
            assert_eq!(
                normalize(other),
                License::Other(other.to_owned()),
                "{other}"
            );
        }
        assert_eq!(license_ref("BSD License"), "LicenseRef-BSD-License");
        assert_eq!(license_ref("+++"), "LicenseRef-unnamed");
    }
}
