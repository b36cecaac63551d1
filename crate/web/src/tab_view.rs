//! What a tab's node saw of its subnet, for the page's subnet view (`TabSubnet::view`, the
//! same JSON as the simulated subnet's): the messages it sent and received lately, drawn as
//! travelling; the rounds as it saw them; its own rates. Cheap: a few small queues, updated
//! as messages pass, trimmed as they go.

use std::collections::{BTreeMap, VecDeque};

use tabnet_consensus::{Artifact, ConsensusNode, Hash, Height, Kind, Message, NodeIndex, Time};
use tabnet_node::tab_signal::MAX_TAB_NODES;
use tabnet_node::view::{message_kind, Flight, ProposalAt, Round, ShareAt};

/// How long (ms) a message is drawn travelling, from when it was sent or received.
pub(crate) const FLIGHT_MS: Time = 200;
/// Messages drawn at most (the newest).
pub(crate) const FLIGHTS_SHOWN: usize = 300;
/// The window (ms) rates are measured over.
pub(crate) const RATE_WINDOW: Time = 5_000;
/// Heights whose rounds are kept, and shown.
const ROUNDS_KEPT: u64 = 30;
pub(crate) const ROUNDS_SHOWN: usize = 6;
/// A round notes at most this many proposals (each maker's block, and an equivocator's second)
/// and one share of each kind per member: a peer's frames are noted before consensus checks
/// them, so a lying peer could otherwise grow a round without bound.
const PROPOSALS_NOTED: usize = 2 * MAX_TAB_NODES;

#[derive(Default)]
pub(crate) struct Watch {
    pub rounds: BTreeMap<Height, Round>,
    pub flights: VecDeque<Flight>,
    /// Messages sent or received in the window: (when, messages, bytes sent).
    pub traffic: VecDeque<(Time, u64, u64)>,
    /// When each height finalized here, in the window.
    pub finalized_at: VecDeque<Time>,
    /// From first seeing a block to finalizing it (ms), the last 20.
    pub finality: VecDeque<Time>,
    pub calls_executed: u64,
    pub state_hash: Option<Hash>,
    /// The heights seen last.
    notarized: Height,
    finalized: Height,
}

impl Watch {
    fn round(&mut self, height: Height) -> &mut Round {
        self.rounds.entry(height).or_insert_with(|| Round::new(height))
    }

