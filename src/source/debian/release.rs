//! `InRelease` and `Release` files: the signed root of a Debian archive suite.
//!
//! An `InRelease` file is an OpenPGP cleartext-signed `Release` file. [`verify_inrelease`]
//! checks its signatures in-process with rpgp (the `pgp` crate) against [`Keyring`]s — the
//! binary or armored keyrings apt reads (`/usr/share/keyrings/*.gpg`, `*.asc`, inline
//! `Signed-By` keys) — and returns the signed text. [`parse_release`] reads that text, and
//! [`Release::check_file`] checks the index files (`main/binary-amd64/Packages.xz`) that the
//! Release lists against their SHA256 and size.
//!
//! The rules follow apt's: the file passes when at least one signature verifies with a key from
//! the keyrings that is neither expired nor revoked; signatures by keys we do not have are
//! ignored; a signature that fails to verify with a key we have fails the whole file (apt: "At
//! least one invalid signature was encountered"); MD5, SHA-1 and RIPEMD-160 signatures do not
//! count. Keys in a keyring are trusted because they are there: self-signatures are read only to
//! find a key's expiry, revocations and which subkeys may sign.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::armor::DearmorOptions;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicParams, Tag};
use sha2::{Digest as _, Sha256};

use crate::time;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read keyring `{path}`")]
    ReadKeyring {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keyring `{keyring}` holds no usable OpenPGP public key: {reason}")]
    NoKeys { keyring: String, reason: String },
    #[error("`{file}` is not an OpenPGP cleartext-signed message: {reason}")]
    NotCleartextSigned { file: String, reason: String },
    #[error(
        "`{file}` is signed only by keys that are not in the keyrings ({keyrings}): missing {issuers}"
    )]
    UnknownKey {
        file: String,
        issuers: String,
        keyrings: String,
    },
    #[error(
        "`{file}` has a BAD signature by key {key}: the signed text was modified or the signature is corrupt"
    )]
    BadSignature { file: String, key: String },
    #[error("`{file}` is signed by key {key}, which expired on {expired}")]
    KeyExpired {
        file: String,
        key: String,
        expired: String,
    },
    #[error("`{file}` is signed by key {key}, which is revoked")]
    KeyRevoked { file: String, key: String },
    #[error("`{file}` has a signature by key {key} that expired on {expired}")]
    SignatureExpired {
        file: String,
        key: String,
        expired: String,
    },
    #[error("`{file}` is signed by key {key} with the weak digest {digest}, which is not accepted")]
    WeakDigest {
        file: String,
        key: String,
        digest: String,
    },
    #[error("`{file}` is signed by key {key}, which may not sign for its primary key: {reason}")]
    UnusableSubkey {
        file: String,
        key: String,
        reason: String,
    },
    #[error("Release file, line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("the Release file has no SHA256 field, so its index files cannot be checked")]
    NoChecksums,
    #[error("`{path}` is not listed in the Release file's SHA256 checksums")]
    NotListed { path: String },
    #[error(
        "`{path}` does not match the Release file: expected sha256 {expected} ({expected_size} bytes), found sha256 {found} ({found_size} bytes)"
    )]
    Mismatch {
        path: String,
        expected: String,
        expected_size: u64,
        found: String,
        found_size: u64,
    },
    #[error(
        "the Release file of suite `{suite}` expired on {valid_until} (Valid-Until): the mirror is stale or the clock is wrong"
    )]
    Expired { suite: String, valid_until: String },
    #[error(
        "the Release file's {field} `{value}` is not a date like `Sat, 06 Dec 2025 08:51:23 UTC`"
    )]
    BadDate { field: &'static str, value: String },
}

// ---------------------------------------------------------------------------------------------
// Keyrings

