//! Threshold BLS12-381 signatures (the subnet's keys): any `threshold` of the `n` nodes' signature
//! shares on a message combine into one ordinary BLS signature under the subnet's public key —
//! the same bytes whichever shares were used, since BLS signatures are unique.
//!
//! Keys come from a trusted dealer for now (a seeded Shamir sharing; the real DKG comes later):
//! a random polynomial `p` of degree `threshold − 1` over the scalar field; the group secret is
//! `p(0)`, node `i` holds `p(i + 1)`. Shares are signatures with those secrets, so each checks
//! against its node's public key like any BLS signature; combining is Lagrange interpolation at
//! 0 in the exponent.

use bls12_381::{G1Affine, G1Projective, Scalar};
use sha2::Digest;

use crate::bls::{self, BlsPublicKey, BlsSecretKey};

/// What everyone knows about a sharing: the threshold, the group key and each node's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeySet {
    pub threshold: usize,
    pub group: BlsPublicKey,
    /// Node `i`'s public key share.
    pub shares: Vec<BlsPublicKey>,
}

/// A dealt sharing: the public part and every node's secret share (node `i` gets `shares[i]`).
pub struct Dealing {
    pub public: PublicKeySet,
    pub shares: Vec<BlsSecretKey>,
}

/// Deals a `threshold`-of-`nodes` sharing, deterministically from `seed`.
pub fn deal(threshold: usize, nodes: usize, seed: &[u8; 32]) -> Dealing {
    assert!(threshold >= 1 && threshold <= nodes, "a threshold of {threshold} among {nodes} nodes");
    let coefficients: Vec<Scalar> = (0..threshold as u64)
        .map(|k| {
            let mut h = sha2::Sha512::new();
            h.update(b"tabnet-threshold-dealer");
            h.update(seed);
            h.update(k.to_be_bytes());
            Scalar::from_bytes_wide(&h.finalize().into())
        })
        .collect();
    // p(x) by Horner's rule.
    let eval = |x: u64| coefficients.iter().rev().fold(Scalar::zero(), |acc, c| acc * Scalar::from(x) + c);
    let shares: Vec<BlsSecretKey> = (0..nodes as u64).map(|i| BlsSecretKey::from_scalar(eval(i + 1))).collect();
    let public = PublicKeySet {
        threshold,
        group: BlsSecretKey::from_scalar(coefficients[0]).public_key(),
        shares: shares.iter().map(BlsSecretKey::public_key).collect(),
    };
    Dealing { public, shares }
}

/// A node's signature share on `msg`, made with its secret share.
pub fn sign_share(share: &BlsSecretKey, msg: &[u8]) -> [u8; 48] {
    share.sign(msg)
}

/// Whether `sig` is node `index`'s valid share on `msg`.
pub fn verify_share(keys: &PublicKeySet, index: usize, msg: &[u8], sig: &[u8]) -> bool {
    keys.shares.get(index).is_some_and(|pk| bls::verify(pk, msg, sig))
}

/// Combines shares `(node index, share)` into the group's signature. Uses the first
/// `threshold` shares from distinct nodes; the caller verifies shares first (an invalid share
/// yields a signature that does not verify, not an error).
pub fn combine(keys: &PublicKeySet, shares: &[(usize, [u8; 48])]) -> Result<[u8; 48], String> {
    let mut chosen: Vec<(u64, G1Affine)> = Vec::with_capacity(keys.threshold);
    for (index, sig) in shares {
        if *index >= keys.shares.len() {
            return Err(format!("no node {index} in a subnet of {}", keys.shares.len()));
        }
        let x = *index as u64 + 1;
        if chosen.iter().any(|(seen, _)| *seen == x) {
            continue;
        }
        let point = Option::<G1Affine>::from(G1Affine::from_compressed(sig))
            .ok_or_else(|| format!("the share of node {index} is not a G1 point"))?;
        chosen.push((x, point));
        if chosen.len() == keys.threshold {
            break;
        }
    }
    if chosen.len() < keys.threshold {
        return Err(format!("{} shares from distinct nodes, {} needed", chosen.len(), keys.threshold));
    }
    let terms: Vec<(G1Affine, Scalar)> =
        chosen.iter().map(|(x, point)| (*point, lagrange_at_zero(*x, chosen.iter().map(|(other, _)| *other)))).collect();
    Ok(G1Affine::from(sum_of_multiples(&terms)).to_compressed())
}

