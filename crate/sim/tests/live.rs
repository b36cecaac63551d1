//! The live subnet (the web app's front page): the node core with the real replica running the
//! counter canister, on the simulator, controlled as the page controls it.

use std::time::Instant;

use tabnet_sim::live::{LiveSubnet, Recording, COUNTER_WASM};

/// Runs until the counter canister is installed (through consensus) on a subnet just made.
fn ready(seed: u64, nodes: usize) -> LiveSubnet {
    let mut live = LiveSubnet::new(seed, nodes).unwrap();
    while !live.ready() {
        assert!(live.now() < 10_000, "the counter canister is not installed after 10 s: {:?}", live.events(0));
        live.advance(100);
    }
    live
}

fn finalized(live: &mut LiveSubnet) -> Vec<u64> {
    live.view().nodes.iter().map(|n| n.finalized).collect()
}

#[test]
fn the_counter_canister_is_the_test_canister() {
    assert_eq!(COUNTER_WASM, tabnet_test_canisters::wasm("counter"));
}

#[test]
fn a_subnet_has_one_to_thirteen_nodes() {
    assert!(LiveSubnet::new(1, 0).err().unwrap().contains("1 to 13"));
    assert!(LiveSubnet::new(1, 14).err().unwrap().contains("1 to 13"));
}

#[test]
fn four_nodes_finalize_and_every_replica_counts_the_same_calls() {
    let mut live = ready(1, 4);
    live.set_load(10).unwrap();
    live.advance(5_000);
    // (With messages in flight, too.)
    let busy = live.view();
    assert!(!busy.in_flight.is_empty());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&busy.to_json()).unwrap(), serde_json::to_value(&busy).unwrap());
    live.set_load(0).unwrap();
    live.advance(3_000);
    let view = live.view();
    let counters: Vec<Option<u64>> = view.nodes.iter().map(|n| n.counter).collect();
    assert!(counters.iter().all(|c| *c == counters[0]), "replicas disagree: {counters:?}");
    let count = counters[0].expect("the counter is read");
    assert!(count >= 30, "10 calls a second for 5 s made only {count}");
    // Every call executed was an inc, besides creating and installing the canister.
    assert_eq!(view.stats.calls_executed, count + 2);
    assert!(view.nodes.iter().all(|n| n.finalized >= 10 && n.certified + 2 >= n.finalized), "{:?}", finalized(&mut live));
    let hashes: Vec<&str> = view.nodes.iter().map(|n| n.state_hash.as_str()).collect();
    assert!(view.stats.blocks_per_s > 0.5 && view.stats.finality_ms.is_some());
    assert!(live.conflicts().is_empty(), "{:?}", live.conflicts());
    let view = live.view();
    // A tab node's writer gives serde's JSON, value for value.
    let direct: serde_json::Value = serde_json::from_str(&view.to_json()).expect("to_json writes JSON");
    assert_eq!(direct, serde_json::to_value(&view).unwrap());
    assert!(!view.rounds.is_empty() && !view.blocks.is_empty());
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains("\"thresholds\":{\"notarization\":3,\"finalization\":3,\"beacon\":2,\"certification\":3}"), "{json}");
    let _ = hashes;
    let texts: Vec<String> = live.events(0).into_iter().map(|c| c.text).collect();
    assert!(texts.iter().any(|t| t.contains("proposed a block")) && texts.iter().any(|t| t.contains("notarized (3 of 4 shares)")), "{texts:?}");
}

#[test]
fn with_one_of_four_crashed_finality_goes_on() {
    let mut live = LiveSubnet::new(2, 4).unwrap();
    live.advance(2_000);
    live.crash(1).unwrap();
    let before = live.top_finalized();
    live.advance(6_000);
    assert!(live.top_finalized() >= before + 5, "from {before} to {}", live.top_finalized());
    assert_eq!(live.view().nodes[1].state, "crashed");
    assert!(live.conflicts().is_empty());
}

#[test]
fn with_two_of_four_crashed_finality_stops_and_a_restart_resumes_it() {
    let mut live = LiveSubnet::new(3, 4).unwrap();
    live.advance(2_000);
    live.crash(1).unwrap();
    live.crash(2).unwrap();
    live.advance(1_000);
    let stuck = live.top_finalized();
    live.advance(5_000);
    assert_eq!(live.top_finalized(), stuck, "finalized with 2 of 4 nodes crashed");
    live.restart(2).unwrap();
    live.advance(5_000);
    assert!(live.top_finalized() >= stuck + 3, "from {stuck} to {} after the restart", live.top_finalized());
    let view = live.view();
    assert!(view.nodes[2].finalized >= stuck + 3, "the restarted node is at {}", view.nodes[2].finalized);
    assert!(live.restart(3).is_err() && live.crash(7).is_err());
    assert!(live.conflicts().is_empty());
}

