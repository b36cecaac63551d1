//! What the web app's subnet view draws, as its JSON: the simulated subnet
//! (`tabnet_sim::live`) and a tab of a real tab subnet (`crate/web`'s `TabSubnet::view`) fill
//! the same shape, so the page draws either one.

use serde::Serialize;
use tabnet_consensus::{Artifact, ArtifactId, Hash, Height, Kind, Message, NodeIndex, Time};

/// The kind of a message as the view names it, and its height (0: none).
pub fn message_kind(message: &Message) -> (&'static str, Height) {
    match message {
        Message::Push(a) => {
            let kind = match a {
                Artifact::Ingress(_) => "ingress",
                Artifact::Proposal(_) => "proposal",
                Artifact::Share(s) => match s.kind {
                    Kind::Beacon => "beacon-share",
                    Kind::Notarization => "notarization-share",
                    Kind::Finalization => "finalization-share",
                    Kind::Certification => "certification-share",
                    Kind::CatchUp => "catch-up",
                },
                Artifact::Aggregate(g) => match g.kind {
                    Kind::Beacon => "beacon",
                    Kind::Notarization => "notarization",
                    Kind::Finalization => "finalization",
                    Kind::Certification => "other",
                    Kind::CatchUp => "catch-up",
                },
                Artifact::Cup(_) => "catch-up",
            };
            (kind, a.height())
        }
        Message::Advert(ArtifactId::Ingress(_)) | Message::Request(ArtifactId::Ingress(_)) => ("ingress", 0),
        Message::Advert(ArtifactId::Block(_)) | Message::Request(ArtifactId::Block(_)) => ("proposal", 0),
        Message::CatchUpRequest { finalized } => ("catch-up", *finalized),
        Message::CatchUp(c) => ("catch-up", c.finalization.height),
        Message::Sync(_) => ("sync", 0),
    }
}

/// The first 4 bytes of a hash, in hex (how the view names blocks and states).
pub fn hex8(h: &Hash) -> String {
    h[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Serialize)]
pub struct ProposalAt {
    pub rank: u32,
    pub maker: NodeIndex,
    pub at: Time,
    #[serde(skip)]
    pub hash: Hash,
}

#[derive(Clone, Serialize)]
pub struct ShareAt {
    pub node: NodeIndex,
    pub at: Time,
}

/// A height's timeline: when each thing first happened (anywhere, in a simulation; as one node
/// saw it, for a real node).
#[derive(Clone, Serialize)]
pub struct Round {
    pub height: Height,
    /// When the random beacon that ranks this height's block makers (the beacon of the height
    /// before) was first made.
    pub beacon: Option<Time>,
    pub proposals: Vec<ProposalAt>,
    pub notarization_shares: Vec<ShareAt>,
    pub notarized: Option<Time>,
    pub finalization_shares: Vec<ShareAt>,
    pub finalized: Option<Time>,
}

impl Round {
    pub fn new(height: Height) -> Self {
        Round { height, beacon: None, proposals: Vec::new(), notarization_shares: Vec::new(), notarized: None, finalization_shares: Vec::new(), finalized: None }
    }
}

#[derive(Serialize)]
pub struct Thresholds {
    pub notarization: usize,
    pub finalization: usize,
    pub beacon: usize,
    pub certification: usize,
}

#[derive(Serialize)]
pub struct NodeView {
    pub index: NodeIndex,
    /// "up", or why not ("crashed", "paused", "unreachable"...).
    pub state: &'static str,
    pub byzantine: &'static str,
    pub notarized: Height,
    pub finalized: Height,
    pub certified: Height,
    pub rank: Option<u32>,
    pub round: Height,
    pub state_hash: String,
    pub counter: Option<u64>,
}

#[derive(Serialize)]
pub struct LinkView {
    pub cut: bool,
    pub delay: Time,
}

#[derive(Clone, Serialize)]
pub struct Flight {
    pub from: NodeIndex,
    pub to: NodeIndex,
    pub kind: &'static str,
    pub height: Height,
    pub sent: Time,
    pub arrives: Time,
}

#[derive(Serialize)]
pub struct BlockView {
    pub id: String,
    pub parent: String,
    pub height: Height,
    pub rank: u32,
    pub maker: NodeIndex,
    pub notarized: bool,
    pub finalized: bool,
    pub ingress: usize,
}

#[derive(Serialize)]
pub struct StatsView {
    pub finality_ms: Option<f64>,
    pub blocks_per_s: f64,
    pub messages_per_s: f64,
    pub bytes_per_s: Vec<f64>,
    pub calls_executed: u64,
}

/// What the view shows (serialized as the web view's JSON).
#[derive(Serialize)]
pub struct View {
    pub now: Time,
    pub n: usize,
    pub f: usize,
    pub thresholds: Thresholds,
    pub nodes: Vec<NodeView>,
    pub links: Vec<Vec<LinkView>>,
    pub in_flight: Vec<Flight>,
    pub blocks: Vec<BlockView>,
    pub rounds: Vec<Round>,
    pub stats: StatsView,
}

impl Thresholds {
    pub fn of(n: usize) -> Self {
        use tabnet_consensus::threshold;
        Thresholds {
            notarization: threshold(n, Kind::Notarization),
            finalization: threshold(n, Kind::Finalization),
            beacon: threshold(n, Kind::Beacon),
            certification: threshold(n, Kind::Certification),
        }
    }
}

