//! Content digests (`sha256:<hex>`), parsed once and passed around as a type.
//!
//! Spec: <https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests>.
//! Only sha256 is produced; it is also the only algorithm registries are required to accept.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (expected `sha256:` and 64 lowercase hex digits)")]
pub struct DigestParseError(String);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex digits, as used in blob paths (`blobs/sha256/<hex>`).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn from_hex(hex: &str) -> Result<Self, DigestParseError> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestParseError(hex.escape_debug().to_string()))
        }
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestParseError(s.escape_debug().to_string()))?;
        Digest::from_hex(hex).map_err(|_| DigestParseError(s.escape_debug().to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a [`Digest`] written as its bare 64 hex digits, as lock files and `inputs.json`
/// store SHA256s: `#[serde(with = "crate::digest::bare_hex")]`. Anything else is refused
/// while the file is read, so such a field can be joined to a path.
pub mod bare_hex {
    use super::Digest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(digest.hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s)
    }

    fn parse<E: serde::de::Error>(s: &str) -> Result<Digest, E> {
        Digest::from_hex(s).map_err(|_| {
            E::custom(format_args!(
                "`{}` is not a SHA256 (64 lowercase hex digits)",
                s.escape_debug()
            ))
        })
    }

    /// The same for an optional field (`#[serde(default, with = "…::bare_hex::option")]`).
    pub mod option {
        use super::Digest;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(digest: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
            match digest {
                Some(digest) => super::serialize(digest, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Digest>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::parse(&s))
                .transpose()
        }
    }
}

/// A writer that hashes and counts everything passing through to `inner`.
///
/// Layers are hashed twice while they stream (uncompressed for the diff_id, compressed for the
/// blob digest), so neither needs a second read nor a buffer of the layer.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the wrapped writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a [`VerifyingReader`] found instead of the bytes it was promised.
#[derive(Clone, Debug, thiserror::Error)]
#[error("its content hashes to {found} ({size} bytes), not {expected}")]
pub struct ContentMismatch {
    pub expected: Digest,
    pub found: Digest,
    pub size: u64,
}

/// A reader that hashes what passes through and, at the end of the stream, fails unless it
/// was exactly the content `expected` names. A cached blob is checked this way while it is
/// extracted or copied, in the same read, so a blob changed in the cache since it was
/// verified never reaches a layer or an output. The error is an `InvalidData` I/O error whose
/// inner error is a [`ContentMismatch`]; [`VerifyingReader::finish`] reads what the consumer
/// left (an archive reader may stop before the end) and checks.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    expected: Digest,
    /// The outcome once the end was reached; every later read repeats it.
    outcome: Option<Result<(), ContentMismatch>>,
}

impl<R: io::Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            expected,
            outcome: None,
        }
    }

    /// Reads the rest of the stream and checks it.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(())
    }

    fn check(&mut self) -> io::Result<()> {
        let outcome = self.outcome.get_or_insert_with(|| {
            let found = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if found == self.expected {
                Ok(())
            } else {
                Err(ContentMismatch {
                    expected: self.expected.clone(),
                    found,
                    size: self.count,
                })
            }
        });
        outcome
            .clone()
            .map_err(|mismatch| io::Error::new(io::ErrorKind::InvalidData, mismatch))
    }
}

impl<R: io::Read> io::Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.outcome.is_some() {
            self.check()?;
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()?;
        } else {
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
        }
        Ok(n)
    }
}

/// Checks that the file at `path` is the content `expected` names, in one read. For formats
/// read out of order (zip: wheels, `.conda`), which cannot be checked while they are read.
pub fn verify_file(path: &std::path::Path, expected: &Digest) -> io::Result<()> {
    VerifyingReader::new(
        io::BufReader::new(std::fs::File::open(path)?),
        expected.clone(),
    )
    .finish()
}

/// Digest and size of everything `reader` yields, read in fixed-size pieces.
pub fn digest_reader(mut reader: impl io::Read) -> io::Result<(Digest, u64)> {
    let mut writer = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut writer)?;
    let (_, digest, size) = writer.finish();
    Ok((digest, size))
}

/// A reader that hashes what passes through, never failing on it: for content whose digest is
/// only a claim to check (a base's diff_id), where a mismatch decides what is kept, not whether
/// the read succeeds.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads the rest of the stream (a tar reader stops at its end marker) and returns the
    /// digest of all of it.
    pub fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Digest::from_hasher(self.hasher))
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(
            Digest::of_bytes(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_other_algorithms_and_bad_hex() {
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:ABC".parse::<Digest>().is_err());
        let d = Digest::of_bytes(b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn a_verifying_reader_fails_at_the_end_of_other_content() {
        use std::io::Read;
        let mut good = VerifyingReader::new(&b"hello"[..], Digest::of_bytes(b"hello"));
        let mut out = Vec::new();
        good.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");

        let mut swapped = VerifyingReader::new(&b"hellO"[..], Digest::of_bytes(b"hello"));
        let error = swapped.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let mismatch = error
            .into_inner()
            .unwrap()
            .downcast::<ContentMismatch>()
            .unwrap();
        assert_eq!(mismatch.found, Digest::of_bytes(b"hellO"));
        assert_eq!(mismatch.size, 5);

        // A consumer that stops early still gets the check from finish().
        let mut partial = VerifyingReader::new(&b"hellO"[..], Digest::of_bytes(b"hello"));
        partial.read_exact(&mut [0; 2]).unwrap();
        assert!(partial.finish().is_err());

        // A consumer that swallowed the error at the end does not make finish() pass.
        let mut swallowed = VerifyingReader::new(&b"hellO"[..], Digest::of_bytes(b"hello"));
        let _ = swallowed.read_to_end(&mut Vec::new());
        assert!(swallowed.finish().is_err());
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (inner, digest, count) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(count, 11);
        assert_eq!(digest, Digest::of_bytes(b"hello world"));
    }
}
