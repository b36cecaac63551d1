//! The deterministic simulator: one more driver of the sans-IO core. Nodes are plain state
//! machines ([`Node`]); the simulation owns a virtual clock and a seeded network that delays,
//! drops, duplicates and reorders messages, cuts partitions that heal, and crashes and restarts
//! nodes. Everything random comes from the seed, so a run — and any failure in it — replays
//! exactly from `(seed, network, nodes)`.
//!
//! Beside the time-based partitions, single links can be cut or slowed at any time
//! ([`Simulation::cut_link`], [`Simulation::delay_link`]), a node can be paused
//! ([`Simulation::pause`]), and the transmissions can be recorded ([`Simulation::record_transmissions`])
//! for a view of the messages in flight: what the live subnet ([`live`]) shows in a browser.

pub mod live;
// The scenario runner measures wall time (`Instant`, which panics in wasm32): native only.
#[cfg(not(target_arch = "wasm32"))]
pub mod subnet;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

pub type NodeIndex = usize;
/// Virtual time, in the unit the nodes use (the consensus counts milliseconds).
pub type Time = u64;

/// A sans-IO node: it reacts to messages and to the wake-ups it asked for, and says what to
/// do through its [`Outbox`].
pub trait Node {
    type Message: Clone;
    fn on_message(&mut self, now: Time, from: NodeIndex, message: Self::Message, out: &mut Outbox<Self::Message>);
    /// Called at start (and restart) and when a wake-up it asked for is due.
    fn on_wake(&mut self, now: Time, out: &mut Outbox<Self::Message>);
}

/// What a node asks the driver to do.
pub struct Outbox<M> {
    sends: Vec<(Option<NodeIndex>, M)>,
    wake: Option<Time>,
}

impl<M> Outbox<M> {
    fn new() -> Self {
        Self { sends: Vec::new(), wake: None }
    }
    pub fn send(&mut self, to: NodeIndex, message: M) {
        self.sends.push((Some(to), message));
    }
    /// To every other node.
    pub fn broadcast(&mut self, message: M) {
        self.sends.push((None, message));
    }
    /// Wake me at `at`. Replaces a wake-up asked for in an earlier reaction; within one
    /// reaction the earliest request counts.
    pub fn wake_at(&mut self, at: Time) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }
}

/// Nodes in `side` and the rest cannot reach each other during `[from, until)`.
#[derive(Clone, Debug)]
pub struct Partition {
    pub from: Time,
    pub until: Time,
    pub side: BTreeSet<NodeIndex>,
}

/// How the network treats messages. Probabilities are per million messages.
#[derive(Clone, Debug)]
pub struct Network {
    pub min_delay: Time,
    pub max_delay: Time,
    pub loss_per_million: u32,
    pub duplicate_per_million: u32,
    /// A long tail: these messages take between `max_delay` and ten times that (a congested
    /// link, a paused process) instead of the uniform `min_delay..=max_delay`.
    pub slow_per_million: u32,
    pub partitions: Vec<Partition>,
}

impl Network {
    /// Every message arrives after exactly `delay` (a synchronous network).
    pub fn fixed(delay: Time) -> Self {
        Self { min_delay: delay, max_delay: delay, loss_per_million: 0, duplicate_per_million: 0, slow_per_million: 0, partitions: Vec::new() }
    }

    fn cut(&self, now: Time, a: NodeIndex, b: NodeIndex) -> bool {
        self.partitions.iter().any(|p| now >= p.from && now < p.until && p.side.contains(&a) != p.side.contains(&b))
    }
}

/// SplitMix64: small, fast, and the same on every platform (for scenario choices too).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }
}

enum Event<M> {
    /// A broadcast's copies share one allocation; each is cloned out on delivery (and the
    /// event queue moves small entries).
    Deliver { to: NodeIndex, from: NodeIndex, message: Rc<M> },
    /// A wake-up; stale if the node asked again or restarted since (`generation`).
    Wake { node: NodeIndex, generation: u64 },
}

