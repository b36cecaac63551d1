//! The subnet under the deterministic simulator: safety and liveness invariants across seeds,
//! subnet sizes and fault mixes. A failure prints the command that replays it.

use tabnet_consensus::faults_tolerated;
use tabnet_consensus::simulation::{check, run, Fault, Scenario};

#[test]
fn four_honest_nodes_finalize_and_execute_everything() {
    let report = check(&Scenario::new(1, 4));
    assert!(report.finalized_min > 20, "{report:?}");
    assert_eq!(report.ingress_executed, report.ingress_submitted);
    assert!(report.certified_min + 2 >= report.finalized_min);
}

/// The Byzantine behaviours, taken in turn by seed.
const BYZANTINE: [Fault; 6] = [Fault::Equivocate, Fault::NotarizeAll, Fault::BadSignatures, Fault::Replay, Fault::Flood, Fault::Silent];

/// The scenarios of the bounded sweep: every size, several seeds, each fault mix.
fn sweep() -> Vec<Scenario> {
    let mut all = Vec::new();
    for nodes in [4, 7, 13] {
        let f = faults_tolerated(nodes);
        let seeds: u64 = if nodes == 13 { 2 } else { 3 };
        for seed in 1..=seeds {
            let base = Scenario { duration: if nodes == 13 { 12_000 } else { 15_000 }, ..Scenario::new(seed * 1_000 + nodes as u64, nodes) };
            all.push(base.clone());
            all.push(Scenario { faults: vec![Fault::Crash; f], ..base.clone() });
            all.push(Scenario { faults: vec![Fault::Restart; f], ..base.clone() });
            // Down for many catch-up intervals: back by state sync.
            let duration = base.duration + 6_000;
            all.push(Scenario { faults: vec![Fault::Restart; f], dkg_interval: 10, downtime: 6_000, duration, ..base.clone() });
            let byzantine = (0..f).map(|k| BYZANTINE[(seed as usize + k) % BYZANTINE.len()]).collect();
            all.push(Scenario { faults: byzantine, ..base.clone() });
            // An unreliable network: loss, duplicates, reordering, a partition that heals.
            all.push(Scenario {
                loss_per_million: 50_000,
                duplicate_per_million: 50_000,
                min_delay: 5,
                max_delay: 200,
                partition: true,
                faults: vec![BYZANTINE[seed as usize % BYZANTINE.len()]; f],
                ..base.clone()
            });
            // f + 1 faulty: it may stop, but never finalizes conflicting blocks.
            all.push(Scenario { faults: (0..=f).map(|k| [Fault::NotarizeAll, Fault::Equivocate][k % 2]).collect(), ..base });
        }
    }
    all
}

#[test]
fn a_bounded_sweep_keeps_every_invariant() {
    let mut failures = Vec::new();
    let scenarios = sweep();
    let mut state_syncs = 0;
    for scenario in &scenarios {
        let report = run(scenario, false);
        state_syncs += report.state_syncs;
        if !report.ok() {
            failures.push(format!("{}\n    {}\n    replay: {}", scenario, report.violations.join("\n    "), scenario.replay_command()));
        }
    }
    assert!(failures.is_empty(), "{} of {} scenarios broke an invariant:\n{}", failures.len(), scenarios.len(), failures.join("\n"));
    assert!(state_syncs >= 5, "the long-downtime scenarios should come back by state sync ({state_syncs} did)");
}

#[test]
fn a_node_down_for_many_intervals_comes_back_by_state_sync_past_a_lying_peer() {
    // 7 nodes: one restarts after ~35 heights with a catch-up package every 10 (the others keep
    // blocks only an interval back), one serves corrupt state chunks and bad signatures.
    let scenario: Scenario = "seed=5 nodes=7 faults=restart,bad-signatures interval=10 downtime=7000 duration=16000".parse().unwrap();
    let report = check(&scenario);
    assert!(report.state_syncs >= 1, "{report:?}");
    // With the default interval the same downtime is caught up by blocks.
    let by_blocks = check(&Scenario { dkg_interval: 500, ..scenario });
    assert_eq!(by_blocks.state_syncs, 0);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let scenario: Scenario = "seed=99 nodes=7 faults=restart,flood loss=20000 partition=true duration=8000".parse().unwrap();
    let (a, b) = (run(&scenario, false), run(&scenario, false));
    assert_eq!((a.finalized_min, a.finalized_max, a.messages_delivered, a.crypto), (b.finalized_min, b.finalized_max, b.messages_delivered, b.crypto));
    assert_eq!(scenario.to_string().parse::<Scenario>().unwrap(), scenario, "the printed form parses back");
}

#[test]
fn replay() {
    // Replays the scenario in TABNET_SIM (as printed by a failing run); without it, a default one.
    let scenario: Scenario = match std::env::var("TABNET_SIM") {
        Ok(s) => s.parse().expect("TABNET_SIM is a scenario line"),
        Err(_) => "seed=7 nodes=4 faults=equivocate".parse().unwrap(),
    };
    let report = run(&scenario, false);
    println!("{report:#?}");
    assert!(report.ok(), "{}", report.violations.join("\n"));
}

/// Latencies (virtual ms, from the maker's round start) of the blocks of `rank` finalized.
fn latencies(scenario: &Scenario, rank: u32) -> Vec<u64> {
    let report = check(scenario);
    let mut v: Vec<u64> = report.latency.iter().filter(|l| l.rank == rank).map(|l| l.from_round_start).collect();
    v.sort_unstable();
    v
}

#[test]
fn finality_takes_three_message_delays_and_a_unit_more_when_rank_0_is_down() {
    // A synchronous network (every message takes exactly δ) and no notary delay.
    let delta = 100;
    let unit = 1_000;
    let base: Scenario = format!("seed=5 nodes=4 delay={delta}..{delta} notary=0 unit={unit} duration=30000").parse().unwrap();
    let rank0 = latencies(&base, 0);
    assert!(rank0.len() > 50);
    assert_eq!(rank0[rank0.len() / 2], 3 * delta, "propose, notarize, finalize");
    // One node crashes; at the heights where it is the rank-0 maker, rank 1 steps in.
    let crashed = Scenario { faults: vec![Fault::Crash], ..base };
    let rank1 = latencies(&crashed, 1);
    assert!(!rank1.is_empty());
    assert_eq!(rank1[rank1.len() / 2], unit + 3 * delta);
}
