//! The IC replica as the node's state machine: how a call travels in consensus (its envelope
//! wrapped with the effective canister id from its URL), what consensus checks of it before it
//! enters the pool, and [`Replicated`] for [`Replica`].

use tabnet_consensus::{Batch, Hash, Height, IngressCheck, Time};
use tabnet_replica::envelope::{self, RequestType};
use tabnet_replica::{authenticate_call, Replica, Store};
use tabnet_types::Principal;

use crate::store::{Record, Replicated};

/// In consensus, an ingress message is the call's CBOR envelope and the effective canister id
/// from its URL: `len(ecid) ‖ ecid ‖ envelope`.
pub fn wrap_call(envelope: &[u8], ecid: &Principal) -> Vec<u8> {
    let id = ecid.as_slice();
    let mut bytes = Vec::with_capacity(1 + id.len() + envelope.len());
    bytes.push(id.len() as u8);
    bytes.extend_from_slice(id);
    bytes.extend_from_slice(envelope);
    bytes
}

pub fn unwrap_call(bytes: &[u8]) -> Option<(Principal, &[u8])> {
    let len = *bytes.first()? as usize;
    let id = bytes.get(1..1 + len)?;
    Some((Principal::try_from_slice(id).ok()?, &bytes[1 + len..]))
}

/// What consensus asks of an ingress message before it enters the pool (submitted here or
/// gossiped by a peer): at most `max_bytes`, a call for its effective canister id, signed by
/// its sender, expiring within the IC's window around the node's time. (Execution checks the
/// signature again, the same way on every replica.)
pub struct CallCheck {
    pub max_bytes: usize,
}

impl IngressCheck for CallCheck {
    fn expiry(&self, bytes: &[u8]) -> Result<Time, String> {
        let (_, envelope) = unwrap_call(bytes).ok_or("not a wrapped call")?;
        let request = envelope::decode(envelope, RequestType::Call).map_err(|e| e.message)?;
        Ok(request.ingress_expiry / 1_000_000)
    }

    fn admit(&self, now: Time, bytes: &[u8]) -> Result<Time, String> {
        let (ecid, envelope) = unwrap_call(bytes).ok_or("not a wrapped call")?;
        if envelope.len() > self.max_bytes {
            return Err(format!("the call takes {} bytes; at most {} are allowed", envelope.len(), self.max_bytes));
        }
        authenticate_call(envelope, &ecid, now.saturating_mul(1_000_000)).map_err(|e| e.message)?;
        self.expiry(bytes)
    }
}

impl<S: Store> Replicated for Replica<S> {
    fn executed_height(&self) -> Height {
        Replica::executed_height(self)
    }

    fn execute(&mut self, batch: &Batch, records: &[Record], delete: &[String]) -> Result<Hash, String> {
        let calls: Vec<(Vec<u8>, Principal)> =
            batch.ingress.iter().filter_map(|i| unwrap_call(&i.bytes).map(|(ecid, envelope)| (envelope.to_vec(), ecid))).collect();
        self.delete_records(delete)?;
        // Block time is in ms; the replica counts ns.
        self.execute_batch(batch.block.time * 1_000_000, batch.randomness, &calls, records)
    }

    fn checkpoint(&mut self) -> Result<Vec<u8>, String> {
        Replica::checkpoint(self)
    }

    fn restore(&mut self, checkpoint: &[u8], records: &[Record], delete: &[String]) -> Result<Hash, String> {
        self.delete_records(delete)?;
        self.restore_checkpoint(checkpoint, records)
    }

    fn certify(&mut self, height: Height, signature: [u8; 48], record: Record) -> Result<bool, String> {
        let served = self.certify_with(height, signature);
        if served {
            self.stage_records(&[record])?;
        }
        Ok(served)
    }

    fn write_records(&mut self, records: &[Record], delete: &[String]) -> Result<(), String> {
        self.delete_records(delete)?;
        self.put_records(records)
    }

    fn records(&self, prefix: &str) -> Result<Vec<Record>, String> {
        Replica::records(self, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_travels_wrapped_with_its_effective_canister_id() {
        let ecid = Principal::from_text("rwlgt-iiaaa-aaaaa-aaaaa-cai").unwrap();
        let wrapped = wrap_call(b"envelope", &ecid);
        assert_eq!(unwrap_call(&wrapped), Some((ecid, &b"envelope"[..])));
        assert_eq!(unwrap_call(&[40, 1]), None);
    }
}
