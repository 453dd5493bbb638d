//! OpenPGP keys and cleartext signatures for the tests of [`super::signature`].
//!
//! They are made here with rpgp itself, from fixed seeds (Ed25519 signing needs no
//! randomness), so the tests need neither `gpg` nor a random number generator: the same seed
//! gives the same key, fingerprint and signature bytes on every run.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, SignedKeyDetails, SignedPublicKey, SignedPublicSubKey,
};
use pgp::crypto::ed25519;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{
    self, KeyFlags, PubKeyInner, Signature, SignatureConfig, SignatureType, Subpacket,
    SubpacketData, UserId,
};
use pgp::types::{
    Duration, KeyDetails, KeyVersion, Password, PlainSecretParams, PublicParams, SecretParams,
    SignedUser, SigningKey, Tag, Timestamp,
};
use sha2::{Digest as _, Sha256};

use super::signature::Keyring;

pub(crate) const CREATED: u32 = 1_700_000_000;
pub(crate) const NOW: u64 = 1_750_000_000;

#[derive(Default)]
pub(crate) struct Opts {
    pub(crate) expires_after: Option<u32>,
    pub(crate) revoked: bool,
    pub(crate) signing_subkey: bool,
    pub(crate) back_signature: bool,
}

pub(crate) struct TestKey {
    pub(crate) secret: packet::SecretKey,
    pub(crate) public: SignedPublicKey,
    pub(crate) subkey: Option<packet::SecretSubkey>,
}

impl TestKey {
    pub(crate) fn fingerprint(&self) -> String {
        format!("{:X}", self.public.fingerprint())
    }

    pub(crate) fn armored(&self) -> String {
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
    let mut config = SignatureConfig::v4(typ, PublicKeyAlgorithm::Ed25519, HashAlgorithm::Sha256);
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

pub(crate) fn make_key(seed: &str, opts: Opts) -> TestKey {
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
pub(crate) fn text_signature(key: &impl SigningKey, text: &str) -> Signature {
    config(SignatureType::Text, key, vec![])
        .sign(key, &Password::empty(), text.as_bytes())
        .unwrap()
}

pub(crate) fn clearsign(text: &str, sign: impl FnOnce(&str) -> Vec<Signature>) -> String {
    CleartextSignedMessage::new_many(text, |t| Ok(sign(t)))
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap()
}

pub(crate) fn signed_by(key: &TestKey, text: &str) -> String {
    clearsign(text, |t| vec![text_signature(&key.secret, t)])
}

pub(crate) fn keyring(keys: &[&TestKey]) -> Keyring {
    let text: String = keys.iter().map(|k| k.armored()).collect();
    Keyring::from_armored(&text).unwrap()
}

/// Several transferable public keys in one armor block.
pub(crate) struct SignedPublicKeysBlock<'a>(pub(crate) &'a [&'a SignedPublicKey]);

impl SignedPublicKeysBlock<'_> {
    pub(crate) fn armored(&self) -> String {
        let mut out = Vec::new();
        pgp::armor::write(self, pgp::armor::BlockType::PublicKey, &mut out, None, true).unwrap();
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
