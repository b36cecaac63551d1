//! Authentication of ingress messages (IC interface spec, "Authentication").
//!
//! A request is signed by the sender's key, or by the last key of a delegation chain that starts
//! at the sender's key: `sender_sig = sign("\x0Aic-request" ‖ request_id)`, each delegation
//! signed by the previous key over `"\x1Aic-request-auth-delegation" ‖ hash_of_map(delegation)`.
//! The sender must be the self-authenticating principal of `sender_pubkey`.
//!
//! Supported keys: Ed25519, ECDSA P-256 and ECDSA secp256k1 (DER SubjectPublicKeyInfo).
//! Canister signatures and WebAuthn keys are recognised and rejected with a clear message.

use crate::request_id::{hash_of_map, IC_REQUEST, IC_REQUEST_AUTH_DELEGATION};
use crate::sha224;
use ciborium::Value;
use tabnet_types::Principal;

/// The longest delegation chain the IC accepts.
pub const MAX_DELEGATIONS: usize = 20;
/// The most targets one delegation may list.
pub const MAX_DELEGATION_TARGETS: usize = 1000;

// Object identifiers (DER-encoded contents, without tag and length).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70]; // 1.3.101.112
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
const OID_SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a]; // 1.3.132.0.10
const OID_IC_COSE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x01]; // 1.3.6.1.4.1.56387.1.1
const OID_IC_CANISTER_SIG: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb8, 0x43, 0x01, 0x02]; // 1.3.6.1.4.1.56387.1.2
const OID_IC_BLS: &[u8] = &[
    0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03, 0x01, 0x02, 0x01,
]; // 1.3.6.1.4.1.44668.5.3.1.2.1

/// A sender's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    EcdsaSecp256k1(k256::ecdsa::VerifyingKey),
}

/// Signatures verified lately, as digests of key, message and signature. A call's signature is
/// checked where it is submitted, by every node it is gossiped to, and by every replica when
/// its block executes; after the first, the checks find it here (in a tab, an Ed25519 check
/// costs a few hundred microseconds, a digest one). Only successes are kept, so no answer ever
/// differs from verifying; at most `VERIFIED_MAX`, forgotten all at once when full.
static VERIFIED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> = std::sync::OnceLock::new();
const VERIFIED_MAX: usize = 100_000;

fn verified_digest(key_der: &[u8], msg: &[u8], sig: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [key_der, msg, sig] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn recently_verified(digest: &[u8; 32]) -> bool {
    VERIFIED.get().is_some_and(|set| set.lock().unwrap_or_else(|e| e.into_inner()).contains(digest))
}

fn remember_verified(digest: [u8; 32]) {
    let mut set = VERIFIED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if set.len() >= VERIFIED_MAX {
        set.clear();
    }
    set.insert(digest);
}

impl PublicKey {
    /// Verifies `sig` on `msg`. Ed25519: the 64-byte RFC 8032 signature. ECDSA: the 64-byte
    /// `r ‖ s` (big-endian) over SHA-256 of `msg`; high-s signatures are accepted too.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let digest = verified_digest(&self.to_der(), msg, sig);
        if recently_verified(&digest) {
            return true;
        }
        let valid = self.verify_uncached(msg, sig);
        if valid {
            remember_verified(digest);
        }
        valid
    }

    fn verify_uncached(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(key) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                key.verify_strict(msg, &sig).is_ok()
            }
            PublicKey::EcdsaP256(key) => {
                use p256::ecdsa::signature::Verifier;
                let Ok(sig) = p256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                let sig = sig.normalize_s().unwrap_or(sig);
                key.verify(msg, &sig).is_ok()
            }
            PublicKey::EcdsaSecp256k1(key) => {
                use k256::ecdsa::signature::Verifier;
                let Ok(sig) = k256::ecdsa::Signature::from_slice(sig) else {
                    return false;
                };
                // k256 accepts only low-s signatures; the IC does not require them.
                let sig = sig.normalize_s().unwrap_or(sig);
                key.verify(msg, &sig).is_ok()
            }
        }
    }

    /// The DER SubjectPublicKeyInfo (ECDSA points uncompressed), as agents send it.
    pub fn to_der(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(key) => spki(&[OID_ED25519], &key.to_bytes()),
            PublicKey::EcdsaP256(key) => spki(
                &[OID_EC_PUBLIC_KEY, OID_PRIME256V1],
                key.to_encoded_point(false).as_bytes(),
            ),
            PublicKey::EcdsaSecp256k1(key) => spki(
                &[OID_EC_PUBLIC_KEY, OID_SECP256K1],
                key.to_encoded_point(false).as_bytes(),
            ),
        }
    }
}

