//! Artifact pools. Everything received goes to the unvalidated section; what a node creates,
//! or what it has checked, is in the validated section. Components read the pools and return
//! [`Change`]s; only [`Pool::apply`] writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::artifact::{Aggregate, ArtifactId, Cup, Hash, Height, Ingress, Kind, NodeIndex, Proposal, Share, Sig, Time};

/// Shares of one kind and height, by content and signer.
pub type ShareGroups = BTreeMap<Hash, BTreeMap<NodeIndex, Sig>>;

#[derive(Default)]
pub struct Section {
    /// Proposals by height and block hash. Validated proposals carry their full payload.
    pub proposals: BTreeMap<Height, BTreeMap<Hash, Arc<Proposal>>>,
    pub shares: BTreeMap<(Kind, Height), ShareGroups>,
    pub aggregates: BTreeMap<(Kind, Height), BTreeMap<Hash, Aggregate>>,
    pub cups: BTreeMap<Height, Arc<Cup>>,
}

impl Section {
    pub fn share_groups(&self, kind: Kind, height: Height) -> Option<&ShareGroups> {
        self.shares.get(&(kind, height))
    }
    pub fn aggregate(&self, kind: Kind, height: Height, content: &Hash) -> Option<&Aggregate> {
        self.aggregates.get(&(kind, height))?.get(content)
    }
    pub fn aggregates_at(&self, kind: Kind, height: Height) -> impl Iterator<Item = &Aggregate> {
        self.aggregates.get(&(kind, height)).into_iter().flat_map(|m| m.values())
    }
    pub fn proposal(&self, height: Height, hash: &Hash) -> Option<&Arc<Proposal>> {
        self.proposals.get(&height)?.get(hash)
    }
    pub fn proposals_at(&self, height: Height) -> impl Iterator<Item = (&Hash, &Arc<Proposal>)> {
        self.proposals.get(&height).into_iter().flat_map(|m| m.iter())
    }
    pub fn has_share(&self, share: &Share) -> bool {
        self.shares.get(&(share.kind, share.height)).and_then(|g| g.get(&share.content)).is_some_and(|s| s.contains_key(&share.signer))
    }
    /// The contents `signer` signed shares of `kind` for at `height`.
    pub fn signed_by(&self, kind: Kind, height: Height, signer: NodeIndex) -> Vec<Hash> {
        self.share_groups(kind, height)
            .map(|g| g.iter().filter(|(_, s)| s.contains_key(&signer)).map(|(c, _)| *c).collect())
            .unwrap_or_default()
    }

    fn add_share(&mut self, share: Share) {
        self.shares.entry((share.kind, share.height)).or_default().entry(share.content).or_default().insert(share.signer, share.sig);
    }
    fn remove_share(&mut self, kind: Kind, height: Height, content: &Hash, signer: NodeIndex) {
        let key = (kind, height);
        if let Some(groups) = self.shares.get_mut(&key) {
            if let Some(signers) = groups.get_mut(content) {
                signers.remove(&signer);
                if signers.is_empty() {
                    groups.remove(content);
                }
            }
            if groups.is_empty() {
                self.shares.remove(&key);
            }
        }
    }
    fn add_aggregate(&mut self, a: Aggregate) {
        self.aggregates.entry((a.kind, a.height)).or_default().insert(a.content, a);
    }
    fn remove_aggregate(&mut self, kind: Kind, height: Height, content: &Hash) {
        if let Some(m) = self.aggregates.get_mut(&(kind, height)) {
            m.remove(content);
            if m.is_empty() {
                self.aggregates.remove(&(kind, height));
            }
        }
    }
    fn remove_proposal(&mut self, height: Height, hash: &Hash) -> Option<Arc<Proposal>> {
        let m = self.proposals.get_mut(&height)?;
        let p = m.remove(hash);
        if m.is_empty() {
            self.proposals.remove(&height);
        }
        p
    }
    /// Drops everything below `height`.
    fn purge_below(&mut self, height: Height) {
        self.shares.retain(|k, _| k.1 >= height);
        self.aggregates.retain(|k, _| k.1 >= height);
        self.proposals = self.proposals.split_off(&height);
        self.cups = self.cups.split_off(&height);
    }
    /// Drops shares of `kind` below `height` (and aggregates too if `aggregates`).
    fn purge_kind_below(&mut self, kind: Kind, height: Height, aggregates: bool) {
        let keep = |k: &(Kind, Height)| k.0 != kind || k.1 >= height;
        self.shares.retain(|k, _| keep(k));
        if aggregates {
            self.aggregates.retain(|k, _| keep(k));
        }
    }
}

