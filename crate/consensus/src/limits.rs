//! Per-peer rate limits, sans-IO: time (ms) is an input, the driver feeds its clock.
//!
//! Two uses: what a peer may make this node read ([`Rates::FRAMES`], at the transport edge,
//! before a frame is decoded) and what it may make this node answer ([`Rates::REQUESTS`]:
//! blocks, ingress, catch-ups, state-sync manifests and chunks, each charged what the answer
//! weighs). Excess is dropped and counted; a peer that keeps exceeding its rate is shut out for
//! [`Rates::ban`].
//!
//! The rates are generous for honest peers. Measured in the simulator (`cargo run --release -p
//! tabnet-sim --example simulate -- --bytes 'seed=1 nodes=13 duration=10000 ingress=6000
//! size=600'`: 13 nodes, ~12 blocks a second of ~500 messages, clients spread over the nodes),
//! the busiest node sent one peer at most 812 frames and 1.0 MB in a second; with 500 messages
//! of 8 kB a second (advertised, fetched), 288 frames and 0.6 MB. A node that takes all the
//! subnet's clients relays every message itself: 13 times that, ~10,000 frames and ~13 MB a
//! second. [`Rates::FRAMES`] allows twice that and a burst of several seconds, so only a flood
//! meets it.

use crate::artifact::{NodeIndex, Time};

/// A token bucket in thousandths of a token, so that integer refills stay exact per ms.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: u64,
    /// Most milli-tokens held.
    cap: i64,
    level: i64,
    at: Time,
}

impl TokenBucket {
    /// A full bucket: `burst` tokens, refilled at `rate` per second.
    pub fn new(rate: u64, burst: u64, now: Time) -> Self {
        let cap = (burst.saturating_mul(1_000)).min(i64::MAX as u64) as i64;
        TokenBucket { rate, cap, level: cap, at: now }
    }

    fn refill(&mut self, now: Time) {
        if now > self.at {
            let added = (now - self.at).saturating_mul(self.rate).min(i64::MAX as u64) as i64;
            self.level = self.level.saturating_add(added).min(self.cap);
            self.at = now;
        }
    }

    /// Whether the bucket holds any credit; if so, `cost` tokens are taken (the level may go
    /// into debt, so one item larger than what is left still passes, and the next waits).
    pub fn take(&mut self, now: Time, cost: u64) -> bool {
        self.refill(now);
        if self.level <= 0 {
            return false;
        }
        self.level = self.level.saturating_sub(cost.saturating_mul(1_000).min(i64::MAX as u64) as i64);
        true
    }
}

/// What one peer may do per second: items (frames or requests) and their bytes, with bursts,
/// and how much excess it may send before it is shut out, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    pub items_per_second: u64,
    pub item_burst: u64,
    pub bytes_per_second: u64,
    pub byte_burst: u64,
    /// Items dropped beyond the rate that are forgiven per second…
    pub excess_per_second: u64,
    /// …and how many may pile up before the peer is shut out.
    pub excess_burst: u64,
    /// How long a shut-out peer stays out (ms).
    pub ban: Time,
}

impl Rates {
    /// Frames a peer sends this node (read at the edge). See the module comment for why.
    pub const FRAMES: Rates = Rates {
        items_per_second: 20_000,
        item_burst: 100_000,
        bytes_per_second: 32 << 20,
        byte_burst: 128 << 20,
        excess_per_second: 1_000,
        excess_burst: 20_000,
        ban: 10_000,
    };
    /// Requests a peer makes of this node, each charged the bytes of its answer. A node that
    /// missed a block's ingress asks for up to 1,000 messages at once; a syncing node fetches
    /// 1 MiB chunks from several peers at once: 16 MiB/s from each peer (so a 4 GiB state takes
    /// about a minute from 4 peers) while one peer cannot make this node read and send more.
    pub const REQUESTS: Rates = Rates {
        items_per_second: 5_000,
        item_burst: 20_000,
        bytes_per_second: 16 << 20,
        byte_burst: 64 << 20,
        excess_per_second: 1_000,
        excess_burst: 100_000,
        ban: 10_000,
    };
}

/// What to do with a peer's frame or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Take,
    /// Over the peer's rate: drop it.
    Drop,
    /// Over its rate for too long, or shut out: drop it and close the peer's connection.
    Disconnect,
}

struct Peer {
    items: TokenBucket,
    bytes: TokenBucket,
    excess: TokenBucket,
    banned_until: Time,
    dropped: u64,
    bans: u64,
}