/// OpenPGP public keys that an archive's `InRelease` may be signed with.
#[derive(Clone, Debug)]
pub struct Keyring {
    name: String,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a keyring file: binary (concatenated transferable public keys, as in
    /// `/usr/share/keyrings/debian-archive-keyring.gpg`) or ASCII-armored (`.asc`, one or more
    /// `PUBLIC KEY BLOCK`s). The content decides, not the file name.
    pub fn load(path: &Path) -> Result<Keyring, ReleaseError> {
        let data = std::fs::read(path).map_err(|source| ReleaseError::ReadKeyring {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        let start = data.iter().position(|b| !b.is_ascii_whitespace());
        match start {
            None => Err(ReleaseError::NoKeys {
                keyring: name,
                reason: "the file is empty".to_string(),
            }),
            Some(i) if data[i] & 0x80 != 0 => Keyring::from_binary(name, &data[i..]),
            Some(_) => match std::str::from_utf8(&data) {
                Ok(text) => Keyring::from_armored_named(name, text),
                Err(_) => Err(ReleaseError::NoKeys {
                    keyring: name,
                    reason: "it is neither a binary OpenPGP keyring nor ASCII-armored text"
                        .to_string(),
                }),
            },
        }
    }

    /// Reads ASCII-armored keys given inline, as in a deb822 source's `Signed-By` field.
    pub fn from_armored(text: &str) -> Result<Keyring, ReleaseError> {
        Keyring::from_armored_named("inline Signed-By key".to_string(), text)
    }

    /// The path the keyring came from, or `inline Signed-By key`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many keys were loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The primary key fingerprints, upper-case hex, in keyring order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.fingerprint()))
            .collect()
    }

    fn from_binary(name: String, data: &[u8]) -> Result<Keyring, ReleaseError> {
        let mut loader = Loader::new(name);
        match SignedPublicKey::from_bytes_many(data) {
            Ok(keys) => loader.add_all(keys),
            Err(e) => loader.skip(e.to_string()),
        }
        loader.finish()
    }

    fn from_armored_named(name: String, text: &str) -> Result<Keyring, ReleaseError> {
        const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
        const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";
        let mut loader = Loader::new(name);
        let mut rest = text;
        let mut blocks = 0;
        while let Some(start) = rest.find(BEGIN) {
            let block = &rest[start..];
            let Some(end) = block.find(END) else {
                loader.skip(format!("a `{BEGIN}` has no `{END}`"));
                break;
            };
            let block = &block[..end + END.len()];
            blocks += 1;
            match SignedPublicKey::from_armor_many(block.as_bytes()) {
                Ok((keys, _headers)) => loader.add_all(keys),
                Err(e) => loader.skip(e.to_string()),
            }
            rest = &rest[start + end + END.len()..];
        }
        if blocks == 0 && loader.reasons.is_empty() {
            loader.skip(format!("no `{BEGIN}` found"));
        }
        loader.finish()
    }
}

/// Collects the keys of one keyring, skipping those that cannot be used.
struct Loader {
    name: String,
    keys: Vec<SignedPublicKey>,
    reasons: Vec<String>,
}

impl Loader {
    fn new(name: String) -> Self {
        Loader {
            name,
            keys: Vec::new(),
            reasons: Vec::new(),
        }
    }

    fn add_all(&mut self, keys: impl Iterator<Item = pgp::errors::Result<SignedPublicKey>>) {
        for key in keys {
            match key {
                Ok(key)
                    if matches!(
                        key.primary_key.public_params(),
                        PublicParams::Unknown { .. }
                    ) =>
                {
                    self.skip(format!(
                        "key {:X} uses the unsupported algorithm {:?}",
                        key.fingerprint(),
                        key.algorithm()
                    ));
                }
                Ok(key) => self.keys.push(key),
                Err(e) => self.skip(e.to_string()),
            }
        }
    }

    fn skip(&mut self, reason: String) {
        tracing::warn!("keyring `{}`: skipping a key: {reason}", self.name);
        self.reasons.push(reason);
    }

    fn finish(self) -> Result<Keyring, ReleaseError> {
        if self.keys.is_empty() {
            let reason = if self.reasons.is_empty() {
                "it contains no public key".to_string()
            } else {
                self.reasons.join("; ")
            };
            return Err(ReleaseError::NoKeys {
                keyring: self.name,
                reason,
            });
        }
        Ok(Keyring {
            name: self.name,
            keys: self.keys,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// InRelease verification

/// Verifies an `InRelease` file (`data`) against `keyrings` and returns the signed text: dash
/// escapes undone, trailing blanks of each line removed and line ends `\n`, as the signatures
/// cover it (without the line break that ends the text before the signature block). `file`
/// names the file (URL or path) in errors. Keys are checked for expiry against the clock.
pub fn verify_inrelease(
    data: &[u8],
    keyrings: &[Keyring],
    file: &str,
) -> Result<String, ReleaseError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    verify_inrelease_at(data, keyrings, file, now)
}

/// [`verify_inrelease`] with key expiry judged at `now_unix` (seconds since 1970).
pub fn verify_inrelease_at(
    data: &[u8],
    keyrings: &[Keyring],
    file: &str,
    now_unix: u64,
) -> Result<String, ReleaseError> {
    const BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
    let not_signed = |reason: String| ReleaseError::NotCleartextSigned {
        file: file.to_string(),
        reason,
    };
    if !data.starts_with(BEGIN) {
        return Err(not_signed(format!(
            "it does not begin with `{}` (an error page from a proxy?)",
            String::from_utf8_lossy(BEGIN)
        )));
    }
    let (message, _headers) = CleartextSignedMessage::from_armor_buf(data, DearmorOptions::new())
        .map_err(|e| not_signed(e.to_string()))?;
    if message.signatures().is_empty() {
        return Err(not_signed("it carries no signature".to_string()));
    }
    // The text as the signatures cover it: dash escapes undone, CRLF line ends.
    let signed = message.signed_text();

    let verdicts: Vec<Verdict> = message
        .signatures()
        .iter()
        .map(|sig| check_signature(sig, signed.as_bytes(), keyrings, now_unix))
        .collect();

    let file = file.to_string();
    if let Some(Verdict::Bad(key)) = verdicts.iter().find(|v| matches!(v, Verdict::Bad(_))) {
        return Err(ReleaseError::BadSignature {
            file,
            key: key.clone(),
        });
    }
    if verdicts.iter().any(|v| matches!(v, Verdict::Good)) {
        return Ok(signed.replace("\r\n", "\n"));
    }
    let mut unknown = Vec::new();
    for verdict in verdicts {
        match verdict {
            Verdict::Good | Verdict::Bad(_) => unreachable!("handled above"),
            Verdict::Unknown(issuer) => unknown.push(issuer),
            Verdict::Expired(key, when) => {
                return Err(ReleaseError::KeyExpired {
                    file,
                    key,
                    expired: format_date(when),
                });
            }
            Verdict::SignatureExpired(key, when) => {
                return Err(ReleaseError::SignatureExpired {
                    file,
                    key,
                    expired: format_date(when),
                });
            }
            Verdict::Revoked(key) => return Err(ReleaseError::KeyRevoked { file, key }),
            Verdict::Weak(key, digest) => {
                return Err(ReleaseError::WeakDigest { file, key, digest });
            }
            Verdict::Unusable(key, reason) => {
                return Err(ReleaseError::UnusableSubkey { file, key, reason });
            }
        }
    }
    let keyrings = if keyrings.is_empty() {
        "no keyring given".to_string()
    } else {
        keyrings
            .iter()
            .map(|k| format!("`{}`", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(ReleaseError::UnknownKey {
        file,
        issuers: unknown.join(", "),
        keyrings,
    })
}

/// What one signature of an `InRelease` file amounts to. Strings name the key.
enum Verdict {
    Good,
    Bad(String),
    Unknown(String),
    Expired(String, u64),
    SignatureExpired(String, u64),
    Revoked(String),
    Weak(String, String),
    Unusable(String, String),
}

/// A key that may have made a signature: a primary key or one of its subkeys.
#[derive(Clone, Copy)]
enum Signer<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicKey, &'a SignedPublicSubKey),
}

impl Signer<'_> {
    fn primary(&self) -> &SignedPublicKey {
        match self {
            Signer::Primary(k) | Signer::Subkey(k, _) => k,
        }
    }

    fn issued(&self, sig: &Signature) -> bool {
        let (fingerprint, key_id) = match self {
            Signer::Primary(k) => (k.fingerprint(), k.legacy_key_id()),
            Signer::Subkey(_, s) => (s.key.fingerprint(), s.key.legacy_key_id()),
        };
        let ids = sig.issuer_key_id();
        let fps = sig.issuer_fingerprint();
        (ids.is_empty() && fps.is_empty())
            || ids.iter().any(|id| **id == key_id)
            || fps.iter().any(|fp| **fp == fingerprint)
    }

    fn verify(&self, sig: &Signature, data: &[u8]) -> bool {
        match self {
            Signer::Primary(k) => sig.verify(&k.primary_key, data).is_ok(),
            Signer::Subkey(_, s) => sig.verify(&s.key, data).is_ok(),
        }
    }
}

impl fmt::Display for Signer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let primary = self.primary();
        if let Signer::Subkey(_, s) = self {
            write!(f, "{:X} (a subkey of ", s.key.fingerprint())?;
        }
        write!(f, "{:X}", primary.fingerprint())?;
        if let Some(uid) = primary.details.users.first().and_then(|u| u.id.as_str()) {
            write!(f, " \"{uid}\"")?;
        }
        if let Signer::Subkey(..) = self {
            write!(f, ")")?;
        }
        Ok(())
    }
}

fn check_signature(sig: &Signature, data: &[u8], keyrings: &[Keyring], now: u64) -> Verdict {
    let mut bad = None;
    for key in keyrings.iter().flat_map(|k| &k.keys) {
        let candidates = std::iter::once(Signer::Primary(key))
            .chain(key.public_subkeys.iter().map(|s| Signer::Subkey(key, s)));
        for signer in candidates {
            if !signer.issued(sig) {
                continue;
            }
            if !signer.verify(sig, data) {
                // Try the others: a key id may be shared by accident.
                bad.get_or_insert_with(|| signer.to_string());
                continue;
            }
            return judge(sig, signer, now);
        }
    }
    match bad {
        Some(key) => Verdict::Bad(key),
        None => Verdict::Unknown(describe_issuer(sig)),
    }
}

/// A signature that verified: does its key count?
fn judge(sig: &Signature, signer: Signer<'_>, now: u64) -> Verdict {
    let name = signer.to_string();
    if let Some(alg @ (HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160)) =
        sig.hash_alg()
    {
        return Verdict::Weak(name, alg.to_string());
    }
    if let (Some(created), Some(valid)) = (sig.created(), sig.signature_expiration_time()) {
        let until = u64::from(created.as_secs()) + u64::from(valid.as_secs());
        if valid.as_secs() > 0 && until <= now {
            return Verdict::SignatureExpired(name, until);
        }
    }

    let key = signer.primary();
    let primary = &key.primary_key;
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|r| r.verify_key(primary).is_ok())
    {
        return Verdict::Revoked(name);
    }
    if let Some(until) = primary_expiry(key)
        && until <= now
    {
        return Verdict::Expired(name, until);
    }

    let Signer::Subkey(_, subkey) = signer else {
        return Verdict::Good;
    };
    let mut binding: Option<&Signature> = None;
    for s in &subkey.signatures {
        if s.verify_subkey_binding(primary, &subkey.key).is_err() {
            continue;
        }
        match s.typ() {
            Some(SignatureType::SubkeyRevocation) => return Verdict::Revoked(name),
            Some(SignatureType::SubkeyBinding) if newer(s, binding) => binding = Some(s),
            _ => {}
        }
    }
    let Some(binding) = binding else {
        return Verdict::Unusable(name, "it has no valid binding signature".to_string());
    };
    if !binding.key_flags().sign() {
        return Verdict::Unusable(name, "its binding does not allow signing".to_string());
    }
    let back = binding
        .embedded_signature()
        .is_some_and(|b| b.verify_primary_key_binding(&subkey.key, primary).is_ok());
    if !back {
        return Verdict::Unusable(
            name,
            "its binding has no valid primary key binding (back) signature".to_string(),
        );
    }
    if let Some(valid) = binding.key_expiration_time()
        && valid.as_secs() > 0
    {
        let until = u64::from(subkey.key.created_at().as_secs()) + u64::from(valid.as_secs());
        if until <= now {
            return Verdict::Expired(name, until);
        }
    }
    Verdict::Good
}

/// When the primary key expires, from its newest valid self-signature; `None`: never (or no
/// self-signature verifies, so nothing says it does).
fn primary_expiry(key: &SignedPublicKey) -> Option<u64> {
    let primary = &key.primary_key;
    let own = |s: &Signature| Signer::Primary(key).issued(s);
    let mut newest: Option<&Signature> = None;
    for user in &key.details.users {
        for s in &user.signatures {
            // Third-party certifications (archive keys are cross-signed) say nothing here.
            if own(s)
                && newer(s, newest)
                && s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            {
                newest = Some(s);
            }
        }
    }
    for s in &key.details.direct_signatures {
        if own(s) && newer(s, newest) && s.verify_key(primary).is_ok() {
            newest = Some(s);
        }
    }
    let valid = newest?.key_expiration_time()?.as_secs();
    (valid > 0).then(|| u64::from(primary.created_at().as_secs()) + u64::from(valid))
}

fn newer(sig: &Signature, than: Option<&Signature>) -> bool {
    match than {
        None => true,
        Some(than) => sig.created() > than.created(),
    }
}

fn describe_issuer(sig: &Signature) -> String {
    let fps = sig.issuer_fingerprint();
    if !fps.is_empty() {
        return fps
            .iter()
            .map(|fp| format!("key {fp:X}"))
            .collect::<Vec<_>>()
            .join(" / ");
    }
    let ids = sig.issuer_key_id();
    if !ids.is_empty() {
        return ids
            .iter()
            .map(|id| format!("key id {}", id.to_string().to_uppercase()))
            .collect::<Vec<_>>()
            .join(" / ");
    }
    "a key the signature does not name".to_string()
}

// ---------------------------------------------------------------------------------------------
// Release files

/// The fields of a `Release` file that oci-build uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    pub origin: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub acquire_by_hash: bool,
    /// Index files by path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub sha256: BTreeMap<String, FileHash>,
}

/// Size and SHA256 (lower-case hex) of an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHash {
    pub size: u64,
    pub sha256: String,
}

/// Parses the text of a `Release` file (as [`verify_inrelease`] returns it): one paragraph of
/// `Field: value` lines, continuation lines starting with a space or tab. Field names are
/// case-insensitive; a field given twice is an error; fields not listed in [`Release`] are
/// ignored. The `SHA256` field must be present.
pub fn parse_release(text: &str) -> Result<Release, ReleaseError> {
    let err = |line: usize, reason: String| ReleaseError::Parse { line, reason };
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            ended = !fields.is_empty();
            continue;
        }
        if ended {
            return Err(err(
                n,
                "a second paragraph; a Release file has one".to_string(),
            ));
        }
        if line.starts_with([' ', '\t']) {
            let Some(field) = fields.last_mut() else {
                return Err(err(n, "continuation line before any field".to_string()));
            };
            field.lines.push((n, line.trim()));
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(err(n, format!("`{line}` is not `Field: value`")));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(err(n, format!("`{name}` is not a field name")));
        }
        let name = name.to_ascii_lowercase();
        if let Some(first) = fields.iter().find(|f| f.name == name) {
            return Err(err(
                n,
                format!("field `{name}` given twice (first on line {})", first.line),
            ));
        }
        let value = value.trim();
        let lines = if value.is_empty() {
            vec![]
        } else {
            vec![(n, value)]
        };
        fields.push(Field {
            name,
            line: n,
            lines,
        });
    }

    let mut release = Release::default();
    let mut have_sha256 = false;
    for Field { name, lines, .. } in fields {
        let values: Vec<&str> = lines.iter().map(|(_, v)| *v).collect();
        let single = || (!values.is_empty()).then(|| values.join(" "));
        match name.as_str() {
            "origin" => release.origin = single(),
            "suite" => release.suite = single(),
            "codename" => release.codename = single(),
            "date" => release.date = single(),
            "valid-until" => release.valid_until = single(),
            "architectures" => release.architectures = words(&values),
            "components" => release.components = words(&values),
            "acquire-by-hash" => {
                release.acquire_by_hash = single().is_some_and(|v| v.eq_ignore_ascii_case("yes"))
            }
            "sha256" => {
                have_sha256 = true;
                for &(n, entry) in &lines {
                    let (path, hash) = parse_sha256_line(entry).map_err(|reason| err(n, reason))?;
                    if let Some(old) = release.sha256.get(&path)
                        && *old != hash
                    {
                        return Err(err(n, format!("`{path}` is listed twice, differently")));
                    }
                    release.sha256.insert(path, hash);
                }
            }
            _ => {}
        }
    }
    if !have_sha256 {
        return Err(ReleaseError::NoChecksums);
    }
    Ok(release)
}

