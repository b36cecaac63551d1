//! The certified state tree of the spec ("The system state tree"), built after every round:
//!
//! ```text
//! /time                                            LEB128 ns
//! /request_status/<id>/{status,reply,reject_code,reject_message,error_code}
//! /canister/<id>/{certified_data,module_hash,controllers,metadata/<name>}
//! /subnet/<id>/{public_key,type,canister_ranges,node/<node>/public_key}
//! /canister_ranges/<subnet>/<first canister id of the shard>     (newer agents read this)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use ciborium::Value;
use tabnet_crypto::{CertifiedMap, LabeledTree};
use tabnet_execution::state::{ReplicatedState, CANISTER_RANGE_END};
use tabnet_types::{canister_id_from_index, Principal};

use crate::ingress::{IngressState, IngressStatus};

/// What the subnet part of the tree says about the subnet and its nodes.
#[derive(Clone, Debug)]
pub struct SubnetInfo {
    pub subnet_id: Principal,
    /// DER-encoded BLS public key (the root key: this subnet is its own root).
    pub public_key_der: Vec<u8>,
    /// This node.
    pub node_id: Principal,
    /// Every node of the subnet (this one included): its id and the DER-encoded Ed25519 key
    /// it signs query responses with. The same on every replica, so their trees agree.
    pub nodes: Vec<(Principal, Vec<u8>)>,
}

/// `/subnet/<id>/type`: one of the spec's "application", "system", "verified_application",
/// "cloud_engine". Tabnet's subnets host anyone's canisters and charge application fees.
pub const SUBNET_TYPE: &str = "application";

/// The canister id range this subnet hosts, inclusive.
pub fn canister_range() -> (Principal, Principal) {
    (canister_id_from_index(0), canister_id_from_index(CANISTER_RANGE_END - 1))
}

/// Builds the tree from the state after a round. The request statuses come already hashed
/// (kept up to date entry by entry with [`request_status_entry`]).
pub fn build(time: u64, state: &ReplicatedState, request_status: Arc<CertifiedMap>, subnet: &SubnetInfo) -> LabeledTree {
    let mut root = BTreeMap::new();
    root.insert(b"time".to_vec(), leaf(leb128(time)));
    root.insert(b"request_status".to_vec(), LabeledTree::Map(request_status));
    root.insert(b"canister".to_vec(), canisters(state));
    root.insert(b"subnet".to_vec(), subnet_tree(subnet));
    root.insert(b"canister_ranges".to_vec(), canister_ranges_tree(subnet));
    LabeledTree::SubTree(root)
}

fn leaf(bytes: impl Into<Vec<u8>>) -> LabeledTree {
    LabeledTree::Leaf(bytes.into())
}

fn subtree(entries: impl IntoIterator<Item = (Vec<u8>, LabeledTree)>) -> LabeledTree {
    LabeledTree::SubTree(entries.into_iter().collect())
}

pub fn leb128(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    leb128::write::unsigned(&mut out, n).expect("writing to a Vec cannot fail");
    out
}

/// `#6.55799(value)` encoded as CBOR, the form the spec gives for structured leaves.
pub fn tagged_cbor(value: Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Tag(55799, Box::new(value)), &mut out).expect("CBOR to a Vec cannot fail");
    out
}

/// `/request_status/<id>`'s subtree for one call.
pub fn request_status_entry(status: &IngressStatus) -> LabeledTree {
    let mut fields = vec![(b"status".to_vec(), leaf(status.state.name()))];
    match &status.state {
        IngressState::Replied(reply) => fields.push((b"reply".to_vec(), leaf(reply.clone()))),
        IngressState::Rejected { reject_code, reject_message, error_code } => {
            fields.push((b"reject_code".to_vec(), leaf(leb128(*reject_code as u64))));
            fields.push((b"reject_message".to_vec(), leaf(reject_message.as_bytes())));
            if let Some(code) = error_code {
                fields.push((b"error_code".to_vec(), leaf(code.as_bytes())));
            }
        }
        _ => {}
    }
    subtree(fields)
}

fn canisters(state: &ReplicatedState) -> LabeledTree {
    subtree(state.canister_ids().map(|id| {
        let mut fields = Vec::new();
        fields.push((b"certified_data".to_vec(), leaf(state.certified_data(id).unwrap_or_default())));
        let controllers = state.controllers(id).unwrap_or_default();
        fields.push((b"controllers".to_vec(), leaf(controllers_cbor(controllers))));
        if let Some(hash) = state.module_hash(id) {
            fields.push((b"module_hash".to_vec(), leaf(hash.to_vec())));
            let metadata = state
                .metadata_sections(id)
                .into_iter()
                .filter_map(|(name, _)| {
                    let (_, content) = state.metadata_section(id, &name)?;
                    Some((name.into_bytes(), leaf(content)))
                })
                .collect::<Vec<_>>();
            fields.push((b"metadata".to_vec(), subtree(metadata)));
        }
        (id.as_slice().to_vec(), subtree(fields))
    }))
}

/// `#6.55799([* principal-bytes])`.
pub fn controllers_cbor(controllers: &[Principal]) -> Vec<u8> {
    tagged_cbor(Value::Array(controllers.iter().map(|p| Value::Bytes(p.as_slice().to_vec())).collect()))
}

/// `#6.55799([* [low, high]])`.
fn ranges_cbor() -> Vec<u8> {
    let (low, high) = canister_range();
    tagged_cbor(Value::Array(vec![Value::Array(vec![
        Value::Bytes(low.as_slice().to_vec()),
        Value::Bytes(high.as_slice().to_vec()),
    ])]))
}

fn subnet_tree(subnet: &SubnetInfo) -> LabeledTree {
    let node = subtree(
        subnet.nodes.iter().map(|(id, key)| (id.as_slice().to_vec(), subtree([(b"public_key".to_vec(), leaf(key.clone()))]))),
    );
    subtree([(
        subnet.subnet_id.as_slice().to_vec(),
        subtree([
            (b"public_key".to_vec(), leaf(subnet.public_key_der.clone())),
            (b"type".to_vec(), leaf(SUBNET_TYPE)),
            (b"canister_ranges".to_vec(), leaf(ranges_cbor())),
            (b"node".to_vec(), node),
        ]),
    )])
}

fn canister_ranges_tree(subnet: &SubnetInfo) -> LabeledTree {
    let (low, _) = canister_range();
    subtree([(
        subnet.subnet_id.as_slice().to_vec(),
        subtree([(low.as_slice().to_vec(), leaf(ranges_cbor()))]),
    )])
}
