//! BLS12-381 signatures in the IC's "min-signature" variant: signatures are compressed G1 points
//! (48 bytes), public keys compressed G2 points (96 bytes), messages hashed to G1 with the
//! ciphersuite `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`.
//!
//! Only single-key signing for now; the secret scalar stays reachable ([`BlsSecretKey::scalar`],
//! [`BlsSecretKey::from_scalar`]) so that threshold (Shamir-shared) signing can be added on top.

use bls12_381::hash_to_curve::{ExpandMsgXmd, HashToCurve};
use bls12_381::{multi_miller_loop, G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Gt, Scalar};
use sha2::Digest;

/// The hash-to-curve domain separation tag of the IC's BLS signatures.
pub const DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// DER prefix of an IC BLS public key (SubjectPublicKeyInfo with the IC's BLS OIDs); the
/// 96-byte compressed key follows.
pub const DER_PREFIX: [u8; 37] = [
    0x30, 0x81, 0x82, 0x30, 0x1d, 0x06, 0x0d, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05,
    0x03, 0x01, 0x02, 0x01, 0x06, 0x0c, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03,
    0x02, 0x01, 0x03, 0x61, 0x00,
];

/// A BLS secret key: a scalar of BLS12-381.
#[derive(Clone)]
pub struct BlsSecretKey {
    scalar: Scalar,
}

impl std::fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlsSecretKey(..)")
    }
}

impl BlsSecretKey {
    /// Derives a key from a 32-byte seed (SHA-512 of a domain tag and the seed, reduced mod r).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut hasher = sha2::Sha512::new();
        hasher.update(b"tabnet-bls12381-secret-key");
        hasher.update(seed);
        let wide: [u8; 64] = hasher.finalize().into();
        let mut scalar = Scalar::from_bytes_wide(&wide);
        if scalar == Scalar::zero() {
            // Unreachable in practice (probability 2^-255); a zero key would sign nothing.
            scalar = Scalar::one();
        }
        Self { scalar }
    }

    /// A fresh key from caller-supplied random bytes (the crate has no RNG of its own).
    pub fn generate(random_bytes: &[u8; 32]) -> Self {
        Self::from_seed(random_bytes)
    }

    /// Wraps a scalar (e.g. a Shamir share or a recombined secret).
    pub fn from_scalar(scalar: Scalar) -> Self {
        Self { scalar }
    }

    /// The scalar's canonical little-endian bytes (to hand the key to its holder).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.scalar.to_bytes()
    }

    /// The key of [`BlsSecretKey::to_bytes`]; refuses a non-canonical or zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        let scalar = Option::<Scalar>::from(Scalar::from_bytes(bytes)).ok_or("not a BLS12-381 scalar")?;
        if scalar == Scalar::zero() {
            return Err("a zero BLS secret key".into());
        }
        Ok(Self { scalar })
    }

    /// The secret scalar.
    pub fn scalar(&self) -> &Scalar {
        &self.scalar
    }

    pub fn public_key(&self) -> BlsPublicKey {
        BlsPublicKey(G2Affine::from(G2Affine::generator() * self.scalar))
    }

    /// Signs `msg` (the caller adds any domain separator): `sk · H(msg)`, compressed.
    pub fn sign(&self, msg: &[u8]) -> [u8; 48] {
        self.sign_hashed(&hash_message(msg))
    }

    /// [`BlsSecretKey::sign`] of a message hashed already.
    pub fn sign_hashed(&self, msg: &HashedMessage) -> [u8; 48] {
        G1Affine::from(msg.0 * self.scalar).to_compressed()
    }
}

/// A message hashed to G1: a quarter of signing it and a tenth of verifying a signature on it,
/// so a node that signs a share of a message and then checks the aggregate hashes it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedMessage(G1Affine);

pub fn hash_message(msg: &[u8]) -> HashedMessage {
    HashedMessage(G1Affine::from(hash_to_g1(msg)))
}

/// A BLS public key (a G2 point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlsPublicKey(G2Affine);

