//! Control-file stanzas: `Packages` indexes, `Release` files, the dpkg status database and
//! apt's `.sources` files.
//!
//! Input: the text of such a file. Output: its [`Stanza`]s in order, each a list of fields in
//! file order with their names as written; [`Stanza::to_text`] writes one back (that is how the
//! layer's `/var/lib/dpkg/status` is written).
//!
//! Implements the syntax of Debian Policy §5.1 and deb822(5): stanzas separated by lines that
//! are empty or hold only whitespace, `Name: value` fields, continuation lines starting with a
//! space or tab, and `#` comment lines (which deb822(5) allows only in some files; they are
//! harmless elsewhere, since no field line can start with `#`). Values are kept as text: the
//! parser does not interpret ` .` lines or any field's meaning, which is up to each field's
//! reader.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Deb822Error {
    #[error("line {line}: `{text}` is neither a field (`Name: value`) nor a continuation line")]
    NotAField { line: usize, text: String },
    #[error(
        "line {line}: a continuation line (starting with a space or tab) comes before any field"
    )]
    OrphanContinuation { line: usize },
    #[error(
        "line {line}: `{name}` is not a field name (it may not be empty, contain whitespace or start with `-`)"
    )]
    BadName { line: usize, name: String },
    #[error("line {line}: field `{name}` appears a second time in the same stanza")]
    Duplicate { line: usize, name: String },
}

/// One stanza (paragraph) of a control file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    fields: Vec<(String, String)>,
    line: usize,
}

impl Stanza {
    pub fn new() -> Self {
        Self::default()
    }

    /// The line, counted from 1, where the stanza starts in the parsed text; 0 for a stanza
    /// built in code.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The value of field `name`, matched without regard to case as field names are.
    ///
    /// A multi-line value is its first line, then each continuation line without its first
    /// space or tab, joined with `\n`; trailing whitespace is dropped from each line. A value
    /// that starts on the next line (`SHA256:` in a Release file) starts with `\n`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The fields in order, with their names as written.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Sets field `name`: replaces the value of an existing field of that name (keeping its
    /// place and spelling), or adds the field at the end.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// Removes field `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(index).1)
    }

    /// The stanza as control-file text: `Name: value` lines, each further line of a value
    /// indented by one space, ending with a newline and without the blank line that separates
    /// stanzas.
    ///
    /// A value line that is empty (or only whitespace) cannot be written as such, since it
    /// would end the stanza; it is written as ` .`, the convention of deb822(5).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) {
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            let mut lines = value.split('\n');
            let first = lines.next().unwrap_or_default();
            if !first.is_empty() {
                out.push(' ');
                out.push_str(first);
            }
            for line in lines {
                out.push_str("\n ");
                out.push_str(if line.trim().is_empty() { "." } else { line });
            }
            out.push('\n');
        }
    }
}

impl fmt::Display for Stanza {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Stanza {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Stanza {
            fields: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            line: 0,
        }
    }
}

/// Parses the stanzas of a control file.
///
/// Errors name the line (counted from 1); the caller knows the file. A field given twice in one
/// stanza is an error, as in dpkg (Policy §5.1).
pub(crate) fn parse(text: &str) -> Result<Vec<Stanza>, Deb822Error> {
    let mut stanzas = Vec::new();
    let mut current: Option<Stanza> = None;
    for line in lines(text) {
        let number = line.number;
        if line.is_blank() {
            stanzas.extend(current.take());
            continue;
        }
        // Comments do not end a stanza: `.sources` files put them between fields.
        if line.text.starts_with('#') {
            continue;
        }
        if let Some(more) = line.continuation() {
            let Some((_, value)) = current.as_mut().and_then(|s| s.fields.last_mut()) else {
                return Err(Deb822Error::OrphanContinuation { line: number });
            };
            value.push('\n');
            value.push_str(more);
            continue;
        }
        let Some((name, value)) = line.field() else {
            return Err(Deb822Error::NotAField {
                line: number,
                text: excerpt(line.text),
            });
        };
        if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
            return Err(Deb822Error::BadName {
                line: number,
                name: excerpt(name),
            });
        }
        let stanza = current.get_or_insert_with(|| Stanza {
            // Packages stanzas have about 20 fields; this saves most regrowth.
            fields: Vec::with_capacity(24),
            line: number,
        });
        if stanza.get(name).is_some() {
            return Err(Deb822Error::Duplicate {
                line: number,
                name: name.to_owned(),
            });
        }
        stanza.fields.push((name.to_owned(), value.to_owned()));
    }
    stanzas.extend(current);
    Ok(stanzas)
}