/// What the network did, for figures and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub cut: u64,
    pub duplicated: u64,
    pub to_crashed: u64,
}

struct Slot<N: Node> {
    node: Option<N>,
    wake_generation: u64,
    /// Paused: what arrives is held (delivered on resume) and wake-ups wait.
    paused: bool,
    held: Vec<(NodeIndex, Rc<N::Message>)>,
}

/// One message put on the network (recorded with [`Simulation::record_transmissions`]).
pub struct Transmission<M> {
    pub from: NodeIndex,
    pub to: NodeIndex,
    pub sent: Time,
    /// When it arrives; `None`: lost or cut.
    pub arrives: Option<Time>,
    pub message: Rc<M>,
}

/// The event [`Simulation::step`] runs next.
pub enum NextEvent<'a, M> {
    Deliver { from: NodeIndex, to: NodeIndex, message: &'a M },
    /// `live`: false for a stale wake-up (it does nothing).
    Wake { node: NodeIndex, live: bool },
}

pub struct Simulation<N: Node> {
    seed: u64,
    now: Time,
    rng: Rng,
    network: Network,
    slots: Vec<Slot<N>>,
    /// Events by due time; within one time, in the order they were scheduled (the same on
    /// every run). Few distinct times are pending at once, so this beats a binary heap.
    events: BTreeMap<Time, VecDeque<Event<N::Message>>>,
    pub stats: Stats,
    /// Per directed link (`from * n + to`): cut, and extra delay (ms).
    link_cut: Vec<bool>,
    link_delay: Vec<Time>,
    /// Transmissions since the last [`Self::take_transmissions`], when recording.
    transmissions: Option<Vec<Transmission<N::Message>>>,
}