impl BlsPublicKey {
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.to_compressed()
    }

    /// Parses a compressed G2 point; rejects invalid points, points outside the prime-order
    /// subgroup and the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let bytes: &[u8; 96] = bytes
            .try_into()
            .map_err(|_| format!("BLS public key must be 96 bytes, got {}", bytes.len()))?;
        let point = Option::<G2Affine>::from(G2Affine::from_compressed(bytes))
            .ok_or("invalid BLS public key (not a G2 point)")?;
        if bool::from(point.is_identity()) {
            return Err("invalid BLS public key (identity)".into());
        }
        Ok(Self(point))
    }

    /// The DER form the IC uses for root and subnet keys (`/api/v2/status` `root_key`).
    pub fn to_der(&self) -> Vec<u8> {
        [&DER_PREFIX[..], &self.to_bytes()].concat()
    }

    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        if der.len() != DER_PREFIX.len() + 96 || der[..DER_PREFIX.len()] != DER_PREFIX {
            return Err(format!(
                "BLS DER public key must be {} bytes starting with {}",
                DER_PREFIX.len() + 96,
                hex::encode(DER_PREFIX)
            ));
        }
        Self::from_bytes(&der[DER_PREFIX.len()..])
    }
}

/// Checks `sig` (48-byte compressed G1) on `msg` under `pk`: e(sig, g2) == e(H(msg), pk).
pub fn verify(pk: &BlsPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = <&[u8; 48]>::try_from(sig) else {
        return false;
    };
    let Some(sig) = Option::<G1Affine>::from(G1Affine::from_compressed(sig)) else {
        return false;
    };
    if bool::from(sig.is_identity()) || bool::from(pk.0.is_identity()) {
        return false;
    }
    pairing_check(&sig, &hash_message(msg), &G2Prepared::from(pk.0))
}

/// A public key made ready for pairings once; verifying against it skips that work (about a
/// tenth of a verification), which pays for keys checked at every height.
pub struct PreparedKey {
    prepared: G2Prepared,
    identity: bool,
}

impl BlsPublicKey {
    pub fn prepare(&self) -> PreparedKey {
        PreparedKey { prepared: G2Prepared::from(self.0), identity: bool::from(self.0.is_identity()) }
    }
}

/// [`verify`] against a prepared key.
pub fn verify_prepared(pk: &PreparedKey, msg: &[u8], sig: &[u8]) -> bool {
    verify_prepared_hashed(pk, &hash_message(msg), sig)
}

/// [`verify_prepared`] of a message hashed already.
pub fn verify_prepared_hashed(pk: &PreparedKey, msg: &HashedMessage, sig: &[u8]) -> bool {
    let Ok(sig) = <&[u8; 48]>::try_from(sig) else {
        return false;
    };
    let Some(sig) = Option::<G1Affine>::from(G1Affine::from_compressed(sig)) else {
        return false;
    };
    if bool::from(sig.is_identity()) || pk.identity {
        return false;
    }
    pairing_check(&sig, msg, &pk.prepared)
}

/// e(sig, −g2) · e(H(msg), pk) == 1.
fn pairing_check(sig: &G1Affine, msg: &HashedMessage, pk: &G2Prepared) -> bool {
    static NEG_G2: std::sync::OnceLock<G2Prepared> = std::sync::OnceLock::new();
    let neg_g2 = NEG_G2.get_or_init(|| G2Prepared::from(-G2Affine::generator()));
    multi_miller_loop(&[(sig, neg_g2), (&msg.0, pk)]).final_exponentiation() == Gt::identity()
}

/// Multi-signatures (notarization, finalization): the sum of individual signatures on one
/// message checks against the sum of the signers' public keys. Sound here because every key
/// comes from the subnet's dealer, so no signer can pick a key that cancels another's.
pub fn aggregate_signatures<'a>(sigs: impl IntoIterator<Item = &'a [u8; 48]>) -> Option<[u8; 48]> {
    let mut sum = G1Projective::identity();
    for sig in sigs {
        sum += Option::<G1Affine>::from(G1Affine::from_compressed(sig))?;
    }
    Some(G1Affine::from(sum).to_compressed())
}

/// The key an aggregate of these signers' signatures checks against.
pub fn aggregate_public_keys<'a>(keys: impl IntoIterator<Item = &'a BlsPublicKey>) -> BlsPublicKey {
    let sum = keys.into_iter().fold(G2Projective::identity(), |acc, pk| acc + pk.0);
    BlsPublicKey(G2Affine::from(sum))
}