/// Σ kᵢ·Pᵢ, the doublings shared (Straus's method, 4-bit windows from the top): about 256
/// doublings and 78 additions a point, where one `P * k` alone takes 255 doublings and 255
/// additions (it is constant-time, for secret scalars; these scalars and points are public).
fn sum_of_multiples(terms: &[(G1Affine, Scalar)]) -> G1Projective {
    // For each point, its multiples 0·P to 15·P.
    let tables: Vec<[G1Projective; 16]> = terms
        .iter()
        .map(|(point, _)| {
            let mut table = [G1Projective::identity(); 16];
            for k in 1..16 {
                table[k] = table[k - 1] + point;
            }
            table
        })
        .collect();
    let scalars: Vec<[u8; 32]> = terms.iter().map(|(_, k)| k.to_bytes()).collect(); // little-endian
    let mut sum = G1Projective::identity();
    for byte in (0..32).rev() {
        for shift in [4, 0] {
            for _ in 0..4 {
                sum = sum.double();
            }
            for (table, scalar) in tables.iter().zip(&scalars) {
                let window = (scalar[byte] >> shift) & 0xf;
                if window != 0 {
                    sum += table[window as usize];
                }
            }
        }
    }
    sum
}

/// The Lagrange coefficient of the point at `x` for interpolating at 0 from `xs` (which holds
/// `x`): the product over the other `x_j` of `x_j / (x_j − x)`.
fn lagrange_at_zero(x: u64, xs: impl Iterator<Item = u64>) -> Scalar {
    let (mut numerator, mut denominator) = (Scalar::one(), Scalar::one());
    for other in xs.filter(|o| *o != x) {
        numerator *= Scalar::from(other);
        denominator *= Scalar::from(other) - Scalar::from(x);
    }
    numerator * denominator.invert().expect("distinct points: the denominator is not zero")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_of_shares_makes_the_same_valid_signature() {
        for (n, t) in [(1, 1), (4, 2), (4, 3), (7, 5), (13, 9)] {
            let dealing = deal(t, n, &[n as u8; 32]);
            let msg = b"\x0ftabnet-beacon height 7";
            let shares: Vec<(usize, [u8; 48])> = (0..n).map(|i| (i, sign_share(&dealing.shares[i], msg))).collect();
            for (i, sig) in &shares {
                assert!(verify_share(&dealing.public, *i, msg, sig));
                if n > 1 {
                    assert!(!verify_share(&dealing.public, (*i + 1) % n, msg, sig), "a share is its own node's only");
                }
            }
            let first = combine(&dealing.public, &shares[..t]).unwrap();
            let last = combine(&dealing.public, &shares[n - t..]).unwrap();
            assert_eq!(first, last, "n={n} t={t}: unique signature whichever shares");
            assert!(bls::verify(&dealing.public.group, msg, &first));
            assert!(!bls::verify(&dealing.public.group, b"another message", &first));
        }
    }

    #[test]
    fn the_shared_doublings_sum_as_separate_multiplications_do() {
        let points: Vec<G1Affine> = (1..=4u64).map(|k| G1Affine::from(G1Affine::generator() * Scalar::from(k * 7919))).collect();
        let scalars = [Scalar::zero(), Scalar::one(), -Scalar::one(), lagrange_at_zero(2, [1, 2, 5].into_iter())];
        for n in 0..=4 {
            let terms: Vec<(G1Affine, Scalar)> = points.iter().copied().zip(scalars.iter().copied()).take(n).collect();
            let expected = terms.iter().fold(G1Projective::identity(), |acc, (p, k)| acc + p * k);
            assert_eq!(G1Affine::from(sum_of_multiples(&terms)), G1Affine::from(expected), "{n} terms");
        }
    }

    #[test]
    fn too_few_or_repeated_or_forged_shares_do_not_make_a_signature() {
        let dealing = deal(3, 4, &[9; 32]);
        let msg = b"notarize block 12";
        let share = |i: usize| (i, sign_share(&dealing.shares[i], msg));
        assert!(combine(&dealing.public, &[share(0), share(1)]).is_err());
        assert!(combine(&dealing.public, &[share(0), share(1), share(1)]).is_err(), "a node counts once");
        assert!(combine(&dealing.public, &[share(0), share(1), (7, share(2).1)]).is_err(), "no node 7");
        // A lying node signs with a key of its own: its share fails, and so does the result.
        let forged = (2, BlsSecretKey::from_seed(&[1; 32]).sign(msg));
        assert!(!verify_share(&dealing.public, 2, msg, &forged.1));
        let bad = combine(&dealing.public, &[share(0), share(1), forged]).unwrap();
        assert!(!bls::verify(&dealing.public.group, msg, &bad));
        // Different seeds, different subnets.
        assert_ne!(deal(3, 4, &[8; 32]).public.group, dealing.public.group);
    }
}