impl<N: Node> Simulation<N> {
    /// Every node wakes at time 0.
    pub fn new(seed: u64, network: Network, nodes: Vec<N>) -> Self {
        let mut sim = Self {
            seed,
            now: 0,
            rng: Rng(seed),
            network,
            slots: nodes.into_iter().map(|n| Slot { node: Some(n), wake_generation: 0, paused: false, held: Vec::new() }).collect(),
            events: BTreeMap::new(),
            stats: Stats::default(),
            link_cut: Vec::new(),
            link_delay: Vec::new(),
            transmissions: None,
        };
        let n = sim.slots.len();
        sim.link_cut = vec![false; n * n];
        sim.link_delay = vec![0; n * n];
        for i in 0..sim.slots.len() {
            sim.schedule(0, Event::Wake { node: i, generation: 0 });
        }
        sim
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn now(&self) -> Time {
        self.now
    }
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// The node, unless it is crashed.
    pub fn node(&self, i: NodeIndex) -> Option<&N> {
        self.slots[i].node.as_ref()
    }
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIndex, &N)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| Some((i, s.node.as_ref()?)))
    }

    pub fn node_mut(&mut self, i: NodeIndex) -> Option<&mut N> {
        self.slots[i].node.as_mut()
    }

    /// Lets the caller act on node `i` from outside (a client submitting a message); what it
    /// sends goes through the network like anything else. Does nothing to a crashed node.
    pub fn act(&mut self, i: NodeIndex, action: impl FnOnce(&mut N, Time, &mut Outbox<N::Message>)) {
        let now = self.now;
        let mut out = Outbox::new();
        match self.slots[i].node.as_mut() {
            Some(node) => action(node, now, &mut out),
            None => return,
        }
        self.perform(i, out);
    }

    /// Crashes node `i`: it gets nothing until restarted; messages to it are lost. Returns
    /// it (its in-memory state; a restart usually rebuilds a node from what it persisted).
    pub fn crash(&mut self, i: NodeIndex) -> Option<N> {
        self.slots[i].wake_generation += 1;
        self.slots[i].paused = false;
        self.stats.to_crashed += self.slots[i].held.len() as u64;
        self.slots[i].held.clear();
        self.slots[i].node.take()
    }

    /// Puts `node` in slot `i` and wakes it now. Messages still on their way to the node it
    /// replaces are lost (they were sent to a process, or over links, that no longer exist).
    pub fn restart(&mut self, i: NodeIndex, node: N) {
        for queue in self.events.values_mut() {
            let before = queue.len();
            queue.retain(|e| !matches!(e, Event::Deliver { to, .. } if *to == i));
            self.stats.to_crashed += (before - queue.len()) as u64;
        }
        self.events.retain(|_, queue| !queue.is_empty());
        let slot = &mut self.slots[i];
        slot.node = Some(node);
        slot.wake_generation += 1;
        let generation = slot.wake_generation;
        self.schedule(self.now, Event::Wake { node: i, generation });
    }

    /// When the next event is due, if any.
    pub fn next_time(&self) -> Option<Time> {
        self.events.keys().next().copied()
    }

    /// The event [`Self::step`] runs next, and when.
    pub fn next_event(&self) -> Option<(Time, NextEvent<'_, N::Message>)> {
        let (time, queue) = self.events.iter().next()?;
        let event = match queue.front()? {
            Event::Deliver { to, from, message } => NextEvent::Deliver { from: *from, to: *to, message: &**message },
            Event::Wake { node, generation } => {
                let slot = &self.slots[*node];
                NextEvent::Wake { node: *node, live: slot.node.is_some() && *generation == slot.wake_generation }
            }
        };
        Some((*time, event))
    }

    /// Cuts (or mends) the link between `a` and `b`, both ways: messages sent over it, or
    /// arriving over it while it is cut, are lost.
    pub fn cut_link(&mut self, a: NodeIndex, b: NodeIndex, cut: bool) {
        let n = self.slots.len();
        self.link_cut[a * n + b] = cut;
        self.link_cut[b * n + a] = cut;
    }

    /// Adds `extra` ms to every message sent between `a` and `b` from now on, both ways.
    pub fn delay_link(&mut self, a: NodeIndex, b: NodeIndex, extra: Time) {
        let n = self.slots.len();
        self.link_delay[a * n + b] = extra;
        self.link_delay[b * n + a] = extra;
    }

    /// Whether the link from `a` to `b` is cut, and its extra delay.
    pub fn link(&self, a: NodeIndex, b: NodeIndex) -> (bool, Time) {
        let n = self.slots.len();
        (self.link_cut[a * n + b], self.link_delay[a * n + b])
    }

    /// Pauses node `i` (a frozen process): messages to it are held and delivered when it
    /// resumes, its wake-ups wait; on resume it is woken at once.
    pub fn pause(&mut self, i: NodeIndex, paused: bool) {
        let slot = &mut self.slots[i];
        if slot.node.is_none() || slot.paused == paused {
            return;
        }
        slot.paused = paused;
        if !paused {
            let held = std::mem::take(&mut slot.held);
            slot.wake_generation += 1;
            let generation = slot.wake_generation;
            for (from, message) in held {
                self.schedule(self.now, Event::Deliver { to: i, from, message });
            }
            self.schedule(self.now, Event::Wake { node: i, generation });
        }
    }

    pub fn is_paused(&self, i: NodeIndex) -> bool {
        self.slots[i].paused
    }

    /// Starts (or stops) recording every transmission for [`Self::take_transmissions`].
    pub fn record_transmissions(&mut self, on: bool) {
        self.transmissions = on.then(Vec::new);
    }

    /// The transmissions recorded since the last call.
    pub fn take_transmissions(&mut self) -> Vec<Transmission<N::Message>> {
        self.transmissions.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Runs every event due before `until`, then sets the clock to `until` (to act at exactly
    /// that time, before the events due then).
    pub fn run_before(&mut self, until: Time) {
        while self.next_time().is_some_and(|t| t < until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs the next event; `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(mut due) = self.events.first_entry() else { return false };
        let time = *due.key();
        let event = due.get_mut().pop_front().expect("no empty buckets");
        if due.get().is_empty() {
            due.remove();
        }
        self.now = time;
        let mut out = Outbox::new();
        let actor = match event {
            Event::Deliver { to, from, message } if self.slots[to].paused => {
                self.slots[to].held.push((from, message));
                return true;
            }
            Event::Deliver { to, from, .. } if self.link_cut[from * self.slots.len() + to] => {
                self.stats.cut += 1;
                return true;
            }
            Event::Deliver { to, from, message } => match self.slots[to].node.as_mut() {
                Some(node) => {
                    self.stats.delivered += 1;
                    let message = Rc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
                    node.on_message(time, from, message, &mut out);
                    to
                }
                None => {
                    self.stats.to_crashed += 1;
                    return true;
                }
            },
            Event::Wake { node: i, generation } => {
                let slot = &mut self.slots[i];
                match slot.node.as_mut() {
                    Some(_) if slot.paused => return true,
                    Some(node) if generation == slot.wake_generation => {
                        node.on_wake(time, &mut out);
                        i
                    }
                    _ => return true,
                }
            }
        };
        self.perform(actor, out);
        true
    }

    /// Runs every event up to and including time `until`.
    pub fn run_until(&mut self, until: Time) {
        while self.next_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    fn perform(&mut self, from: NodeIndex, out: Outbox<N::Message>) {
        if let Some(at) = out.wake {
            let slot = &mut self.slots[from];
            slot.wake_generation += 1;
            let generation = slot.wake_generation;
            self.schedule(at.max(self.now), Event::Wake { node: from, generation });
        }
        for (to, message) in out.sends {
            match to {
                Some(to) => self.transmit(from, to, Rc::new(message)),
                None => {
                    let message = Rc::new(message);
                    for to in (0..self.slots.len()).filter(|&to| to != from) {
                        self.transmit(from, to, message.clone());
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: NodeIndex, to: NodeIndex, message: Rc<N::Message>) {
        self.stats.sent += 1;
        let link = from * self.slots.len() + to;
        if self.network.cut(self.now, from, to) || self.link_cut[link] {
            self.stats.cut += 1;
            self.note(from, to, None, &message);
            return;
        }
        if self.rng.chance(self.network.loss_per_million) {
            self.stats.lost += 1;
            self.note(from, to, None, &message);
            return;
        }
        let extra = self.link_delay[link];
        if self.rng.chance(self.network.duplicate_per_million) {
            self.stats.duplicated += 1;
            let at = self.now + self.delay() + extra;
            self.note(from, to, Some(at), &message);
            self.schedule(at, Event::Deliver { to, from, message: message.clone() });
        }
        let at = self.now + self.delay() + extra;
        self.note(from, to, Some(at), &message);
        self.schedule(at, Event::Deliver { to, from, message });
    }

    fn note(&mut self, from: NodeIndex, to: NodeIndex, arrives: Option<Time>, message: &Rc<N::Message>) {
        if let Some(record) = &mut self.transmissions {
            record.push(Transmission { from, to, sent: self.now, arrives, message: message.clone() });
        }
    }

    fn delay(&mut self) -> Time {
        let Network { min_delay, max_delay, .. } = self.network;
        if self.rng.chance(self.network.slow_per_million) {
            return max_delay + self.rng.below(9 * max_delay + 1);
        }
        min_delay + self.rng.below(max_delay.saturating_sub(min_delay) + 1)
    }

    fn schedule(&mut self, at: Time, event: Event<N::Message>) {
        self.events.entry(at).or_default().push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node 0 starts knowing a rumour; whoever knows it repeats it to everyone every 100 time
    /// units. Records when it learned it.
    struct Gossip {
        knows_since: Option<Time>,
    }

    impl Node for Gossip {
        type Message = ();
        fn on_message(&mut self, now: Time, _from: NodeIndex, _m: (), out: &mut Outbox<()>) {
            if self.knows_since.is_none() {
                self.knows_since = Some(now);
                out.broadcast(());
                out.wake_at(now + 100);
            }
        }
        fn on_wake(&mut self, now: Time, out: &mut Outbox<()>) {
            if self.knows_since.is_some() {
                out.broadcast(());
                out.wake_at(now + 100);
            }
        }
    }

    fn gossip(n: usize) -> Vec<Gossip> {
        (0..n).map(|i| Gossip { knows_since: (i == 0).then_some(0) }).collect()
    }

    fn learned(sim: &Simulation<Gossip>) -> Vec<Option<Time>> {
        (0..sim.len()).map(|i| sim.node(i).and_then(|n| n.knows_since)).collect()
    }

    fn lossy() -> Network {
        Network { min_delay: 5, max_delay: 50, loss_per_million: 300_000, duplicate_per_million: 100_000, slow_per_million: 100_000, partitions: vec![] }
    }

    #[test]
    fn the_same_seed_replays_the_same_run_and_another_seed_differs() {
        let run = |seed| {
            let mut sim = Simulation::new(seed, lossy(), gossip(7));
            sim.run_until(2_000);
            (learned(&sim), sim.stats.clone())
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let (times, stats) = run(42);
        assert!(times.iter().all(Option::is_some), "everyone learns it despite loss: {times:?}");
        assert!(stats.lost > 0 && stats.duplicated > 0);
    }

    #[test]
    fn a_synchronous_network_delivers_after_exactly_the_delay() {
        let mut sim = Simulation::new(1, Network::fixed(10), gossip(4));
        sim.run_until(1_000);
        assert_eq!(learned(&sim), vec![Some(0), Some(10), Some(10), Some(10)]);
        assert_eq!(sim.stats.lost + sim.stats.cut, 0);
    }

    #[test]
    fn a_partition_holds_messages_back_until_it_heals() {
        let mut network = Network::fixed(10);
        network.partitions.push(Partition { from: 0, until: 1_000, side: [2, 3].into() });
        let mut sim = Simulation::new(7, network, gossip(4));
        sim.run_until(990);
        assert_eq!(learned(&sim)[2..], [None, None]);
        assert!(sim.stats.cut > 0);
        sim.run_until(1_200);
        assert!(learned(&sim).iter().all(|t| t.is_some_and(|t| t < 1_200)), "{:?}", learned(&sim));
    }

    #[test]
    fn a_crashed_node_misses_everything_and_catches_up_after_a_restart() {
        let mut sim = Simulation::new(3, Network::fixed(10), gossip(4));
        sim.crash(3);
        sim.run_until(500);
        assert!(sim.node(3).is_none());
        assert!(sim.stats.to_crashed > 0);
        sim.restart(3, Gossip { knows_since: None });
        sim.run_until(700);
        assert!(sim.node(3).unwrap().knows_since.is_some_and(|t| t > 500));
    }

    #[test]
    fn a_cut_link_loses_messages_and_a_slow_one_delays_them_until_changed_back() {
        let mut sim = Simulation::new(5, Network::fixed(10), gossip(3));
        sim.cut_link(0, 1, true);
        sim.cut_link(2, 1, true);
        sim.delay_link(0, 2, 90);
        sim.record_transmissions(true);
        sim.run_until(300);
        assert_eq!(learned(&sim), vec![Some(0), None, Some(100)]);
        let sent = sim.take_transmissions();
        assert!(sent.iter().any(|t| (t.from, t.to, t.arrives) == (0, 2, Some(100))));
        assert!(sent.iter().any(|t| (t.from, t.to, t.arrives) == (0, 1, None)), "a cut transmission is recorded as lost");
        assert!(sim.take_transmissions().is_empty());
        sim.cut_link(1, 0, false);
        sim.run_until(420);
        assert!(learned(&sim)[1].is_some_and(|t| t > 300));
    }

    #[test]
    fn a_paused_node_gets_what_was_sent_to_it_when_it_resumes() {
        let mut sim = Simulation::new(9, Network::fixed(10), gossip(3));
        sim.pause(2, true);
        sim.run_until(500);
        assert_eq!(learned(&sim)[2], None);
        sim.pause(2, false);
        sim.step();
        assert_eq!(learned(&sim)[2], Some(500));
        assert!(matches!(sim.next_event(), Some((500, _))));
    }
}