/// Validated ingress, oldest first, with what block making and purging need to know.
#[derive(Default)]
pub struct IngressPool {
    messages: HashMap<Hash, (Arc<Ingress>, Time, u64)>,
    /// Arrival order (sequence number → id): block makers take the oldest first.
    order: BTreeMap<u64, Hash>,
    next_seq: u64,
}

impl IngressPool {
    pub fn get(&self, id: &Hash) -> Option<&Arc<Ingress>> {
        self.messages.get(id).map(|(i, _, _)| i)
    }
    pub fn contains(&self, id: &Hash) -> bool {
        self.messages.contains_key(id)
    }
    /// The message and its expiry.
    pub fn entry(&self, id: &Hash) -> Option<(&Arc<Ingress>, Time)> {
        self.messages.get(id).map(|(i, e, _)| (i, *e))
    }
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    pub fn insert(&mut self, id: Hash, ingress: Arc<Ingress>, expiry: Time) -> bool {
        if self.messages.contains_key(&id) {
            return false;
        }
        self.messages.insert(id, (ingress, expiry, self.next_seq));
        self.order.insert(self.next_seq, id);
        self.next_seq += 1;
        true
    }
    pub fn remove(&mut self, id: &Hash) {
        if let Some((_, _, seq)) = self.messages.remove(id) {
            self.order.remove(&seq);
        }
    }
    /// Oldest first: `(id, message, expiry)`.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Arc<Ingress>, Time)> {
        self.order.values().map(|id| {
            let (i, expiry, _) = &self.messages[id];
            (id, i, *expiry)
        })
    }
    pub fn remove_expired(&mut self, before: Time) -> usize {
        let expired: Vec<Hash> = self.messages.iter().filter(|(_, (_, e, _))| *e < before).map(|(id, _)| *id).collect();
        for id in &expired {
            self.remove(id);
        }
        expired.len()
    }
}

/// What a component wants done.
#[derive(Debug)]
pub enum Change {
    /// Created here: into the validated section, and out to the peers.
    Create(Created),
    /// Checked: from unvalidated to validated.
    ValidateProposal(Arc<Proposal>),
    ValidateAggregate(Aggregate),
    ValidateShare(Share),
    ValidateCup(Arc<Cup>),
    /// Dropped from the unvalidated section (invalid or no longer useful).
    DropProposal(Height, Hash),
    DropShare(Share),
    DropAggregate(Kind, Height, Hash),
    DropCup(Height),
    /// Dropped because its signature does not verify: its sender is charged for it.
    RejectAggregate(Kind, Height, Hash),
    RejectCup(Height),
    /// Fetch this from that peer (a proposal needs it).
    Fetch(ArtifactId, NodeIndex),
    /// Forget what lies below this height (validated and unvalidated), keeping ingress.
    PurgeBelow(Height),
    /// Drop shares of `kind` below `height`, which can no longer matter.
    PurgeKindBelow(Kind, Height),
}

#[derive(Debug)]
pub enum Created {
    Proposal(Arc<Proposal>),
    Share(Share),
    Aggregate(Aggregate),
    Cup(Arc<Cup>),
}