/// The block tree of the `heights` heights up to the one after `consensus`'s notarized height,
/// as that node holds it (forks included), ordered by height then rank.
pub fn block_tree(consensus: &tabnet_consensus::ConsensusNode, heights: u64) -> Vec<BlockView> {
    let mut blocks = Vec::new();
    let top = consensus.notarized_height() + 1;
    for h in top.saturating_sub(heights - 1)..=top {
        let mut at: Vec<BlockView> = consensus
            .blocks_at(h)
            .into_iter()
            .map(|(b, notarized, finalized)| BlockView {
                id: hex8(&b.hash()),
                parent: hex8(&b.parent),
                height: b.height,
                rank: b.rank,
                maker: b.maker,
                notarized,
                finalized,
                ingress: b.ingress.len(),
            })
            .collect();
        at.sort_by(|a, b| (a.rank, &a.id).cmp(&(b.rank, &b.id)));
        blocks.extend(at);
    }
    blocks
}

/// The view as JSON, written directly (as serde would, field for field): a tab's node wasm
/// carries this small writer rather than serde's code for every view type. Every text in a
/// view is a fixed name or hex, so nothing needs escaping.
impl View {
    pub fn to_json(&self) -> String {
        use std::fmt::Write;
        let mut o = String::with_capacity(4_096);
        let opt = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
        let th = &self.thresholds;
        let _ = write!(
            o,
            r#"{{"now":{},"n":{},"f":{},"thresholds":{{"notarization":{},"finalization":{},"beacon":{},"certification":{}}},"nodes":["#,
            self.now, self.n, self.f, th.notarization, th.finalization, th.beacon, th.certification
        );
        for (k, x) in self.nodes.iter().enumerate() {
            let _ = write!(
                o,
                r#"{}{{"index":{},"state":"{}","byzantine":"{}","notarized":{},"finalized":{},"certified":{},"rank":{},"round":{},"state_hash":"{}","counter":{}}}"#,
                if k > 0 { "," } else { "" },
                x.index,
                x.state,
                x.byzantine,
                x.notarized,
                x.finalized,
                x.certified,
                opt(x.rank.map(u64::from)),
                x.round,
                x.state_hash,
                opt(x.counter)
            );
        }
        o.push_str(r#"],"links":["#);
        for (a, row) in self.links.iter().enumerate() {
            o.push_str(if a > 0 { ",[" } else { "[" });
            for (b, l) in row.iter().enumerate() {
                let _ = write!(o, r#"{}{{"cut":{},"delay":{}}}"#, if b > 0 { "," } else { "" }, l.cut, l.delay);
            }
            o.push(']');
        }
        o.push_str(r#"],"in_flight":["#);
        for (k, m) in self.in_flight.iter().enumerate() {
            let _ = write!(
                o,
                r#"{}{{"from":{},"to":{},"kind":"{}","height":{},"sent":{},"arrives":{}}}"#,
                if k > 0 { "," } else { "" },
                m.from,
                m.to,
                m.kind,
                m.height,
                m.sent,
                m.arrives
            );
        }
        o.push_str(r#"],"blocks":["#);
        for (k, b) in self.blocks.iter().enumerate() {
            let _ = write!(
                o,
                r#"{}{{"id":"{}","parent":"{}","height":{},"rank":{},"maker":{},"notarized":{},"finalized":{},"ingress":{}}}"#,
                if k > 0 { "," } else { "" },
                b.id,
                b.parent,
                b.height,
                b.rank,
                b.maker,
                b.notarized,
                b.finalized,
                b.ingress
            );
        }
        o.push_str(r#"],"rounds":["#);
        let shares = |o: &mut String, shares: &[ShareAt]| {
            for (k, s) in shares.iter().enumerate() {
                let _ = write!(o, r#"{}{{"node":{},"at":{}}}"#, if k > 0 { "," } else { "" }, s.node, s.at);
            }
        };
        for (k, r) in self.rounds.iter().enumerate() {
            let _ = write!(o, r#"{}{{"height":{},"beacon":{},"proposals":["#, if k > 0 { "," } else { "" }, r.height, opt(r.beacon));
            for (k, p) in r.proposals.iter().enumerate() {
                let _ = write!(o, r#"{}{{"rank":{},"maker":{},"at":{}}}"#, if k > 0 { "," } else { "" }, p.rank, p.maker, p.at);
            }
            o.push_str(r#"],"notarization_shares":["#);
            shares(&mut o, &r.notarization_shares);
            let _ = write!(o, r#"],"notarized":{},"finalization_shares":["#, opt(r.notarized));
            shares(&mut o, &r.finalization_shares);
            let _ = write!(o, r#"],"finalized":{}}}"#, opt(r.finalized));
        }
        let s = &self.stats;
        let num = |v: f64| if v.is_finite() { format!("{v:?}") } else { "null".to_string() };
        let _ = write!(
            o,
            r#"],"stats":{{"finality_ms":{},"blocks_per_s":{},"messages_per_s":{},"bytes_per_s":[{}],"calls_executed":{}}}}}"#,
            s.finality_ms.map_or_else(|| "null".to_string(), num),
            num(s.blocks_per_s),
            num(s.messages_per_s),
            s.bytes_per_s.iter().map(|v| num(*v)).collect::<Vec<_>>().join(","),
            s.calls_executed
        );
        o
    }
}
