//! The ingress pool (accepted calls waiting for the next round) and the ingress history
//! (what became of every call, readable under `/request_status/<id>` until it is pruned).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tabnet_types::{Principal, UserError};

use crate::envelope::MAX_INGRESS_TTL_NANOS;

pub type RequestId = [u8; 32];

/// A call accepted into the pool: what execution needs to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressMessage {
    pub request_id: RequestId,
    pub sender: Principal,
    pub canister_id: Principal,
    pub method_name: String,
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    pub ingress_expiry: u64,
    /// The effective canister id the call was submitted for (read_state authorization).
    pub effective_canister_id: Principal,
}

/// Where a call is in its life, as `/request_status/<id>/status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngressState {
    Received,
    Processing,
    Replied(#[serde(with = "serde_bytes")] Vec<u8>),
    Rejected { reject_code: u32, reject_message: String, error_code: Option<String> },
    /// The response was forgotten but the id is remembered to prevent replay.
    Done,
}

impl IngressState {
    pub fn name(&self) -> &'static str {
        match self {
            IngressState::Received => "received",
            IngressState::Processing => "processing",
            IngressState::Replied(_) => "replied",
            IngressState::Rejected { .. } => "rejected",
            IngressState::Done => "done",
        }
    }
    pub fn is_terminal(&self) -> bool {
        matches!(self, IngressState::Replied(_) | IngressState::Rejected { .. } | IngressState::Done)
    }
    pub fn rejected(error: &UserError) -> Self {
        IngressState::Rejected {
            reject_code: error.reject_code() as u32,
            reject_message: error.message.clone(),
            error_code: Some(error.code.to_string()),
        }
    }
}

/// One entry of the ingress history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressStatus {
    pub state: IngressState,
    pub sender: Principal,
    pub effective_canister_id: Principal,
    pub ingress_expiry: u64,
    /// Time of the last change of state.
    pub updated_at: u64,
}

impl IngressStatus {
    /// When the entry may be forgotten: never before its expiry (replay protection), and a
    /// response stays readable for a full TTL after it was produced.
    pub fn prune_after(&self) -> u64 {
        if self.state.is_terminal() {
            self.ingress_expiry.max(self.updated_at.saturating_add(MAX_INGRESS_TTL_NANOS))
        } else {
            self.ingress_expiry
        }
    }
}

/// Calls accepted but not yet handed to execution, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct IngressPool {
    messages: Vec<IngressMessage>,
}

impl IngressPool {
    pub fn push(&mut self, message: IngressMessage) {
        self.messages.push(message);
    }
    pub fn contains(&self, id: &RequestId) -> bool {
        self.messages.iter().any(|m| &m.request_id == id)
    }
    pub fn len(&self) -> usize {
        self.messages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
    /// Takes every message still valid at `now`; the expired ones are returned separately.
    pub fn take(&mut self, now: u64) -> (Vec<IngressMessage>, Vec<IngressMessage>) {
        std::mem::take(&mut self.messages).into_iter().partition(|m| m.ingress_expiry >= now)
    }
}

/// The ingress history: request id → status. Entries changed since the last persist are
/// remembered so that only they are written.
#[derive(Clone, Debug, Default)]
pub struct IngressHistory {
    entries: BTreeMap<RequestId, IngressStatus>,
    /// Changed since the last `take_dirty` (to persist): `false` if removed.
    dirty: BTreeMap<RequestId, bool>,
    /// Changed since the last `take_changed` (to certify).
    changed: BTreeSet<RequestId>,
}

impl IngressHistory {
    pub fn get(&self, id: &RequestId) -> Option<&IngressStatus> {
        self.entries.get(id)
    }
    pub fn contains(&self, id: &RequestId) -> bool {
        self.entries.contains_key(id)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&RequestId, &IngressStatus)> {
        self.entries.iter()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, id: RequestId, status: IngressStatus) {
        self.entries.insert(id, status);
        self.dirty.insert(id, true);
        self.changed.insert(id);
    }

    /// Moves an entry to `state` at `time`; unknown ids are ignored.
    pub fn set_state(&mut self, id: &RequestId, state: IngressState, time: u64) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.state = state;
            entry.updated_at = time;
            self.dirty.insert(*id, true);
            self.changed.insert(*id);
        }
    }

    /// Forgets entries whose time has passed.
    pub fn prune(&mut self, now: u64) {
        let expired: Vec<RequestId> =
            self.entries.iter().filter(|(_, s)| s.state != IngressState::Processing && s.prune_after() < now).map(|(id, _)| *id).collect();
        for id in expired {
            self.entries.remove(&id);
            self.dirty.insert(id, false);
            self.changed.insert(id);
        }
    }

    /// Entries changed since the last call: `(id, Some(status))` to write, `(id, None)` to delete.
    pub fn take_dirty(&mut self) -> Vec<(RequestId, Option<IngressStatus>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(id, present)| (id, if present { self.entries.get(&id).cloned() } else { None }))
            .collect()
    }

    /// Marks an entry as persisted by the caller.
    pub fn take_dirty_one(&mut self, id: &RequestId) {
        self.dirty.remove(id);
    }

    /// Restores an entry read from the store (not marked dirty).
    pub fn restore(&mut self, id: RequestId, status: IngressStatus) {
        self.entries.insert(id, status);
        self.changed.insert(id);
    }

    /// Entries changed, added or removed since the last call, with their status now.
    pub fn take_changed(&mut self) -> Vec<(RequestId, Option<&IngressStatus>)> {
        std::mem::take(&mut self.changed).into_iter().map(|id| (id, self.entries.get(&id))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: IngressState, expiry: u64, updated: u64) -> IngressStatus {
        IngressStatus {
            state,
            sender: Principal::anonymous(),
            effective_canister_id: Principal::management_canister(),
            ingress_expiry: expiry,
            updated_at: updated,
        }
    }

    #[test]
    fn history_prunes_after_expiry_and_retention_but_never_processing() {
        let mut h = IngressHistory::default();
        h.insert([1; 32], status(IngressState::Received, 100, 0));
        h.insert([2; 32], status(IngressState::Processing, 100, 0));
        h.insert([3; 32], status(IngressState::Replied(vec![1]), 100, 50));
        h.take_dirty();
        h.prune(101);
        assert!(!h.contains(&[1; 32]));
        assert!(h.contains(&[2; 32]));
        // A reply stays readable for a TTL after it was produced.
        assert!(h.contains(&[3; 32]));
        h.prune(50 + MAX_INGRESS_TTL_NANOS + 1);
        assert!(!h.contains(&[3; 32]));
        let dirty = h.take_dirty();
        assert_eq!(dirty.len(), 2);
        assert!(dirty.iter().all(|(_, s)| s.is_none()));
    }

    #[test]
    fn pool_drops_expired_messages() {
        let mut pool = IngressPool::default();
        let msg = |id: u8, expiry| IngressMessage {
            request_id: [id; 32],
            sender: Principal::anonymous(),
            canister_id: Principal::management_canister(),
            method_name: "m".into(),
            arg: vec![],
            ingress_expiry: expiry,
            effective_canister_id: Principal::management_canister(),
        };
        pool.push(msg(1, 10));
        pool.push(msg(2, 20));
        assert!(pool.contains(&[1; 32]));
        let (valid, expired) = pool.take(15);
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].request_id, [2; 32]);
        assert_eq!(expired.len(), 1);
        assert!(pool.is_empty());
    }
}