fn hash_to_g1(msg: &[u8]) -> G1Projective {
    <G1Projective as HashToCurve<ExpandMsgXmd<sha2_09::Sha256>>>::hash_to_curve(msg, DST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let sk = BlsSecretKey::from_seed(&[1; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert!(verify(&pk, b"hello", &sig));
        assert!(!verify(&pk, b"hellp", &sig));
        let other = BlsSecretKey::from_seed(&[2; 32]).public_key();
        assert!(!verify(&other, b"hello", &sig));
        let mut bad = sig;
        bad[47] ^= 1;
        assert!(!verify(&pk, b"hello", &bad));
        assert!(!verify(&pk, b"hello", &sig[..47]));
    }

    #[test]
    fn a_prepared_key_verifies_the_same() {
        let sk = BlsSecretKey::from_seed(&[4; 32]);
        let prepared = sk.public_key().prepare();
        let sig = sk.sign(b"m");
        assert!(verify_prepared(&prepared, b"m", &sig));
        assert!(!verify_prepared(&prepared, b"n", &sig));
        assert!(!verify_prepared(&BlsSecretKey::from_seed(&[5; 32]).public_key().prepare(), b"m", &sig));
        assert!(!verify_prepared(&prepared, b"m", &sig[..47]));
        let hashed = hash_message(b"m");
        assert_eq!(sk.sign_hashed(&hashed), sig);
        assert!(verify_prepared_hashed(&prepared, &hashed, &sig));
        assert!(!verify_prepared_hashed(&prepared, &hash_message(b"n"), &sig));
    }

    #[test]
    fn aggregated_signatures_check_against_the_summed_keys() {
        let keys: Vec<BlsSecretKey> = (0..3u8).map(|i| BlsSecretKey::from_seed(&[i; 32])).collect();
        let sigs: Vec<[u8; 48]> = keys.iter().map(|k| k.sign(b"block")).collect();
        let pks: Vec<BlsPublicKey> = keys.iter().map(BlsSecretKey::public_key).collect();
        let agg = aggregate_signatures(&sigs).unwrap();
        assert!(verify(&aggregate_public_keys(&pks), b"block", &agg));
        assert!(!verify(&aggregate_public_keys(&pks[..2]), b"block", &agg), "a missing signer");
        let two = aggregate_signatures(&sigs[..2]).unwrap();
        assert!(!verify(&aggregate_public_keys(&pks), b"block", &two), "a claimed signer who did not sign");
        assert!(aggregate_signatures(&[[0u8; 48]]).is_none(), "not a point");
    }

    #[test]
    fn deterministic_keys() {
        let a = BlsSecretKey::from_seed(&[9; 32]);
        let b = BlsSecretKey::from_seed(&[9; 32]);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.sign(b"m"), b.sign(b"m"));
        assert_ne!(
            a.public_key(),
            BlsSecretKey::from_seed(&[8; 32]).public_key()
        );
        let c = BlsSecretKey::from_scalar(*a.scalar());
        assert_eq!(c.public_key(), a.public_key());
    }

    #[test]
    fn der_round_trip() {
        let pk = BlsSecretKey::from_seed(&[3; 32]).public_key();
        let der = pk.to_der();
        assert_eq!(der.len(), 133);
        assert_eq!(
            hex::encode(&der[..37]),
            "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100"
        );
        assert_eq!(BlsPublicKey::from_der(&der).unwrap(), pk);
        assert!(BlsPublicKey::from_der(&der[1..]).is_err());
        let mut bad = der.clone();
        bad[40] ^= 0xff;
        assert!(BlsPublicKey::from_der(&bad).is_err());
    }

    #[test]
    fn mainnet_root_key_parses() {
        // The IC mainnet root key (public, well known).
        let der = hex::decode(concat!(
            "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100814",
            "c0e6ec71fab583b08bd81373c255c3c371b2e84863c98a4f1e08b74235d14fb5d9c0cd546d968",
            "5f913a0c0b2cc5341583bf4b4392e467db96d65b9bb4cb717112f8472e0d5a4d14505ffd7484",
            "b01291091c5f87b98883463f98091a0baaae"
        ))
        .unwrap();
        assert!(BlsPublicKey::from_der(&der).is_ok());
    }
}