    /// A message this node sent to `to` (each a peer it went to) or received from `to[0]`:
    /// drawn travelling, and its part in the rounds noted. `(finalized, notarized)`: this node's
    /// heights, for which heights are plausible (a peer's junk heights make no rounds).
    #[allow(clippy::too_many_arguments)]
    pub fn message(&mut self, now: Time, me: NodeIndex, peers: &[NodeIndex], received: bool, message: &Message, bytes: u64, (finalized, notarized): (Height, Height)) {
        if peers.is_empty() {
            return;
        }
        let (kind, height) = message_kind(message);
        for &peer in peers {
            let (from, to) = if received { (peer, me) } else { (me, peer) };
            self.flights.push_back(Flight { from, to, kind, height, sent: now, arrives: now + FLIGHT_MS });
        }
        while self.flights.front().is_some_and(|f| f.arrives <= now) || self.flights.len() > FLIGHTS_SHOWN {
            self.flights.pop_front();
        }
        let copies = peers.len() as u64;
        self.traffic.push_back((now, copies, if received { 0 } else { bytes * copies }));
        let Message::Push(artifact) = message else { return };
        let lowest = finalized.saturating_sub(ROUNDS_KEPT);
        let highest = notarized + 2;
        if !(lowest..=highest).contains(&height) {
            return;
        }
        match artifact {
            Artifact::Proposal(p) => {
                let hash = p.block.hash();
                let round = self.round(height);
                if round.proposals.len() < PROPOSALS_NOTED && p.block.maker < MAX_TAB_NODES && !round.proposals.iter().any(|x| x.hash == hash) {
                    round.proposals.push(ProposalAt { rank: p.block.rank, maker: p.block.maker, at: now, hash });
                }
            }
            Artifact::Share(s) if matches!(s.kind, Kind::Notarization | Kind::Finalization) => {
                let round = self.round(height);
                let shares = if s.kind == Kind::Notarization { &mut round.notarization_shares } else { &mut round.finalization_shares };
                if s.signer < MAX_TAB_NODES && !shares.iter().any(|x| x.node == s.signer) {
                    shares.push(ShareAt { node: s.signer, at: now });
                }
            }
            Artifact::Aggregate(a) => match a.kind {
                Kind::Beacon => {
                    self.round(height + 1).beacon.get_or_insert(now);
                }
                Kind::Notarization => {
                    self.round(height).notarized.get_or_insert(now);
                }
                Kind::Finalization => {
                    self.round(height).finalized.get_or_insert(now);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// After a turn: what moved in this node's consensus.
    pub fn after_turn(&mut self, now: Time, consensus: &ConsensusNode) {
        let (notarized, finalized) = (consensus.notarized_height(), consensus.finalized_height());
        if notarized > self.notarized {
            for h in (self.notarized + 1).max(notarized.saturating_sub(ROUNDS_KEPT))..=notarized {
                self.round(h).notarized.get_or_insert(now);
            }
            self.notarized = notarized;
        }
        if finalized > self.finalized {
            for h in (self.finalized + 1).max(finalized.saturating_sub(ROUNDS_KEPT))..=finalized {
                self.finalized_at.push_back(now);
                let round = self.round(h);
                round.finalized.get_or_insert(now);
                let seen = consensus.finalized_hash(h).and_then(|hash| round.proposals.iter().find(|p| p.hash == hash)).map(|p| p.at);
                if let Some(seen) = seen {
                    self.finality.push_back(now.saturating_sub(seen));
                    if self.finality.len() > 20 {
                        self.finality.pop_front();
                    }
                }
            }
            self.finalized = finalized;
            self.rounds = self.rounds.split_off(&finalized.saturating_sub(ROUNDS_KEPT));
        }
        // The beacon that ranks the next height's makers.
        let next = notarized + 1;
        if self.rounds.get(&next).is_none_or(|r| r.beacon.is_none()) && consensus.beacon_at(notarized).is_some() {
            self.round(next).beacon.get_or_insert(now);
        }
        let from = now.saturating_sub(RATE_WINDOW);
        while self.traffic.front().is_some_and(|t| t.0 < from) {
            self.traffic.pop_front();
        }
        while self.finalized_at.front().is_some_and(|t| *t < from) {
            self.finalized_at.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tabnet_consensus::{Block, Proposal, Share};

    use super::*;

    #[test]
    fn a_lying_peer_cannot_grow_a_round_without_bound() {
        let mut watch = Watch::default();
        for k in 0..10_000u64 {
            // Distinct blocks of one plausible height, and shares in made-up signers' names.
            let block = Block { parent: [0; 32], height: 5, rank: 0, maker: (k % 3) as NodeIndex, time: k, ingress: Vec::new() };
            let proposal = Message::Push(Artifact::Proposal(Arc::new(Proposal { block, signature: [0; 64], payload: None })));
            watch.message(k, 0, &[1], true, &proposal, 100, (4, 4));
            let share = Share { kind: Kind::Notarization, height: 5, content: [0; 32], signer: k as NodeIndex, sig: [0; 48] };
            watch.message(k, 0, &[1], true, &Message::Push(Artifact::Share(share)), 100, (4, 4));
        }
        let round = &watch.rounds[&5];
        assert_eq!(round.proposals.len(), PROPOSALS_NOTED);
        assert_eq!(round.notarization_shares.len(), MAX_TAB_NODES);
        assert!(watch.flights.len() <= FLIGHTS_SHOWN);
    }
}
