//! The gossip codec: a peer's frame body decoded as the native node decodes it
//! (`ciborium::from_reader::<tabnet_consensus::Message, _>` in crate/native/src/subnet.rs).
//! The memory cap is libFuzzer's (`-rss_limit_mb`, `-malloc_limit_mb` in scripts/fuzz.sh): a
//! frame of at most 16 MiB must never make the node allocate much more than itself.

use crate::Seed;
use std::sync::Arc;
use tabnet_consensus::{Aggregate, Artifact, ArtifactId, Beacon, Block, CatchUp, Cup, Ingress, Kind, Manifest, Message, Proposal, Share, SyncMessage};

fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(message, &mut out).expect("CBOR encoding to a Vec cannot fail");
    out
}

pub fn run(data: &[u8]) {
    let Ok(message) = ciborium::from_reader::<Message, _>(data) else { return };
    // What decodes must survive the node's own encoding: re-encoding and decoding again gives
    // the same bytes (relays and persisted artifacts go through exactly this).
    let once = encode(&message);
    let again: Message = ciborium::from_reader(once.as_slice())
        .unwrap_or_else(|e| panic!("a decoded message does not decode after re-encoding: {e}; {message:?}"));
    assert_eq!(once, encode(&again), "re-encoding a decoded message is not stable: {message:?}");
}

pub fn check(seed: &Seed) -> Result<(), String> {
    ciborium::from_reader::<Message, _>(seed.bytes.as_slice()).map(|_| ()).map_err(|e| e.to_string())
}

fn block(height: u64) -> Block {
    Block { parent: [1; 32], height, rank: 1, maker: 2, time: 1_700_000_000_000_000_000, ingress: vec![[3; 32], [4; 32]] }
}

fn aggregate(kind: Kind, height: u64) -> Aggregate {
    Aggregate { kind, height, content: [5; 32], signers: vec![0, 1, 3], sig: [6; 48] }
}

fn proposal(height: u64, payload: bool) -> Arc<Proposal> {
    let ingress = vec![Arc::new(Ingress { bytes: vec![0xd9, 0xd9, 0xf7, 0xa1] }), Arc::new(Ingress { bytes: vec![9; 40] })];
    Arc::new(Proposal { block: block(height), signature: [7; 64], payload: payload.then_some(ingress) })
}

pub fn seeds() -> Vec<Seed> {
    let beacon = Beacon { height: 4, parent: [8; 32], sig: [9; 48] };
    let messages = vec![
        ("push-ingress", Message::Push(Artifact::Ingress(Arc::new(Ingress { bytes: vec![0xa1, 0x61, 0x61, 0x01] })))),
        ("push-proposal", Message::Push(Artifact::Proposal(proposal(5, true)))),
        ("push-stripped-proposal", Message::Push(Artifact::Proposal(proposal(5, false)))),
        ("push-share", Message::Push(Artifact::Share(Share { kind: Kind::Notarization, height: 5, content: [1; 32], signer: 3, sig: [2; 48] }))),
        ("push-aggregate", Message::Push(Artifact::Aggregate(aggregate(Kind::Finalization, 5)))),
        ("push-cup", Message::Push(Artifact::Cup(Arc::new(Cup { block: block(500), beacon: beacon.clone(), state_hash: [3; 32], checkpoint: [4; 32], sig: [5; 48] })))),
        ("advert-ingress", Message::Advert(ArtifactId::Ingress([1; 32]))),
        ("request-block", Message::Request(ArtifactId::Block([2; 32]))),
        ("catch-up-request", Message::CatchUpRequest { finalized: 17 }),
        (
            "catch-up",
            Message::CatchUp(Arc::new(CatchUp {
                blocks: vec![proposal(6, true), proposal(7, false)],
                finalization: aggregate(Kind::Finalization, 7),
                notarized: vec![(proposal(8, true), aggregate(Kind::Notarization, 8))],
                beacons: vec![beacon],
                more: true,
            })),
        ),
        ("sync-manifest-request", Message::Sync(SyncMessage::ManifestRequest { height: 500 })),
        ("sync-manifest", Message::Sync(SyncMessage::Manifest(Manifest::of(500, &[1; 3000], 1024)))),
        ("sync-chunk-request", Message::Sync(SyncMessage::ChunkRequest { height: 500, index: 2 })),
        ("sync-unavailable", Message::Sync(SyncMessage::Unavailable { height: 500, index: Some(3) })),
        ("sync-chunk", Message::Sync(SyncMessage::Chunk { height: 500, index: 1, bytes: vec![0x55; 300] })),
    ];
    messages.into_iter().map(|(name, m)| Seed::new(name, encode(&m))).collect()
}