/// The buckets of every peer of a subnet.
pub struct PeerLimits {
    rates: Rates,
    peers: Vec<Peer>,
}

impl PeerLimits {
    pub fn new(rates: Rates, peers: usize, now: Time) -> Self {
        let peer = || Peer {
            items: TokenBucket::new(rates.items_per_second, rates.item_burst, now),
            bytes: TokenBucket::new(rates.bytes_per_second, rates.byte_burst, now),
            excess: TokenBucket::new(rates.excess_per_second, rates.excess_burst, now),
            banned_until: 0,
            dropped: 0,
            bans: 0,
        };
        PeerLimits { rates, peers: (0..peers).map(|_| peer()).collect() }
    }

    /// Charges `peer` one item of `bytes` (for a request: what the answer weighs, known after
    /// the answer is made; the debt waits for the next).
    pub fn charge(&mut self, now: Time, peer: NodeIndex, bytes: u64) -> Verdict {
        let ban = self.rates.ban;
        let Some(p) = self.peers.get_mut(peer) else {
            return Verdict::Disconnect;
        };
        if now < p.banned_until {
            p.dropped += 1;
            return Verdict::Disconnect;
        }
        // Both buckets are asked (no short circuit would let bytes pass uncounted).
        let (items, bytes) = (p.items.take(now, 1), p.bytes.take(now, bytes));
        if items && bytes {
            return Verdict::Take;
        }
        p.dropped += 1;
        if p.excess.take(now, 1) {
            return Verdict::Drop;
        }
        p.banned_until = now + ban;
        p.bans += 1;
        Verdict::Disconnect
    }

    /// Whether `peer` has credit left and is not shut out (ask before making a costly answer;
    /// then [`PeerLimits::charge`] it).
    pub fn has_credit(&mut self, now: Time, peer: NodeIndex) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        p.items.refill(now);
        p.bytes.refill(now);
        now >= p.banned_until && p.items.level > 0 && p.bytes.level > 0
    }

    /// Whether `peer` is shut out at `now`.
    pub fn is_banned(&self, now: Time, peer: NodeIndex) -> bool {
        self.peers.get(peer).is_none_or(|p| now < p.banned_until)
    }

    /// Frames or requests of `peer` dropped so far.
    pub fn dropped(&self, peer: NodeIndex) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.dropped)
    }

    /// How many times `peer` was shut out.
    pub fn bans(&self, peer: NodeIndex) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.bans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Rates =
        Rates { items_per_second: 10, item_burst: 20, bytes_per_second: 1_000, byte_burst: 2_000, excess_per_second: 1, excess_burst: 5, ban: 3_000 };

    #[test]
    fn a_peer_gets_its_burst_then_its_rate() {
        let mut limits = PeerLimits::new(SMALL, 2, 0);
        let taken = (0..100).filter(|_| limits.charge(0, 1, 1) == Verdict::Take).count();
        assert_eq!(taken, 20, "the burst");
        // A second later, ten more.
        let taken = (0..100).filter(|_| limits.charge(1_000, 0, 1) == Verdict::Take).count();
        assert_eq!(taken, 20, "another peer has its own bucket");
        assert!(limits.dropped(0) > 0 && limits.dropped(1) > 0);
    }

    #[test]
    fn bytes_are_limited_too_and_a_large_item_runs_into_debt() {
        let mut limits = PeerLimits::new(SMALL, 1, 0);
        assert_eq!(limits.charge(0, 0, 10_000), Verdict::Take, "one large item passes on credit");
        assert_eq!(limits.charge(0, 0, 1), Verdict::Drop);
        // 10 s later the 8,000-byte debt is paid and credit is back.
        assert_eq!(limits.charge(8_000, 0, 1), Verdict::Drop);
        assert_eq!(limits.charge(8_100, 0, 1), Verdict::Take);
    }

    #[test]
    fn a_peer_that_keeps_exceeding_is_shut_out_for_a_while() {
        let mut limits = PeerLimits::new(SMALL, 1, 0);
        let verdicts: Vec<Verdict> = (0..40).map(|_| limits.charge(0, 0, 1)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Drop).count(), 5, "five excess items are forgiven");
        assert_eq!(verdicts[25], Verdict::Disconnect);
        assert!(limits.is_banned(2_999, 0) && !limits.is_banned(3_000, 0));
        assert_eq!(limits.charge(2_999, 0, 1), Verdict::Disconnect);
        assert_eq!(limits.charge(3_000, 0, 1), Verdict::Take, "back after the ban, with its bucket refilled");
        assert_eq!(limits.bans(0), 1);
    }
}