/// One line of control-file text, as [`lines`] gives it.
///
/// This is the syntax that [`parse`] and the Release reader
/// ([`super::release::parse_release`]) share; what each makes of the lines (comments, which
/// field names it takes, how many stanzas, its error messages) is up to it, because the files
/// differ there (a Release file is one paragraph, its `#` lines are fields, and its errors quote
/// whole lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// Counted from 1.
    pub(crate) number: usize,
    /// The line without its `\n` or `\r\n`.
    pub(crate) text: &'a str,
}

impl<'a> Line<'a> {
    /// Empty or only whitespace: the line separates stanzas.
    pub(crate) fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// For a continuation line (one starting with a space or tab): the rest of the line after
    /// that one character, trailing whitespace dropped. Only the marking character goes; further
    /// indentation is part of the value (a Description's verbatim lines keep theirs).
    pub(crate) fn continuation(&self) -> Option<&'a str> {
        self.text
            .starts_with([' ', '\t'])
            .then(|| self.text[1..].trim_end())
    }

    /// For a line with a colon: the name before the first colon, as written and not checked,
    /// and the value after it, trimmed. A colon in the value belongs to the value.
    pub(crate) fn field(&self) -> Option<(&'a str, &'a str)> {
        let (name, value) = self.text.split_once(':')?;
        Some((name, value.trim()))
    }
}

/// The lines of control-file text, numbered from 1. A `\r` before a line's `\n`, or at the end
/// of the text, is dropped, so files with CRLF line ends read as files with LF ones.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.split('\n').enumerate().map(|(index, raw)| Line {
        number: index + 1,
        text: raw.strip_suffix('\r').unwrap_or(raw),
    })
}

/// A line as quoted in an error: a whole armored key or a binary file should not be.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: hello
Version: 2.10-3
Architecture: amd64
Depends: libc6 (>= 2.34)
Description: example package based on GNU hello
 The GNU hello program produces a familiar, friendly greeting.
 .
    indented verbatim line
Description-md5: 1234