/// A run with every kind of control, and `step_event` between.
fn controlled_run() -> (LiveSubnet, Vec<(u64, [u8; 32])>) {
    let mut live = LiveSubnet::new(7, 4).unwrap();
    let mut marks = Vec::new();
    live.advance(1_500);
    live.set_load(8).unwrap();
    live.advance(1_500);
    marks.push((live.now(), live.digest()));
    // (Controls come after the mark: a replay advanced to the mark's time stops before them.)
    live.advance(1);
    live.crash(2).unwrap();
    for _ in 0..7 {
        live.step_event();
    }
    live.cut_link(0, 1, true).unwrap();
    live.advance(700);
    live.byzantine(3, "bad-shares").unwrap();
    live.delay_link(0, 3, 120).unwrap();
    live.pause(1, true).unwrap();
    live.advance(900);
    marks.push((live.now(), live.digest()));
    // (Controls come after the mark: a replay advanced to the mark's time stops before them.)
    live.advance(1);
    live.pause(1, false).unwrap();
    live.cut_link(0, 1, false).unwrap();
    live.restart(2).unwrap();
    live.byzantine(3, "").unwrap();
    live.advance(2_500);
    marks.push((live.now(), live.digest()));
    (live, marks)
}

#[test]
fn a_recorded_run_replays_to_the_same_state_hashes() {
    let (mut live, marks) = controlled_run();
    // Drawing the view (which reads each replica's counter) changes nothing.
    let _ = live.view();
    live.crash(0).unwrap();
    live.advance(500);
    let marks = [marks.as_slice(), &[(live.now(), live.digest())]].concat();
    let json = serde_json::to_string(&live.record()).unwrap();
    let recording: Recording = serde_json::from_str(&json).unwrap();
    assert_eq!(recording.inputs.len(), 11, "{json}");
    let mut again = LiveSubnet::replay(recording.clone()).unwrap();
    // Advanced in other steps than the recorded run was.
    for (at, digest) in &marks {
        while again.now() + 333 < *at {
            again.advance(333);
        }
        again.advance(at - again.now());
        assert_eq!(again.digest(), *digest, "at {at}");
    }
    let (a, b) = (live.view(), again.view());
    assert_eq!(serde_json::to_string(&a.nodes).unwrap(), serde_json::to_string(&b.nodes).unwrap());
    assert_eq!(again.record(), recording, "a replay records the same controls");
    assert!(a.nodes.iter().all(|n| n.finalized > 10));
    // Another seed differs.
    let mut other = LiveSubnet::replay(Recording { seed: 8, ..recording }).unwrap();
    other.advance(marks[3].0);
    assert_ne!(other.digest(), marks[3].1);
}

#[test]
fn thirteen_nodes_run() {
    let mut live = LiveSubnet::new(4, 13).unwrap();
    live.advance(4_000);
    let view = live.view();
    assert_eq!((view.n, view.f, view.thresholds.notarization, view.thresholds.beacon), (13, 4, 9, 5));
    assert!(view.nodes.iter().all(|n| n.finalized >= 3), "{:?}", view.nodes.iter().map(|n| n.finalized).collect::<Vec<_>>());
    assert!(!view.in_flight.is_empty() && !view.blocks.is_empty() && !view.rounds.is_empty());
    assert_eq!(view.links.len(), 13);
    assert!(live.conflicts().is_empty());
}

#[test]
fn byzantine_nodes_do_not_break_safety() {
    for (seed, mode) in [(11, "equivocate"), (12, "withhold"), (13, "bad-shares")] {
        let mut live = LiveSubnet::new(seed, 4).unwrap();
        live.byzantine(seed as usize % 4, mode).unwrap();
        live.advance(1_000);
        let before = live.top_finalized();
        live.advance(6_000);
        assert!(live.conflicts().is_empty(), "{mode}: {:?}", live.conflicts());
        assert!(live.top_finalized() >= before + 3, "{mode}: finality stalled at {}", live.top_finalized());
        assert_eq!(live.view().nodes[seed as usize % 4].byzantine, mode);
    }
    let mut live = LiveSubnet::new(14, 4).unwrap();
    assert!(live.byzantine(0, "lie").unwrap_err().contains("no Byzantine mode"));
    let line = live.step_event();
    assert!(line.starts_with("t=") && line.contains("node"), "{line}");
}

/// Virtual seconds simulated per wall second (4 and 13 nodes, 10 calls a second):
/// `cargo test --release -p tabnet-sim --test live speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    for nodes in [4, 13] {
        let mut live = ready(5, nodes);
        live.set_load(10).unwrap();
        let started = Instant::now();
        let from = live.now();
        live.advance(20_000);
        let wall = started.elapsed().as_secs_f64();
        let virtual_s = (live.now() - from) as f64 / 1_000.0;
        let view = live.view();
        let views = Instant::now();
        for _ in 0..60 {
            let _ = serde_json::to_string(&live.view()).unwrap();
        }
        println!(
            "{nodes} nodes, 10 calls/s: {:.1} virtual s per wall s; {} heights, {} calls; a view in JSON takes {:.2} ms",
            virtual_s / wall,
            view.nodes[0].finalized,
            view.stats.calls_executed,
            views.elapsed().as_secs_f64() * 1e3 / 60.0
        );
    }
}