/// One field of a Release paragraph.
struct Field<'a> {
    /// Lower case.
    name: String,
    line: usize,
    /// The value's non-empty lines, trimmed, with their line numbers.
    lines: Vec<(usize, &'a str)>,
}

fn words(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(str::to_string)
        .collect()
}

/// ` <sha256 hex> <size> <path>`
fn parse_sha256_line(entry: &str) -> Result<(String, FileHash), String> {
    let parts: Vec<&str> = entry.split_whitespace().collect();
    let [hash, size, path] = parts[..] else {
        return Err(format!("`{entry}` is not `<sha256> <size> <path>`"));
    };
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{hash}` is not a SHA256 in hex"));
    }
    let size = size
        .parse::<u64>()
        .map_err(|_| format!("`{size}` is not a size in bytes"))?;
    Ok((
        path.to_string(),
        FileHash {
            size,
            sha256: hash.to_ascii_lowercase(),
        },
    ))
}

impl Release {
    /// Checks an index file's content against the size and SHA256 the Release lists for
    /// `path` (relative to the suite, e.g. `main/binary-amd64/Packages.xz`).
    pub fn check_file(&self, path: &str, bytes: &[u8]) -> Result<(), ReleaseError> {
        let Some(expected) = self.sha256.get(path) else {
            return Err(ReleaseError::NotListed {
                path: path.to_string(),
            });
        };
        let found = hex::encode(Sha256::digest(bytes));
        let found_size = bytes.len() as u64;
        if found_size != expected.size || found != expected.sha256 {
            return Err(ReleaseError::Mismatch {
                path: path.to_string(),
                expected: expected.sha256.clone(),
                expected_size: expected.size,
                found,
                found_size,
            });
        }
        Ok(())
    }

    /// Fails when the Release has a `Valid-Until` that lies before `now_unix` (seconds since
    /// 1970), or one that cannot be read. A Release without `Valid-Until` never expires.
    pub fn check_valid_until(&self, now_unix: u64) -> Result<(), ReleaseError> {
        let Some(value) = &self.valid_until else {
            return Ok(());
        };
        let until = parse_date(value).ok_or_else(|| ReleaseError::BadDate {
            field: "Valid-Until",
            value: value.clone(),
        })?;
        if now_unix > until {
            let suite = self.suite.as_deref().or(self.codename.as_deref());
            return Err(ReleaseError::Expired {
                suite: suite.unwrap_or("(unnamed)").to_string(),
                valid_until: value.clone(),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses a Release date, `[Sat, ]06 Dec 2025 08:51:23 UTC` (RFC 2822 as Debian writes it; the
/// zone may be `UTC`, `GMT`, `UT`, `Z` or `±hhmm`; seconds may be left out) into seconds since
/// 1970. `None` when it is not such a date or lies before 1970.
pub fn parse_date(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = match value.split_once(',') {
        Some((weekday, rest)) if weekday.trim().chars().all(|c| c.is_ascii_alphabetic()) => rest,
        Some(_) => return None,
        None => value,
    };
    let mut parts = value.split_whitespace();
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() {
        return None;
    }
    let day: u32 = number(day, 1, 2)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let year: i64 = number(year, 4, 4)?.into();
    let mut hms = time.split(':');
    let hour: u32 = number(hms.next()?, 2, 2)?;
    let minute: u32 = number(hms.next()?, 2, 2)?;
    let second: u32 = match hms.next() {
        Some(s) => number(s, 2, 2)?,
        None => 0,
    };
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let offset: i64 = match zone {
        "UTC" | "GMT" | "UT" | "Z" => 0,
        _ => {
            let (sign, digits) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            let hhmm: u32 = number(digits, 4, 4)?;
            let (h, m) = (hhmm / 100, hhmm % 100);
            if h > 23 || m > 59 {
                return None;
            }
            sign * i64::from(h * 3600 + m * 60)
        }
    };
    let secs = time::days_from_civil(year, month, day) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    u64::try_from(secs).ok()
}

/// Formats seconds since 1970 the way Release files write dates.
fn format_date(unix: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = time::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An ASCII number of `min..=max` digits.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    //! Keys and signatures are made here with rpgp itself, from fixed seeds (Ed25519 signing
    //! needs no randomness), so the tests need neither `gpg` nor a random number generator.

    use super::*;
    use pgp::composed::{ArmorOptions, SignedKeyDetails};
    use pgp::crypto::ed25519;
    use pgp::crypto::public_key::PublicKeyAlgorithm;
    use pgp::packet::{
        self, KeyFlags, PubKeyInner, SignatureConfig, Subpacket, SubpacketData, UserId,
    };
    use pgp::ser::Serialize as _;
    use pgp::types::{
        Duration, KeyVersion, Password, PlainSecretParams, SecretParams, SignedUser, SigningKey,
        Timestamp,
    };

    const CREATED: u32 = 1_700_000_000;
    const NOW: u64 = 1_750_000_000;

    #[derive(Default)]
    struct Opts {
        expires_after: Option<u32>,
        revoked: bool,
        signing_subkey: bool,
        back_signature: bool,
    }

    struct TestKey {
        secret: packet::SecretKey,
        public: SignedPublicKey,
        subkey: Option<packet::SecretSubkey>,
    }

    impl TestKey {
        fn fingerprint(&self) -> String {
            format!("{:X}", self.public.fingerprint())
        }

        fn armored(&self) -> String {
            self.public
                .to_armored_string(ArmorOptions::default())
                .unwrap()
        }
    }

    fn key_material(seed: &str) -> (PubKeyInner, SecretParams) {
        let bytes: [u8; 32] = Sha256::digest(seed.as_bytes())
            .as_slice()
            .try_into()
            .unwrap();
        let secret = ed25519::SecretKey::try_from_bytes(bytes, ed25519::Mode::Ed25519).unwrap();
        let public = PublicParams::Ed25519((&secret).into());
        let inner = PubKeyInner::new(
            KeyVersion::V4,
            PublicKeyAlgorithm::Ed25519,
            Timestamp::from_secs(CREATED),
            None,
            public,
        )
        .unwrap();
        (
            inner,
            SecretParams::Plain(PlainSecretParams::Ed25519(secret)),
        )
    }

    /// A v4 signature config issued by `issuer`, with creation time and issuer subpackets.
    fn config(
        typ: SignatureType,
        issuer: &impl KeyDetails,
        extra: Vec<SubpacketData>,
    ) -> SignatureConfig {
        let mut config =
            SignatureConfig::v4(typ, PublicKeyAlgorithm::Ed25519, HashAlgorithm::Sha256);
        config.hashed_subpackets = [
            SubpacketData::SignatureCreationTime(Timestamp::from_secs(CREATED)),
            SubpacketData::IssuerFingerprint(issuer.fingerprint()),
        ]
        .into_iter()
        .chain(extra)
        .map(|d| Subpacket::regular(d).unwrap())
        .collect();
        config.unhashed_subpackets =
            vec![Subpacket::regular(SubpacketData::IssuerKeyId(issuer.legacy_key_id())).unwrap()];
        config
    }

    fn make_key(seed: &str, opts: Opts) -> TestKey {
        let pw = Password::empty();
        let (inner, params) = key_material(seed);
        let public = packet::PublicKey::from_inner(inner).unwrap();
        let secret = packet::SecretKey::new(public.clone(), params).unwrap();

        let mut flags = KeyFlags::default();
        flags.set_certify(true);
        flags.set_sign(!opts.signing_subkey);
        let mut extra = vec![
            SubpacketData::KeyFlags(flags),
            SubpacketData::IsPrimary(true),
        ];
        if let Some(secs) = opts.expires_after {
            extra.push(SubpacketData::KeyExpirationTime(Duration::from_secs(secs)));
        }
        let uid = UserId::from_str(
            Default::default(),
            format!("{seed} <{seed}@example.invalid>"),
        )
        .unwrap();
        let certification = config(SignatureType::CertPositive, &secret, extra)
            .sign_certification(&secret, &public, &pw, Tag::UserId, &uid)
            .unwrap();
        let revocations = if opts.revoked {
            vec![
                config(SignatureType::KeyRevocation, &secret, vec![])
                    .sign_key(&secret, &pw, &public)
                    .unwrap(),
            ]
        } else {
            vec![]
        };

        let mut subkeys = vec![];
        let mut subkey = None;
        if opts.signing_subkey {
            let (inner, params) = key_material(&format!("{seed}/subkey"));
            let sub_public = packet::PublicSubkey::from_inner(inner).unwrap();
            let sub_secret = packet::SecretSubkey::new(sub_public.clone(), params).unwrap();
            let mut flags = KeyFlags::default();
            flags.set_sign(true);
            let mut extra = vec![SubpacketData::KeyFlags(flags)];
            if opts.back_signature {
                let back = config(SignatureType::KeyBinding, &sub_secret, vec![])
                    .sign_primary_key_binding(&sub_secret, &sub_public, &pw, &public)
                    .unwrap();
                extra.push(SubpacketData::EmbeddedSignature(Box::new(back)));
            }
            let binding = config(SignatureType::SubkeyBinding, &secret, extra)
                .sign_subkey_binding(&secret, &public, &pw, &sub_public)
                .unwrap();
            subkeys.push(SignedPublicSubKey::new(sub_public, vec![binding]));
            subkey = Some(sub_secret);
        }

        let details = SignedKeyDetails::new(
            revocations,
            vec![],
            vec![SignedUser::new(uid, vec![certification])],
            vec![],
        );
        TestKey {
            secret,
            public: SignedPublicKey::new(public, details, subkeys),
            subkey,
        }
    }

    /// A signature of type text over `text` (already CRLF-normalized by `new_many`).
    fn text_signature(key: &impl SigningKey, text: &str) -> Signature {
        config(SignatureType::Text, key, vec![])
            .sign(key, &Password::empty(), text.as_bytes())
            .unwrap()
    }

    fn clearsign(text: &str, sign: impl FnOnce(&str) -> Vec<Signature>) -> String {
        CleartextSignedMessage::new_many(text, |t| Ok(sign(t)))
            .unwrap()
            .to_armored_string(ArmorOptions::default())
            .unwrap()
    }

    fn signed_by(key: &TestKey, text: &str) -> String {
        clearsign(text, |t| vec![text_signature(&key.secret, t)])
    }

    fn keyring(keys: &[&TestKey]) -> Keyring {
        let text: String = keys.iter().map(|k| k.armored()).collect();
        Keyring::from_armored(&text).unwrap()
    }

    const RELEASE: &str = "\
Origin: Example
Label: Example
Suite: stable
Codename: example
Date: Sat, 06 Dec 2025 08:51:23 UTC
Valid-Until: Sat, 13 Dec 2025 08:51:23 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64
Components: main contrib
Description: made up for the tests
MD5Sum:
 d41d8cd98f00b204e9800998ecf8427e 0 main/binary-amd64/Packages
SHA256:
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages
 2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824 5 main/binary-amd64/Packages.xz
";

    /// Lines that the cleartext framework must dash-escape.
    const DASHED: &str = "Suite: stable\n--- a line that must be dash-escaped\n- and another\n-----BEGIN PGP SIGNATURE-----\nlast line\n";

    #[test]
    fn valid_signature_verifies_and_gives_the_text() {
        let key = make_key("alice", Opts::default());
        let ring = [keyring(&[&key])];
        let signed = signed_by(&key, RELEASE);
        let text = verify_inrelease_at(signed.as_bytes(), &ring, "test InRelease", NOW).unwrap();
        assert_eq!(text, RELEASE);
        assert_eq!(
            parse_release(&text).unwrap().suite.as_deref(),
            Some("stable")
        );
        // With the real clock too (the key never expires).
        verify_inrelease(signed.as_bytes(), &ring, "test InRelease").unwrap();

        // Dash-escaping is undone, CRLF line ends come back as LF.
        let signed = signed_by(&key, DASHED);
        assert!(
            signed.contains("\n- --- a line that must be dash-escaped\n"),
            "{signed}"
        );
        assert!(
            signed.contains("\n- -----BEGIN PGP SIGNATURE-----\n"),
            "{signed}"
        );
        let text = verify_inrelease_at(signed.as_bytes(), &ring, "x", NOW).unwrap();
        assert_eq!(text, DASHED);
        let crlf = signed.replace('\n', "\r\n");
        let text = verify_inrelease_at(crlf.as_bytes(), &ring, "x", NOW).unwrap();
        assert_eq!(text, DASHED);
    }

    #[test]
    fn modified_text_is_a_bad_signature() {
        let key = make_key("alice", Opts::default());
        let ring = [keyring(&[&key])];
        let signed = signed_by(&key, RELEASE).replace("Suite: stable", "Suite: stablf");
        let err =
            verify_inrelease_at(signed.as_bytes(), &ring, "mirror/InRelease", NOW).unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("`mirror/InRelease` has a BAD signature"),
            "{message}"
        );
        assert!(message.contains(&key.fingerprint()), "{message}");

        // Removing a dash escape changes the text as well.
        let signed = signed_by(&key, DASHED).replace("- - and another", "- and another");
        assert!(matches!(
            verify_inrelease_at(signed.as_bytes(), &ring, "x", NOW),
            Err(ReleaseError::BadSignature { .. })
        ));
    }

    #[test]
    fn missing_key_is_named() {
        let alice = make_key("alice", Opts::default());
        let bob = make_key("bob", Opts::default());
        let signed = signed_by(&alice, RELEASE);
        let err = verify_inrelease_at(
            signed.as_bytes(),
            &[keyring(&[&bob])],
            "mirror/InRelease",
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::UnknownKey { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&alice.fingerprint()), "{message}");
        assert!(message.contains("`mirror/InRelease`"), "{message}");
        assert!(message.contains("`inline Signed-By key`"), "{message}");
        assert!(!message.contains(&bob.fingerprint()), "{message}");

        let err = verify_inrelease_at(signed.as_bytes(), &[], "x", NOW).unwrap_err();
        assert!(err.to_string().contains("no keyring given"), "{err}");
    }

    #[test]
    fn one_signature_by_a_known_key_is_enough() {
        let old = make_key("archive-old", Opts::default());
        let new = make_key("archive-new", Opts::default());
        let signed = clearsign(RELEASE, |t| {
            vec![
                text_signature(&old.secret, t),
                text_signature(&new.secret, t),
            ]
        });
        let other = make_key("other", Opts::default());
        for keys in [
            vec![keyring(&[&new])],
            vec![keyring(&[&old])],
            vec![keyring(&[&other]), keyring(&[&new])],
        ] {
            assert_eq!(
                verify_inrelease_at(signed.as_bytes(), &keys, "x", NOW).unwrap(),
                RELEASE
            );
        }
        let err =
            verify_inrelease_at(signed.as_bytes(), &[keyring(&[&other])], "x", NOW).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&old.fingerprint()) && message.contains(&new.fingerprint()));
    }

    #[test]
    fn a_bad_signature_fails_even_beside_a_good_one() {
        // apt: "At least one invalid signature was encountered."
        let good = make_key("good", Opts::default());
        let signed = clearsign(RELEASE, |t| {
            vec![
                text_signature(&good.secret, t),
                text_signature(&good.secret, &format!("{t}tampered")),
            ]
        });
        assert!(matches!(
            verify_inrelease_at(signed.as_bytes(), &[keyring(&[&good])], "x", NOW),
            Err(ReleaseError::BadSignature { .. })
        ));
    }

    #[test]
    fn signing_subkeys_are_used() {
        let key = make_key(
            "subkeyed",
            Opts {
                signing_subkey: true,
                back_signature: true,
                ..Opts::default()
            },
        );
        let subkey = key.subkey.as_ref().unwrap();
        let signed = clearsign(RELEASE, |t| vec![text_signature(subkey, t)]);
        // Through a binary keyring, as the archive keyrings are.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.gpg");
        std::fs::write(&path, key.public.to_bytes().unwrap()).unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(
            verify_inrelease_at(signed.as_bytes(), &[ring], "x", NOW).unwrap(),
            RELEASE
        );

        // Without the subkey's back signature the subkey may not sign for the primary key.
        let unbound = make_key(
            "subkeyed",
            Opts {
                signing_subkey: true,
                back_signature: false,
                ..Opts::default()
            },
        );
        let err =
            verify_inrelease_at(signed.as_bytes(), &[keyring(&[&unbound])], "x", NOW).unwrap_err();
        assert!(
            matches!(err, ReleaseError::UnusableSubkey { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("back"), "{err}");
    }

    #[test]
    fn expired_and_revoked_keys_do_not_count() {
        let expiring = make_key(
            "expiring",
            Opts {
                expires_after: Some(1000),
                ..Opts::default()
            },
        );
        let signed = signed_by(&expiring, RELEASE);
        let ring = keyring(&[&expiring]);
        let before = u64::from(CREATED) + 500;
        assert!(
            verify_inrelease_at(signed.as_bytes(), std::slice::from_ref(&ring), "x", before)
                .is_ok()
        );
        let err = verify_inrelease_at(signed.as_bytes(), &[ring], "x", NOW).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyExpired { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("expired on Tue, 14 Nov 2023 22:30:00 UTC"),
            "{err}"
        );

        let revoked = make_key(
            "revoked",
            Opts {
                revoked: true,
                ..Opts::default()
            },
        );
        let signed = signed_by(&revoked, RELEASE);
        let err =
            verify_inrelease_at(signed.as_bytes(), &[keyring(&[&revoked])], "x", NOW).unwrap_err();
        assert!(matches!(err, ReleaseError::KeyRevoked { .. }), "{err:?}");

        // A good signature by another key still carries the file.
        let good = make_key("good", Opts::default());
        let signed = clearsign(RELEASE, |t| {
            vec![
                text_signature(&revoked.secret, t),
                text_signature(&good.secret, t),
            ]
        });
        let rings = [keyring(&[&revoked, &good])];
        assert!(verify_inrelease_at(signed.as_bytes(), &rings, "x", NOW).is_ok());
    }

    #[test]
    fn not_cleartext_signed_is_refused() {
        let ring = keyring(&[&make_key("alice", Opts::default())]);
        for data in [
            &b"<html><body>Proxy login</body></html>"[..],
            b"Origin: Debian\nSuite: stable\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSuite: x\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\n\nnot base64!\n-----END PGP SIGNATURE-----\n",
            &[0xff, 0x00, 0x13][..],
        ] {
            let err = verify_inrelease_at(data, std::slice::from_ref(&ring), "mirror/InRelease", NOW)
                .unwrap_err();
            assert!(matches!(err, ReleaseError::NotCleartextSigned { .. }), "{err:?}");
            assert!(err.to_string().starts_with("`mirror/InRelease` is not"), "{err}");
        }
    }

    #[test]
    fn keyrings_load_binary_and_armored() {
        let alice = make_key("alice", Opts::default());
        let bob = make_key("bob", Opts::default());
        let dir = tempfile::tempdir().unwrap();

        // Binary: alice, a key with an algorithm nobody knows (skipped), bob.
        let mut binary = alice.public.to_bytes().unwrap();
        let mut unknown_body = vec![4];
        unknown_body.extend_from_slice(&CREATED.to_be_bytes());
        unknown_body.push(99); // public key algorithm 99: not assigned
        unknown_body.extend_from_slice(&[0, 8, 0xaa]);
        binary.push(0xc0 | 6); // new-format Public-Key packet
        binary.push(unknown_body.len() as u8);
        binary.extend_from_slice(&unknown_body);
        binary.extend_from_slice(&bob.public.to_bytes().unwrap());
        let path = dir.path().join("archive-keyring.gpg");
        std::fs::write(&path, &binary).unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(
            ring.fingerprints(),
            [alice.fingerprint(), bob.fingerprint()]
        );
        assert_eq!(ring.name(), path.display().to_string());

        // Armored: two blocks in one file, with text around them.
        let path = dir.path().join("archive-keyring.asc");
        std::fs::write(
            &path,
            format!("alice:\n{}\nbob:\n{}", alice.armored(), bob.armored()),
        )
        .unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(
            ring.fingerprints(),
            [alice.fingerprint(), bob.fingerprint()]
        );
        // Both keys in one block.
        let both = SignedPublicKeysBlock(&[&alice.public, &bob.public]);
        assert_eq!(Keyring::from_armored(&both.armored()).unwrap().len(), 2);

        // Nothing usable.
        let path = dir.path().join("empty.gpg");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(ReleaseError::NoKeys { .. })
        ));
        std::fs::write(&path, b"just some text\n").unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(matches!(err, ReleaseError::NoKeys { .. }), "{err:?}");
        assert!(err.to_string().contains("empty.gpg"), "{err}");
        let err = Keyring::load(&dir.path().join("absent.gpg")).unwrap_err();
        assert!(matches!(err, ReleaseError::ReadKeyring { .. }), "{err:?}");
        assert!(
            Keyring::from_armored(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
            )
            .is_err()
        );
    }

    /// Several transferable public keys in one armor block.
    struct SignedPublicKeysBlock<'a>(&'a [&'a SignedPublicKey]);

    impl SignedPublicKeysBlock<'_> {
        fn armored(&self) -> String {
            let mut out = Vec::new();
            pgp::armor::write(self, pgp::armor::BlockType::PublicKey, &mut out, None, true)
                .unwrap();
            String::from_utf8(out).unwrap()
        }
    }

    impl pgp::ser::Serialize for SignedPublicKeysBlock<'_> {
        fn to_writer<W: std::io::Write>(&self, writer: &mut W) -> pgp::errors::Result<()> {
            for key in self.0 {
                key.to_writer(writer)?;
            }
            Ok(())
        }

        fn write_len(&self) -> usize {
            self.0.iter().map(|k| k.write_len()).sum()
        }
    }

    #[test]
    fn release_fields_are_parsed() {
        let release = parse_release(RELEASE).unwrap();
        assert_eq!(release.origin.as_deref(), Some("Example"));
        assert_eq!(release.suite.as_deref(), Some("stable"));
        assert_eq!(release.codename.as_deref(), Some("example"));
        assert_eq!(
            release.date.as_deref(),
            Some("Sat, 06 Dec 2025 08:51:23 UTC")
        );
        assert_eq!(
            release.valid_until.as_deref(),
            Some("Sat, 13 Dec 2025 08:51:23 UTC")
        );
        assert_eq!(release.architectures, ["amd64", "arm64"]);
        assert_eq!(release.components, ["main", "contrib"]);
        assert!(release.acquire_by_hash);
        assert_eq!(release.sha256.len(), 2);
        assert_eq!(
            release.sha256["main/binary-amd64/Packages.xz"],
            FileHash {
                size: 5,
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()
            }
        );

        let minimal = parse_release("suite: x\nsha256:\n").unwrap();
        assert!(!minimal.acquire_by_hash && minimal.sha256.is_empty());
    }

    #[test]
    fn bad_release_text_is_refused_with_its_line() {
        let cases = [
            ("Suite: a\nSuite: b\nSHA256:\n", 2, "twice"),
            (" orphan\nSHA256:\n", 1, "continuation"),
            ("Suite a\nSHA256:\n", 1, "Field: value"),
            ("SHA256:\n e3b0 0 main/x\n", 2, "not a SHA256"),
            (
                "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 x main/x\n",
                2,
                "size",
            ),
            (
                "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0\n",
                2,
                "<path>",
            ),
            ("Suite: a\n\nSHA256:\n", 3, "second paragraph"),
        ];
        for (text, line, needle) in cases {
            let err = parse_release(text).unwrap_err();
            assert!(
                matches!(err, ReleaseError::Parse { line: l, .. } if l == line),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
        assert!(matches!(
            parse_release("Suite: a\n"),
            Err(ReleaseError::NoChecksums)
        ));
    }

    #[test]
    fn files_are_checked_against_the_release() {
        let release = parse_release(RELEASE).unwrap();
        release
            .check_file("main/binary-amd64/Packages", b"")
            .unwrap();
        release
            .check_file("main/binary-amd64/Packages.xz", b"hello")
            .unwrap();

        let err = release
            .check_file("main/binary-amd64/Packages.xz", b"hellO")
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`main/binary-amd64/Packages.xz`"),
            "{message}"
        );
        assert!(
            message.contains("expected sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 (5 bytes)"),
            "{message}"
        );
        assert!(
            message.contains(&hex::encode(Sha256::digest(b"hellO"))),
            "{message}"
        );

        let err = release
            .check_file("main/binary-amd64/Packages.xz", b"hello!")
            .unwrap_err();
        assert!(err.to_string().contains("(6 bytes)"), "{err}");

        let err = release
            .check_file("main/binary-arm64/Packages.xz", b"hello")
            .unwrap_err();
        assert!(matches!(err, ReleaseError::NotListed { .. }), "{err:?}");
        assert!(
            err.to_string().contains("`main/binary-arm64/Packages.xz`"),
            "{err}"
        );
    }

    #[test]
    fn valid_until_is_enforced() {
        let release = parse_release(RELEASE).unwrap();
        let until = parse_date("Sat, 13 Dec 2025 08:51:23 UTC").unwrap();
        release.check_valid_until(until - 1).unwrap();
        release.check_valid_until(until).unwrap();
        let err = release.check_valid_until(until + 1).unwrap_err();
        assert!(matches!(err, ReleaseError::Expired { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("`stable` expired on Sat, 13 Dec 2025"),
            "{err}"
        );

        let mut forever = release.clone();
        forever.valid_until = None;
        forever.check_valid_until(u64::MAX).unwrap();

        let mut garbled = release;
        garbled.valid_until = Some("next Tuesday".into());
        assert!(matches!(
            garbled.check_valid_until(0),
            Err(ReleaseError::BadDate { .. })
        ));
    }

    #[test]
    fn dates_are_parsed() {
        // Values from `date -ud '…' +%s`.
        assert_eq!(
            parse_date("Sat, 06 Dec 2025 08:51:23 UTC"),
            Some(1_765_011_083)
        );
        assert_eq!(parse_date("6 Dec 2025 08:51:23 GMT"), Some(1_765_011_083));
        assert_eq!(
            parse_date("Sat, 06 Dec 2025 09:51:23 +0100"),
            Some(1_765_011_083)
        );
        assert_eq!(
            parse_date("Sat, 06 dec 2025 07:51:23 -0100"),
            Some(1_765_011_083)
        );
        assert_eq!(parse_date("Wed, 01 Mar 2000 12:00 UTC"), Some(951_912_000));
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Thu, 29 Feb 2024 00:00:00 UTC"),
            Some(1_709_164_800)
        );
        for bad in [
            "",
            "Sat, 06 Dec 2025",
            "Sat, 06 Dec 2025 08:51:23",
            "Sat, 06 Dez 2025 08:51:23 UTC",
            "Thu, 29 Feb 2023 00:00:00 UTC",
            "Sat, 32 Dec 2025 08:51:23 UTC",
            "Sat, 06 Dec 2025 24:00:00 UTC",
            "Sat, 06 Dec 2025 08:51:23 CET",
            "Sat, 06 Dec 25 08:51:23 UTC",
            "Wed, 31 Dec 1969 23:59:59 UTC",
            "2025-12-06T08:51:23Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        for unix in [0, 951_912_000, 1_709_164_800, 1_765_011_083, 4_102_444_800] {
            assert_eq!(
                parse_date(&format_date(unix)),
                Some(unix),
                "{}",
                format_date(unix)
            );
        }
        assert_eq!(format_date(1_765_011_083), "Sat, 06 Dec 2025 08:51:23 UTC");
    }

    /// The host's own apt state, where there is one: its newest `InRelease` files, verified
    /// against the Debian archive keyring the way apt verified them.
    #[test]
    fn host_inrelease_verifies_against_the_debian_archive_keyring() {
        let keyring_path = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let lists = Path::new("/var/lib/apt/lists");
        let mut inreleases: Vec<PathBuf> = std::fs::read_dir(lists)
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with("_InRelease"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        inreleases.sort();

        if !keyring_path.exists() {
            eprintln!(
                "host_ check skipped: {} is absent (Debian package debian-archive-keyring)",
                keyring_path.display()
            );
            let err = Keyring::load(keyring_path).unwrap_err();
            assert!(matches!(err, ReleaseError::ReadKeyring { .. }), "{err:?}");
            assert!(
                err.to_string().contains("debian-archive-keyring.gpg"),
                "{err}"
            );
            return;
        }
        let started = std::time::Instant::now();
        let keyring = Keyring::load(keyring_path).unwrap();
        eprintln!(
            "loaded {} keys from {} in {:?}",
            keyring.len(),
            keyring_path.display(),
            started.elapsed()
        );
        assert!(!keyring.is_empty());

        // Only files from Debian's own archive can be checked with Debian's keyring.
        let debian: Vec<(PathBuf, Vec<u8>)> = inreleases
            .iter()
            .filter_map(|p| std::fs::read(p).ok().map(|data| (p.clone(), data)))
            .filter(|(_, data)| {
                String::from_utf8_lossy(data)
                    .lines()
                    .any(|l| l.trim() == "Origin: Debian")
            })
            .collect();
        let Some((path, data)) = debian.first() else {
            eprintln!(
                "host_ check: no InRelease with `Origin: Debian` in {} ({} InRelease files); \
                 only the keyring was checked",
                lists.display(),
                inreleases.len()
            );
            // What can be checked without one: every key of the keyring is usable.
            assert_eq!(keyring.fingerprints().len(), keyring.len());
            assert!(keyring.fingerprints().iter().all(|f| f.len() == 40));
            return;
        };
        let started = std::time::Instant::now();
        let text = verify_inrelease(
            data,
            std::slice::from_ref(&keyring),
            &path.display().to_string(),
        )
        .unwrap();
        eprintln!("verified {} in {:?}", path.display(), started.elapsed());
        let release = parse_release(&text).unwrap();
        assert!(
            !release.sha256.is_empty(),
            "{} lists no SHA256 files",
            path.display()
        );
        assert_eq!(release.origin.as_deref(), Some("Debian"));
        assert!(release.date.as_deref().and_then(parse_date).is_some());
        if let Some(until) = &release.valid_until {
            assert!(parse_date(until).is_some(), "Valid-Until {until:?}");
        }
        eprintln!(
            "{}: suite {:?}, {} SHA256 entries",
            path.display(),
            release.suite,
            release.sha256.len()
        );

        // One changed byte in the signed text is caught.
        let mut tampered = data.clone();
        let at = tampered
            .windows(6)
            .position(|w| w == b"Suite:")
            .expect("an InRelease has a Suite field");
        tampered[at + 7] ^= 0x01;
        let err = verify_inrelease(&tampered, &[keyring], "tampered").unwrap_err();
        assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err:?}");
    }
}