\t
Package: zlib1g
version: 1:1.2.13.dfsg-1
";

    #[test]
    fn stanzas_fields_and_continuations() {
        let stanzas = parse(PACKAGES).unwrap();
        assert_eq!(stanzas.len(), 2);
        let hello = &stanzas[0];
        assert_eq!(hello.line(), 1);
        assert_eq!(hello.get("package"), Some("hello"));
        assert_eq!(hello.get("DEPENDS"), Some("libc6 (>= 2.34)"));
        assert_eq!(
            hello.get("Description"),
            Some(
                "example package based on GNU hello\n\
                 The GNU hello program produces a familiar, friendly greeting.\n\
                 .\n   indented verbatim line"
            )
        );
        assert_eq!(hello.get("Missing"), None);
        // A separator line holding only whitespace ends the stanza as an empty one does.
        assert_eq!(stanzas[1].line(), 12);
        let fields: Vec<_> = stanzas[1].fields().collect();
        assert_eq!(
            fields,
            [("Package", "zlib1g"), ("version", "1:1.2.13.dfsg-1")]
        );
        assert_eq!(stanzas[1].get("Version"), Some("1:1.2.13.dfsg-1"));
    }

    #[test]
    fn value_starting_on_the_next_line() {
        let release = "Origin: Example\nSHA256:\n abc 12 main/binary-amd64/Packages\n def 34 main/binary-amd64/Packages.xz\n";
        let stanzas = parse(release).unwrap();
        assert_eq!(
            stanzas[0].get("sha256"),
            Some("\nabc 12 main/binary-amd64/Packages\ndef 34 main/binary-amd64/Packages.xz")
        );
        assert_eq!(stanzas[0].to_text(), release);
    }

    #[test]
    fn comments_crlf_and_surrounding_blank_lines() {
        let text = "\n\n# a comment\r\nTypes: deb\r\n# between fields\r\nURIs: http://archive.invalid/debian \r\n #not a comment\r\n\r\n\r\n# trailing\r\n";
        let stanzas = parse(text).unwrap();
        assert_eq!(stanzas.len(), 1);
        assert_eq!(stanzas[0].line(), 4);
        assert_eq!(stanzas[0].get("Types"), Some("deb"));
        assert_eq!(
            stanzas[0].get("URIs"),
            Some("http://archive.invalid/debian\n#not a comment")
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse("\n \n# only a comment\n").unwrap().is_empty());
        // A colon in the value belongs to the value.
        let s = parse("Homepage: http://example.invalid:8080/x").unwrap();
        assert_eq!(s[0].get("Homepage"), Some("http://example.invalid:8080/x"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("Package: a\n\n continued").unwrap_err(),
            Deb822Error::OrphanContinuation { line: 3 }
        );
        assert_eq!(
            parse(" continued").unwrap_err(),
            Deb822Error::OrphanContinuation { line: 1 }
        );
        let err = parse("Package: a\nno colon here\n").unwrap_err();
        assert_eq!(
            err,
            Deb822Error::NotAField {
                line: 2,
                text: "no colon here".into()
            }
        );
        assert!(
            err.to_string().starts_with("line 2: `no colon here`"),
            "{err}"
        );
        assert_eq!(
            parse("Package: a\nVersion: 1\npackage: b\n").unwrap_err(),
            Deb822Error::Duplicate {
                line: 3,
                name: "package".into()
            }
        );
        assert!(matches!(
            parse("Bad Name: x").unwrap_err(),
            Deb822Error::BadName { line: 1, .. }
        ));
        assert!(matches!(
            parse(": x").unwrap_err(),
            Deb822Error::BadName { line: 1, .. }
        ));
        let long = "x".repeat(10_000);
        let err = parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn to_text_round_trips() {
        let stanzas = parse(PACKAGES).unwrap();
        for stanza in &stanzas {
            let again = parse(&stanza.to_text()).unwrap();
            assert_eq!(again.len(), 1);
            let a: Vec<_> = stanza.fields().collect();
            let b: Vec<_> = again[0].fields().collect();
            assert_eq!(a, b);
        }
        assert!(stanzas[0].to_text().contains(
            "Description: example package based on GNU hello\n The GNU hello program produces a familiar, friendly greeting.\n .\n    indented verbatim line\n"
        ));
    }

    #[test]
    fn built_stanzas_write_in_order_and_never_a_blank_line() {
        let mut stanza: Stanza = [("Package", "a"), ("Status", "install ok unpacked")]
            .into_iter()
            .collect();
        stanza.set("status", "install ok installed");
        stanza.set("Conffiles", "\n/etc/a.conf 0123");
        stanza.set("Description", "short\n\nafter an empty line");
        assert_eq!(
            stanza.to_text(),
            "Package: a\nStatus: install ok installed\nConffiles:\n /etc/a.conf 0123\nDescription: short\n .\n after an empty line\n"
        );
        assert_eq!(stanza.remove("PACKAGE").as_deref(), Some("a"));
        assert_eq!(stanza.len(), 3);
        assert_eq!(parse(&stanza.to_text()).unwrap().len(), 1);
    }

    #[test]
    fn large_index_parses_in_linear_time() {
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!(
                "Package: pkg{i}\nVersion: 1.{i}-1\nArchitecture: amd64\nInstalled-Size: {i}\n\
                 Depends: libc6 (>= 2.34), libfoo{i}\nFilename: pool/main/p/pkg{i}/pkg{i}_1.{i}-1_amd64.deb\n\
                 Size: 1234\nSHA256: {:064x}\nDescription: package {i}\n long line one\n .\n long line two\n\n",
                i
            ));
        }
        let start = std::time::Instant::now();
        let stanzas = parse(&text).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(stanzas.len(), 50_000);
        assert_eq!(stanzas[49_999].get("Package"), Some("pkg49999"));
        assert_eq!(stanzas[49_999].line(), 49_999 * 13 + 1);
        // Only a gross regression (quadratic work) would get near this, even unoptimised.
        assert!(elapsed.as_secs() < 10, "parsing took {elapsed:?}");
    }
}
