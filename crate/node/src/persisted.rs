//! The records of what consensus asked this node to persist: what it signed (it must never
//! contradict itself after a restart), the finalized blocks it can still prove to peers behind
//! it, and its latest catch-up package — by height, so that what consensus forgets is deleted.

use std::collections::{BTreeMap, BTreeSet};

use tabnet_consensus::{Artifact, Height};

use crate::store::{Record, Replicated};

/// `consensus/persisted/<height>/<digest>`: one artifact each.
pub const PREFIX_PERSISTED: &str = "consensus/persisted/";

pub struct Persisted {
    keys: BTreeMap<Height, BTreeSet<String>>,
    /// Records no longer needed, deleted with the next write.
    pub forgotten: Vec<String>,
}

impl Persisted {
    /// Reads the records back: the artifacts, for consensus's `Start::persisted`.
    pub fn load(replica: &impl Replicated) -> Result<(Self, Vec<Artifact>), String> {
        let mut persisted = Persisted { keys: BTreeMap::new(), forgotten: Vec::new() };
        let mut artifacts = Vec::new();
        for (key, bytes) in replica.records(PREFIX_PERSISTED)? {
            let artifact: Artifact = ciborium::from_reader(bytes.as_slice()).map_err(|e| format!("bad record {key}: {e}"))?;
            persisted.keys.entry(artifact.height()).or_default().insert(key);
            artifacts.push(artifact);
        }
        Ok((persisted, artifacts))
    }

    /// The record to write for `artifact`, unless it is stored already. The same artifact always
    /// gets the same key, so persisting it again writes nothing.
    pub fn record(&mut self, artifact: &Artifact) -> Option<Record> {
        let bytes = crate::cbor(artifact);
        let height = artifact.height();
        let key = format!("{PREFIX_PERSISTED}{height:020}/{}", hex::encode(&tabnet_crypto::sha256(&bytes)[..12]));
        self.keys.entry(height).or_default().insert(key.clone()).then_some((key, bytes))
    }

    pub fn forget_below(&mut self, height: Height) {
        let kept = self.keys.split_off(&height);
        let old = std::mem::replace(&mut self.keys, kept);
        self.forgotten.extend(old.into_values().flatten());
    }
}