/// Parses a DER SubjectPublicKeyInfo of a supported key type.
pub fn parse_public_key_der(der: &[u8]) -> Result<PublicKey, String> {
    let (algorithm, parameter, key) = parse_spki(der)?;
    match (algorithm, parameter) {
        (OID_ED25519, None) => {
            let key: &[u8; 32] = key
                .try_into()
                .map_err(|_| format!("Ed25519 public key must be 32 bytes, got {}", key.len()))?;
            ed25519_dalek::VerifyingKey::from_bytes(key)
                .map(PublicKey::Ed25519)
                .map_err(|_| "invalid Ed25519 public key".into())
        }
        (OID_EC_PUBLIC_KEY, Some(OID_PRIME256V1)) => {
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                .map(PublicKey::EcdsaP256)
                .map_err(|_| "invalid ECDSA P-256 public key".into())
        }
        (OID_EC_PUBLIC_KEY, Some(OID_SECP256K1)) => k256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .map(PublicKey::EcdsaSecp256k1)
            .map_err(|_| "invalid ECDSA secp256k1 public key".into()),
        (OID_EC_PUBLIC_KEY, _) => {
            Err("unsupported ECDSA curve (supported: P-256, secp256k1)".into())
        }
        (OID_IC_CANISTER_SIG, _) => {
            Err("canister signature public keys are not supported by tabnet yet".into())
        }
        (OID_IC_COSE, _) => {
            Err("WebAuthn (COSE) public keys are not supported by tabnet yet".into())
        }
        (OID_IC_BLS, _) => Err("BLS keys cannot sign requests".into()),
        _ => Err("unsupported public key algorithm".into()),
    }
}

/// `SHA-224(der) ‖ 0x02`.
pub fn self_authenticating_principal(der: &[u8]) -> Principal {
    let mut bytes = sha224(der).to_vec();
    bytes.push(0x02);
    Principal::from_slice(&bytes)
}

/// One entry of an envelope's `sender_delegation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDelegation {
    /// DER public key the authority is delegated to.
    pub pubkey: Vec<u8>,
    /// Nanoseconds since 1970; the delegation is void after it.
    pub expiration: u64,
    /// If present, the delegation is valid only for requests to these canisters.
    pub targets: Option<Vec<Principal>>,
    /// Signature by the previous key of the chain.
    pub signature: Vec<u8>,
}

