//! OpenPGP for Debian archives: keyrings and the cleartext signature of `InRelease` files.
//!
//! Inputs: the keyrings apt reads (binary or ASCII-armored files such as
//! `/usr/share/keyrings/debian-archive-keyring.gpg`, or a deb822 source's inline `Signed-By`
//! key), loaded as [`Keyring`]s, and the bytes of an `InRelease` file. Output:
//! [`verify_inrelease`] checks the file's signatures in-process with rpgp (the `pgp` crate) and
//! returns the signed text, the `Release` file that [`super::release::parse_release`] reads.
//!
//! The rules follow apt's: the file passes when at least one signature verifies with a key from
//! the keyrings that is neither expired nor revoked; signatures by keys we do not have are
//! ignored; a signature that fails to verify with a key we have fails the whole file (apt: "At
//! least one invalid signature was encountered"); MD5, SHA-1 and RIPEMD-160 signatures do not
//! count. Keys in a keyring are trusted because they are there: self-signatures are read only to
//! find a key's expiry, revocations and which subkeys may sign.
//!
//! Specs: the cleartext signature framework of RFC 9580 §7 (formerly RFC 4880 §7), and the
//! `InRelease` file of Debian's repository format, <https://wiki.debian.org/DebianRepository/Format>.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::armor::DearmorOptions;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicParams, Tag};

use super::release::format_date;

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
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
    #[error("`{file}` is not an OpenPGP cleartext-signed message")]
    Dearmor {
        file: String,
        #[source]
        source: pgp::errors::Error,
    },
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
}

// ---------------------------------------------------------------------------------------------
// Keyrings

/// OpenPGP public keys that an archive's `InRelease` may be signed with.
#[derive(Clone, Debug)]
pub(crate) struct Keyring {
    name: String,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a keyring file: binary (concatenated transferable public keys, as in
    /// `/usr/share/keyrings/debian-archive-keyring.gpg`) or ASCII-armored (`.asc`, one or more
    /// `PUBLIC KEY BLOCK`s). The content decides, not the file name.
    pub(crate) fn load(path: &Path) -> Result<Keyring, SignatureError> {
        let data = std::fs::read(path).map_err(|source| SignatureError::ReadKeyring {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        let start = data.iter().position(|b| !b.is_ascii_whitespace());
        match start {
            None => Err(SignatureError::NoKeys {
                keyring: name,
                reason: "the file is empty".to_string(),
            }),
            Some(i) if data[i] & 0x80 != 0 => Keyring::from_binary(name, &data[i..]),
            Some(_) => match std::str::from_utf8(&data) {
                Ok(text) => Keyring::from_armored_named(name, text),
                Err(_) => Err(SignatureError::NoKeys {
                    keyring: name,
                    reason: "it is neither a binary OpenPGP keyring nor ASCII-armored text"
                        .to_string(),
                }),
            },
        }
    }

    /// Reads ASCII-armored keys given inline, as in a deb822 source's `Signed-By` field.
    pub(crate) fn from_armored(text: &str) -> Result<Keyring, SignatureError> {
        Keyring::from_armored_named("inline Signed-By key".to_string(), text)
    }

    /// The path the keyring came from, or `inline Signed-By key`.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// How many keys were loaded.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The primary key fingerprints, upper-case hex, in keyring order.
    #[cfg(test)]
    pub(crate) fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.fingerprint()))
            .collect()
    }

    fn from_binary(name: String, data: &[u8]) -> Result<Keyring, SignatureError> {
        let mut loader = Loader::new(name);
        match SignedPublicKey::from_bytes_many(data) {
            Ok(keys) => loader.add_all(keys),
            Err(e) => loader.skip(e.to_string()),
        }
        loader.finish()
    }

    fn from_armored_named(name: String, text: &str) -> Result<Keyring, SignatureError> {
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

    fn finish(self) -> Result<Keyring, SignatureError> {
        if self.keys.is_empty() {
            let reason = if self.reasons.is_empty() {
                "it contains no public key".to_string()
            } else {
                self.reasons.join("; ")
            };
            return Err(SignatureError::NoKeys {
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
pub(crate) fn verify_inrelease(
    data: &[u8],
    keyrings: &[Keyring],
    file: &str,
) -> Result<String, SignatureError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    verify_inrelease_at(data, keyrings, file, now)
}

/// [`verify_inrelease`] with key expiry judged at `now_unix` (seconds since 1970).
pub(crate) fn verify_inrelease_at(
    data: &[u8],
    keyrings: &[Keyring],
    file: &str,
    now_unix: u64,
) -> Result<String, SignatureError> {
    const BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
    let not_signed = |reason: String| SignatureError::NotCleartextSigned {
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
        .map_err(|source| SignatureError::Dearmor {
        file: file.to_string(),
        source,
    })?;
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
        return Err(SignatureError::BadSignature {
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
                return Err(SignatureError::KeyExpired {
                    file,
                    key,
                    expired: format_date(when),
                });
            }
            Verdict::SignatureExpired(key, when) => {
                return Err(SignatureError::SignatureExpired {
                    file,
                    key,
                    expired: format_date(when),
                });
            }
            Verdict::Revoked(key) => return Err(SignatureError::KeyRevoked { file, key }),
            Verdict::Weak(key, digest) => {
                return Err(SignatureError::WeakDigest { file, key, digest });
            }
            Verdict::Unusable(key, reason) => {
                return Err(SignatureError::UnusableSubkey { file, key, reason });
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
    Err(SignatureError::UnknownKey {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::debian::release::tests::RELEASE;
    use crate::source::debian::release::{parse_date, parse_release};
    use crate::source::debian::test_keys::*;
    use pgp::ser::Serialize as _;

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
        assert!(
            matches!(err, SignatureError::BadSignature { .. }),
            "{err:?}"
        );
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
            Err(SignatureError::BadSignature { .. })
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
        assert!(matches!(err, SignatureError::UnknownKey { .. }), "{err:?}");
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
            Err(SignatureError::BadSignature { .. })
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
            matches!(err, SignatureError::UnusableSubkey { .. }),
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
        assert!(matches!(err, SignatureError::KeyExpired { .. }), "{err:?}");
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
        assert!(matches!(err, SignatureError::KeyRevoked { .. }), "{err:?}");

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
            assert!(
                matches!(
                    err,
                    SignatureError::NotCleartextSigned { .. } | SignatureError::Dearmor { .. }
                ),
                "{err:?}"
            );
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
            Err(SignatureError::NoKeys { .. })
        ));
        std::fs::write(&path, b"just some text\n").unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(matches!(err, SignatureError::NoKeys { .. }), "{err:?}");
        assert!(err.to_string().contains("empty.gpg"), "{err}");
        let err = Keyring::load(&dir.path().join("absent.gpg")).unwrap_err();
        assert!(matches!(err, SignatureError::ReadKeyring { .. }), "{err:?}");
        assert!(
            Keyring::from_armored(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
            )
            .is_err()
        );
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
            assert!(matches!(err, SignatureError::ReadKeyring { .. }), "{err:?}");
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
        assert!(
            matches!(err, SignatureError::BadSignature { .. }),
            "{err:?}"
        );
    }
}