#[derive(Default)]
pub struct Pool {
    pub validated: Section,
    pub unvalidated: Section,
    /// Who sent each unvalidated proposal (to fetch its missing ingress from).
    pub proposal_senders: HashMap<Hash, NodeIndex>,
    /// Who sent each unvalidated aggregate and catch-up package (charged if it is bad).
    pub aggregate_senders: HashMap<(Kind, Height, Hash), NodeIndex>,
    pub cup_senders: BTreeMap<Height, NodeIndex>,
    pub disqualified: BTreeSet<(Height, NodeIndex)>,
}

impl Pool {
    /// Applies one change to the pools (the node performs its effects outside).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Create(Created::Proposal(p)) | Change::ValidateProposal(p) => {
                let (height, hash) = (p.block.height, p.block.hash());
                self.unvalidated.remove_proposal(height, &hash);
                self.proposal_senders.remove(&hash);
                // A second valid block of one maker at one height: none of its blocks there count.
                if self.validated.proposals_at(height).any(|(other, q)| q.block.maker == p.block.maker && *other != hash) {
                    self.disqualified.insert((height, p.block.maker));
                }
                self.validated.proposals.entry(height).or_default().insert(hash, p.clone());
            }
            Change::Create(Created::Share(s)) | Change::ValidateShare(s) => {
                self.unvalidated.remove_share(s.kind, s.height, &s.content, s.signer);
                self.validated.add_share(s.clone());
            }
            Change::Create(Created::Aggregate(a)) | Change::ValidateAggregate(a) => {
                self.unvalidated.remove_aggregate(a.kind, a.height, &a.content);
                self.aggregate_senders.remove(&(a.kind, a.height, a.content));
                // The shares that made it are no longer needed.
                if let Some(groups) = self.unvalidated.shares.get_mut(&(a.kind, a.height)) {
                    groups.remove(&a.content);
                }
                self.validated.add_aggregate(a.clone());
            }
            Change::Create(Created::Cup(c)) | Change::ValidateCup(c) => {
                self.unvalidated.cups.remove(&c.height());
                self.cup_senders.remove(&c.height());
                self.validated.cups.insert(c.height(), c.clone());
            }
            Change::DropProposal(height, hash) => {
                self.unvalidated.remove_proposal(*height, hash);
                self.proposal_senders.remove(hash);
            }
            Change::DropShare(s) => self.unvalidated.remove_share(s.kind, s.height, &s.content, s.signer),
            Change::DropAggregate(kind, height, content) | Change::RejectAggregate(kind, height, content) => {
                self.unvalidated.remove_aggregate(*kind, *height, content);
                self.aggregate_senders.remove(&(*kind, *height, *content));
            }
            Change::DropCup(height) | Change::RejectCup(height) => {
                self.unvalidated.cups.remove(height);
                self.cup_senders.remove(height);
            }
            Change::Fetch(..) => {}
            Change::PurgeBelow(height) => {
                self.validated.purge_below(*height);
                self.unvalidated.purge_below(*height);
                let unvalidated = &self.unvalidated;
                self.proposal_senders.retain(|hash, _| unvalidated.proposals.values().any(|m| m.contains_key(hash)));
                self.disqualified = self.disqualified.split_off(&(*height, 0));
                self.forget_senders();
            }
            Change::PurgeKindBelow(kind, height) => {
                // Validated aggregates stay until the next catch-up package (catch-up serves them).
                self.validated.purge_kind_below(*kind, *height, false);
                self.unvalidated.purge_kind_below(*kind, *height, true);
                self.forget_senders();
            }
        }
    }

    /// Forgets the senders of what is no longer pending.
    fn forget_senders(&mut self) {
        let unvalidated = &self.unvalidated;
        self.aggregate_senders.retain(|(kind, height, content), _| unvalidated.aggregate(*kind, *height, content).is_some());
        self.cup_senders.retain(|height, _| unvalidated.cups.contains_key(height));
    }

    /// How many aggregates of `kind` at `height` from `sender` wait unvalidated.
    pub fn pending_aggregates_from(&self, sender: NodeIndex, kind: Kind, height: Height) -> usize {
        self.unvalidated.aggregates_at(kind, height).filter(|a| self.aggregate_senders.get(&(kind, height, a.content)) == Some(&sender)).count()
    }
}