impl SignedDelegation {
    /// Parses `{delegation: {pubkey, expiration, targets?}, signature}`. Unknown fields of the
    /// delegation are not signed over by [`Self::delegation_map`] and so fail verification.
    pub fn from_cbor_value(value: &Value) -> Result<Self, String> {
        let entry = value.as_map().ok_or("signed delegation must be a map")?;
        let delegation = field(entry, "delegation")
            .and_then(Value::as_map)
            .ok_or("signed delegation needs a `delegation` map")?;
        let signature = field(entry, "signature")
            .and_then(Value::as_bytes)
            .ok_or("signed delegation needs a `signature` byte string")?
            .clone();
        let pubkey = field(delegation, "pubkey")
            .and_then(Value::as_bytes)
            .ok_or("delegation needs a `pubkey` byte string")?
            .clone();
        let expiration = field(delegation, "expiration")
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or("delegation needs a natural `expiration`")?;
        let targets = match field(delegation, "targets") {
            None => None,
            Some(Value::Array(items)) => {
                if items.len() > MAX_DELEGATION_TARGETS {
                    return Err(format!(
                        "delegation has {} targets, at most {MAX_DELEGATION_TARGETS} are allowed",
                        items.len()
                    ));
                }
                let targets = items
                    .iter()
                    .map(|t| {
                        let bytes = t
                            .as_bytes()
                            .ok_or("delegation targets must be byte strings")?;
                        Principal::try_from_slice(bytes)
                            .map_err(|_| "delegation target is not a principal".to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(targets)
            }
            Some(_) => return Err("delegation `targets` must be an array".into()),
        };
        Ok(Self {
            pubkey,
            expiration,
            targets,
            signature,
        })
    }

    /// The delegation map whose hash is signed.
    pub fn delegation_map(&self) -> Value {
        let mut fields = vec![
            (
                Value::Text("pubkey".into()),
                Value::Bytes(self.pubkey.clone()),
            ),
            (
                Value::Text("expiration".into()),
                Value::Integer(self.expiration.into()),
            ),
        ];
        if let Some(targets) = &self.targets {
            let targets = targets
                .iter()
                .map(|t| Value::Bytes(t.as_slice().to_vec()))
                .collect();
            fields.push((Value::Text("targets".into()), Value::Array(targets)));
        }
        Value::Map(fields)
    }

    /// The message the previous key signs: `"\x1Aic-request-auth-delegation" ‖ hash_of_map(delegation)`.
    pub fn signed_message(&self) -> Vec<u8> {
        let hash = hash_of_map(&self.delegation_map()).expect("delegation maps always hash");
        [IC_REQUEST_AUTH_DELEGATION, &hash[..]].concat()
    }
}

/// Parses an envelope's `sender_delegation` array.
pub fn delegations_from_cbor(value: &Value) -> Result<Vec<SignedDelegation>, String> {
    let items = value
        .as_array()
        .ok_or("sender_delegation must be an array")?;
    if items.len() > MAX_DELEGATIONS {
        return Err(format!(
            "delegation chain has {} delegations, at most {MAX_DELEGATIONS} are allowed",
            items.len()
        ));
    }
    items
        .iter()
        .map(SignedDelegation::from_cbor_value)
        .collect()
}

/// Authenticates a request with id `request_id` received at `now_nanos`.
///
/// `target` is the canister the request is for (its `canister_id`, or the effective canister id
/// for management-canister calls and `read_state`); delegations restricted by `targets` are
/// accepted only if it is among them, and never when `target` is `None`.
pub fn authenticate(
    sender: &Principal,
    sender_pubkey: Option<&[u8]>,
    sender_sig: Option<&[u8]>,
    delegations: &[SignedDelegation],
    request_id: &[u8; 32],
    now_nanos: u64,
    target: Option<&Principal>,
) -> Result<(), String> {
    if *sender == Principal::anonymous() {
        if sender_pubkey.is_some() || sender_sig.is_some() || !delegations.is_empty() {
            return Err(
                "anonymous requests must not carry a public key, signature or delegation".into(),
            );
        }
        return Ok(());
    }
    let (Some(pubkey), Some(sig)) = (sender_pubkey, sender_sig) else {
        return Err(format!(
            "request from {sender} needs both sender_pubkey and sender_sig (only the anonymous principal may send unsigned requests)"
        ));
    };
    if self_authenticating_principal(pubkey) != *sender {
        return Err(format!(
            "sender {sender} is not the self-authenticating principal of sender_pubkey ({})",
            self_authenticating_principal(pubkey)
        ));
    }
    if delegations.len() > MAX_DELEGATIONS {
        return Err(format!(
            "delegation chain has {} delegations, at most {MAX_DELEGATIONS} are allowed",
            delegations.len()
        ));
    }

    let mut signing_key: &[u8] = pubkey;
    let mut keys_seen: Vec<&[u8]> = vec![pubkey];
    for (i, delegation) in delegations.iter().enumerate() {
        if delegation.expiration < now_nanos {
            return Err(format!(
                "delegation {i} expired at {} (now {now_nanos})",
                delegation.expiration
            ));
        }
        if let Some(targets) = &delegation.targets {
            if targets.len() > MAX_DELEGATION_TARGETS {
                return Err(format!(
                    "delegation {i} has more than {MAX_DELEGATION_TARGETS} targets"
                ));
            }
            match target {
                Some(t) if targets.contains(t) => {}
                Some(t) => return Err(format!("delegation {i} does not allow requests to {t}")),
                None => {
                    return Err(format!("delegation {i} is restricted to targets but the request has no target canister"))
                }
            }
        }
        let key = parse_public_key_der(signing_key)
            .map_err(|e| format!("delegation {i}: signing key: {e}"))?;
        if !key.verify(&delegation.signed_message(), &delegation.signature) {
            return Err(format!("delegation {i}: invalid signature"));
        }
        if keys_seen.contains(&delegation.pubkey.as_slice()) {
            return Err(format!(
                "delegation {i}: the chain contains the same key twice"
            ));
        }
        keys_seen.push(&delegation.pubkey);
        signing_key = &delegation.pubkey;
    }

    let key = parse_public_key_der(signing_key).map_err(|e| {
        if delegations.is_empty() {
            format!("sender_pubkey: {e}")
        } else {
            format!("last delegation's key: {e}")
        }
    })?;
    if !key.verify(&[IC_REQUEST, &request_id[..]].concat(), sig) {
        return Err(format!(
            "invalid signature: sender_sig does not verify for request id {}",
            hex::encode(request_id)
        ));
    }
    Ok(())
}

fn field<'a>(map: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

// --- a minimal, strict DER reader for SubjectPublicKeyInfo ---

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;

/// Reads one TLV; returns (tag, contents, rest).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let malformed = || "malformed DER public key".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(malformed)?;
    let (&first, rest) = rest.split_first().ok_or_else(malformed)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 || rest.len() < n {
            return Err(malformed());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(malformed());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The parts of a SubjectPublicKeyInfo: algorithm OID, parameter OID (the curve), key bytes.
type SpkiParts<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// SEQUENCE { SEQUENCE { OID algorithm, OID parameter? }, BIT STRING key }.
fn parse_spki(der: &[u8]) -> Result<SpkiParts<'_>, String> {
    let malformed = || "malformed DER public key (expected a SubjectPublicKeyInfo)".to_string();
    let (tag, spki, rest) = read_tlv(der)?;
    if tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(malformed());
    }
    let (tag, algorithm_id, rest) = read_tlv(spki)?;
    if tag != TAG_SEQUENCE {
        return Err(malformed());
    }
    let (tag, bits, rest) = read_tlv(rest)?;
    if tag != TAG_BIT_STRING || !rest.is_empty() {
        return Err(malformed());
    }
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(malformed()),
    };
    let (tag, algorithm, rest) = read_tlv(algorithm_id)?;
    if tag != TAG_OID {
        return Err(malformed());
    }
    let parameter = if rest.is_empty() {
        None
    } else {
        let (tag, parameter, rest) = read_tlv(rest)?;
        if !rest.is_empty() {
            return Err(malformed());
        }
        match tag {
            TAG_OID => Some(parameter),
            0x05 if parameter.is_empty() => None, // NULL parameters
            _ => return Err(malformed()),
        }
    };
    Ok((algorithm, parameter, key))
}

/// Encodes a SubjectPublicKeyInfo (all lengths here are short or fit two bytes).
fn spki(oids: &[&[u8]], key: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
            n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(contents);
        out
    }
    let algorithm: Vec<u8> = oids.iter().flat_map(|oid| tlv(TAG_OID, oid)).collect();
    let bits = [&[0u8][..], key].concat();
    tlv(
        TAG_SEQUENCE,
        &[tlv(TAG_SEQUENCE, &algorithm), tlv(TAG_BIT_STRING, &bits)].concat(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_remembered_signature_vouches_for_nothing_else() {
        use ed25519_dalek::Signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let public = PublicKey::Ed25519(key.verifying_key());
        let sig = key.sign(b"message").to_bytes();
        assert!(public.verify(b"message", &sig));
        assert!(public.verify(b"message", &sig), "and again, from the cache");
        let mut forged = sig;
        forged[5] ^= 1;
        assert!(!public.verify(b"message", &forged));
        assert!(!public.verify(b"massage", &sig));
        let other = PublicKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key());
        assert!(!other.verify(b"message", &sig));
    }

    use super::*;
    use crate::request_id::request_id;

    /// The three kinds of signing keys agents use.
    enum TestKey {
        Ed25519(ed25519_dalek::SigningKey),
        P256(p256::ecdsa::SigningKey),
        K256(k256::ecdsa::SigningKey),
    }

    impl TestKey {
        fn all(seed: u8) -> Vec<TestKey> {
            let bytes = [seed; 32];
            vec![
                TestKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes)),
                TestKey::P256(p256::ecdsa::SigningKey::from_bytes(&bytes.into()).unwrap()),
                TestKey::K256(k256::ecdsa::SigningKey::from_bytes(&bytes.into()).unwrap()),
            ]
        }

        fn public(&self) -> PublicKey {
            match self {
                TestKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
                TestKey::P256(k) => PublicKey::EcdsaP256(*k.verifying_key()),
                TestKey::K256(k) => PublicKey::EcdsaSecp256k1(*k.verifying_key()),
            }
        }

        fn der(&self) -> Vec<u8> {
            self.public().to_der()
        }

        fn principal(&self) -> Principal {
            self_authenticating_principal(&self.der())
        }

        fn sign(&self, msg: &[u8]) -> Vec<u8> {
            use ed25519_dalek::Signer;
            match self {
                TestKey::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
                TestKey::P256(k) => {
                    let sig: p256::ecdsa::Signature = k.sign(msg);
                    sig.to_bytes().to_vec()
                }
                TestKey::K256(k) => {
                    let sig: k256::ecdsa::Signature = k.sign(msg);
                    sig.to_bytes().to_vec()
                }
            }
        }

        fn sign_request(&self, id: &[u8; 32]) -> Vec<u8> {
            self.sign(&[IC_REQUEST, &id[..]].concat())
        }

        fn delegate(
            &self,
            to: &TestKey,
            expiration: u64,
            targets: Option<Vec<Principal>>,
        ) -> SignedDelegation {
            let mut d = SignedDelegation {
                pubkey: to.der(),
                expiration,
                targets,
                signature: vec![],
            };
            d.signature = self.sign(&d.signed_message());
            d
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn call_content(sender: &Principal) -> Value {
        Value::Map(vec![
            (text("request_type"), text("call")),
            (text("sender"), Value::Bytes(sender.as_slice().to_vec())),
            (
                text("ingress_expiry"),
                Value::Integer(1_700_000_300_000_000_000u64.into()),
            ),
            (
                text("canister_id"),
                Value::Bytes(canister().as_slice().to_vec()),
            ),
            (text("method_name"), text("greet")),
            (text("arg"), Value::Bytes(b"DIDL\x00\x00".to_vec())),
        ])
    }

    fn canister() -> Principal {
        tabnet_types::canister_id_from_index(3)
    }

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn known_der_encodings_parse() {
        let ed = hex::decode("302a300506032b6570032100dbae424f137cfb187bb28be40b496ad60465b17ea2410af037b6caa8c8770499").unwrap();
        assert!(matches!(
            parse_public_key_der(&ed),
            Ok(PublicKey::Ed25519(_))
        ));
        let p256 = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200046bba01230defcec1c4ecc15d57d81410acfd8000fdec74b72fc09849fb2a6a26d309f8eadb06fd8a51f23408ac9563b81d0ef6568127fb239cfb0790a9c20c68").unwrap();
        let key = parse_public_key_der(&p256).unwrap();
        assert!(matches!(key, PublicKey::EcdsaP256(_)));
        assert_eq!(key.to_der(), p256);
        assert_eq!(
            &TestKey::all(1)[2].der()[..23],
            &hex::decode("3056301006072a8648ce3d020106052b8104000a034200").unwrap()[..]
        );
        assert_eq!(
            &TestKey::all(1)[0].der()[..12],
            &hex::decode("302a300506032b6570032100").unwrap()[..]
        );
    }

    #[test]
    fn unsupported_and_malformed_keys_are_rejected() {
        // Canister signature key: SEQ { SEQ { OID 1.3.6.1.4.1.56387.1.2 }, BIT STRING }.
        let canister_sig = spki(&[OID_IC_CANISTER_SIG], &[0x0a, 1, 2, 3]);
        assert!(parse_public_key_der(&canister_sig)
            .unwrap_err()
            .contains("canister signature"));
        let cose = spki(&[OID_IC_COSE], &[0xa5]);
        assert!(parse_public_key_der(&cose)
            .unwrap_err()
            .contains("WebAuthn"));
        let ed = TestKey::all(1)[0].der();
        for bad in [&ed[..ed.len() - 1], &ed[1..], &[][..], &[0x30, 0x80][..]] {
            assert!(parse_public_key_der(bad).is_err());
        }
        let mut trailing = ed.clone();
        trailing.push(0);
        assert!(parse_public_key_der(&trailing).is_err());
        let mut bad_point = TestKey::all(1)[1].der();
        bad_point[30] ^= 0xff;
        assert!(parse_public_key_der(&bad_point).is_err());
    }

    #[test]
    fn self_authenticating_principal_matches_candid() {
        for key in TestKey::all(7) {
            let der = key.der();
            assert_eq!(
                self_authenticating_principal(&der),
                Principal::self_authenticating(&der)
            );
            assert_eq!(self_authenticating_principal(&der).as_slice().len(), 29);
        }
    }

    #[test]
    fn each_key_type_signs_requests() {
        for key in TestKey::all(3) {
            let sender = key.principal();
            let id = request_id(&call_content(&sender)).unwrap();
            let sig = key.sign_request(&id);
            let der = key.der();
            authenticate(
                &sender,
                Some(&der),
                Some(&sig),
                &[],
                &id,
                NOW,
                Some(&canister()),
            )
            .unwrap();

            // A flipped signature byte, a different request, a wrong sender all fail.
            let mut bad_sig = sig.clone();
            bad_sig[10] ^= 0x01;
            assert!(
                authenticate(&sender, Some(&der), Some(&bad_sig), &[], &id, NOW, None).is_err()
            );
            let mut other_id = id;
            other_id[0] ^= 0x80;
            assert!(
                authenticate(&sender, Some(&der), Some(&sig), &[], &other_id, NOW, None).is_err()
            );
            let other = TestKey::all(4).remove(0).principal();
            let err =
                authenticate(&other, Some(&der), Some(&sig), &[], &id, NOW, None).unwrap_err();
            assert!(err.contains("self-authenticating"), "{err}");
            // Missing signature.
            assert!(authenticate(&sender, Some(&der), None, &[], &id, NOW, None).is_err());
            assert!(authenticate(&sender, None, None, &[], &id, NOW, None).is_err());
        }
    }

    #[test]
    fn high_s_secp256k1_signatures_are_accepted() {
        let key = k256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        use k256::ecdsa::signature::Signer;
        let sig: k256::ecdsa::Signature = key.sign(b"msg");
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(
            high.normalize_s().is_some(),
            "test signature should be high-s"
        );
        let public = PublicKey::EcdsaSecp256k1(*key.verifying_key());
        assert!(public.verify(b"msg", &sig.to_bytes()));
        assert!(public.verify(b"msg", &high.to_bytes()));
        assert!(!public.verify(b"msh", &high.to_bytes()));
    }

    #[test]
    fn anonymous_requests() {
        let anon = Principal::anonymous();
        let id = request_id(&call_content(&anon)).unwrap();
        authenticate(&anon, None, None, &[], &id, NOW, None).unwrap();
        let key = &TestKey::all(1)[0];
        let der = key.der();
        let sig = key.sign_request(&id);
        assert!(authenticate(&anon, Some(&der), Some(&sig), &[], &id, NOW, None).is_err());
        assert!(authenticate(&anon, None, Some(&sig), &[], &id, NOW, None).is_err());
    }

    #[test]
    fn delegation_chains() {
        // Root identity (e.g. Internet Identity would be a canister sig; here any key type) ->
        // session key of every type.
        for (root, session) in TestKey::all(11)
            .into_iter()
            .zip(TestKey::all(12).into_iter().rev())
        {
            let sender = root.principal();
            let id = request_id(&call_content(&sender)).unwrap();
            let d = root.delegate(&session, NOW + 1, None);
            let sig = session.sign_request(&id);
            let der = root.der();
            let chain = [d.clone()];
            authenticate(
                &sender,
                Some(&der),
                Some(&sig),
                &chain,
                &id,
                NOW,
                Some(&canister()),
            )
            .unwrap();

            // Signing with the root key instead of the delegated key fails.
            let root_sig = root.sign_request(&id);
            assert!(
                authenticate(&sender, Some(&der), Some(&root_sig), &chain, &id, NOW, None).is_err()
            );
            // Expired.
            let err = authenticate(&sender, Some(&der), Some(&sig), &chain, &id, NOW + 2, None)
                .unwrap_err();
            assert!(err.contains("expired"), "{err}");
            // Tampered delegation (expiration extended) no longer verifies.
            let mut extended = d.clone();
            extended.expiration += 1_000_000_000;
            assert!(
                authenticate(&sender, Some(&der), Some(&sig), &[extended], &id, NOW, None).is_err()
            );
        }
    }

    #[test]
    fn delegation_chain_with_targets() {
        let [a, b, c] = <[TestKey; 3]>::try_from(TestKey::all(21)).ok().unwrap();
        let sender = a.principal();
        let id = request_id(&call_content(&sender)).unwrap();
        let other = tabnet_types::canister_id_from_index(99);
        let d1 = a.delegate(&b, NOW + 100, Some(vec![other, canister()]));
        let d2 = b.delegate(&c, NOW + 50, Some(vec![canister()]));
        let sig = c.sign_request(&id);
        let der = a.der();
        let chain = [d1.clone(), d2.clone()];
        authenticate(
            &sender,
            Some(&der),
            Some(&sig),
            &chain,
            &id,
            NOW,
            Some(&canister()),
        )
        .unwrap();
        // Target outside the second delegation's targets, or no target at all.
        assert!(authenticate(
            &sender,
            Some(&der),
            Some(&sig),
            &chain,
            &id,
            NOW,
            Some(&other)
        )
        .is_err());
        assert!(authenticate(&sender, Some(&der), Some(&sig), &chain, &id, NOW, None).is_err());
        // Out of order chain.
        let swapped = [d2, d1.clone()];
        assert!(authenticate(
            &sender,
            Some(&der),
            Some(&sig),
            &swapped,
            &id,
            NOW,
            Some(&canister())
        )
        .is_err());
        // A cycle back to the first key.
        let back = b.delegate(&a, NOW + 50, None);
        let sig_a = a.sign_request(&id);
        let err = authenticate(
            &sender,
            Some(&der),
            Some(&sig_a),
            &[d1, back],
            &id,
            NOW,
            Some(&canister()),
        )
        .unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn too_long_chains_are_rejected() {
        let keys: Vec<TestKey> = (0..=21u8)
            .map(|i| TestKey::all(100 + i).remove(0))
            .collect();
        let chain: Vec<SignedDelegation> = keys
            .windows(2)
            .map(|w| w[0].delegate(&w[1], NOW + 1, None))
            .collect();
        let sender = keys[0].principal();
        let id = [1u8; 32];
        let der = keys[0].der();
        let sig = keys[20].sign_request(&id);
        authenticate(
            &sender,
            Some(&der),
            Some(&sig),
            &chain[..20],
            &id,
            NOW,
            None,
        )
        .unwrap();
        let sig = keys[21].sign_request(&id);
        assert!(authenticate(&sender, Some(&der), Some(&sig), &chain, &id, NOW, None).is_err());
    }

    #[test]
    fn delegations_parse_from_cbor() {
        let [a, b] =
            <[TestKey; 2]>::try_from(TestKey::all(31).into_iter().take(2).collect::<Vec<_>>())
                .ok()
                .unwrap();
        let d = a.delegate(&b, NOW + 5, Some(vec![canister()]));
        let cbor = Value::Array(vec![Value::Map(vec![
            (text("delegation"), d.delegation_map()),
            (text("signature"), Value::Bytes(d.signature.clone())),
        ])]);
        // Through CBOR bytes, as in a real envelope.
        let mut bytes = Vec::new();
        ciborium::into_writer(&cbor, &mut bytes).unwrap();
        let value: Value = ciborium::from_reader(&bytes[..]).unwrap();
        let parsed = delegations_from_cbor(&value).unwrap();
        assert_eq!(parsed, vec![d]);

        assert!(delegations_from_cbor(&text("x")).is_err());
        let missing_sig = Value::Array(vec![Value::Map(vec![(
            text("delegation"),
            parsed[0].delegation_map(),
        )])]);
        assert!(delegations_from_cbor(&missing_sig).is_err());
    }
}
