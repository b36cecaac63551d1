//! Runs simulated subnets and prints what happened.
//!
//!   cargo run --release -p tabnet-sim --example simulate -- 'seed=1 nodes=13 faults=crash,equivocate'
//!   cargo run --release -p tabnet-sim --example simulate -- --soak 600   # random scenarios for 600 s
//!   … -- --bytes 'seed=1 nodes=4'   # also count the bytes sent (CBOR, as the native transport sends them)
//!   … -- --figures                  # finality latency, simulator speed, bytes per block, crypto cost
//!
//! Each line is a scenario (see `Scenario`'s text form); a broken invariant prints the replay
//! command and exits with status 1.

use tabnet_consensus::faults_tolerated;
use tabnet_sim::subnet::{run, Fault, Report, Scenario};

fn show(r: &Report) {
    println!(
        "{}\n  finalized {}..{} certified ≥{} ingress {}/{} messages {} bytes {} (proposals {}) crypto {:?} wall {:.2}s{}",
        r.scenario,
        r.finalized_min,
        r.finalized_max,
        r.certified_min,
        r.ingress_executed,
        r.ingress_submitted,
        r.messages_delivered,
        r.bytes_sent,
        r.proposal_bytes_sent,
        r.crypto,
        r.wall_seconds,
        if r.ok() { String::new() } else { format!("\n  VIOLATIONS:\n    {}", r.violations.join("\n    ")) }
    );
    if std::env::var_os("SHOW_REJECTIONS").is_some() {
        println!("  rejections {:?}", r.rejections);
    }
    if r.peak_peer_frames > 0 {
        println!("  busiest second from one node to one peer: {} frames, {} bytes", r.peak_peer_frames, r.peak_peer_bytes);
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The figures, measured in the simulator.
fn figures() {
    let sc = |s: &str| -> Scenario { s.parse().unwrap() };
    println!("== finality latency (virtual; every message takes δ = 100 ms, no notary delay, unit delay 1000 ms)");
    let base = "seed=5 nodes=4 delay=100..100 notary=0 unit=1000 duration=30000";
    for (label, line, rank) in [("honest rank-0 maker", base.to_string(), 0), ("rank 0 crashed, rank 1 makes", format!("{base} faults=crash"), 1)] {
        let r = run(&sc(&line), false);
        let lat: Vec<u64> = r.latency.iter().filter(|l| l.rank == rank).map(|l| l.from_round_start).collect();
        println!("  {label}: median {} ms from round start = {:.1} δ (+ {} × unit) over {} blocks", median(lat.clone()), (median(lat) - 1000 * rank as u64) as f64 / 100.0, rank, r.latency.iter().filter(|l| l.rank == rank).count());
    }
    println!("== simulator speed (one core; delays 10..50 ms, 20 ingress/s; 100 s of virtual time, over 1,000 rounds)");
    for n in [4, 13, 40] {
        let r = run(&sc(&format!("seed=1 nodes={n} duration=100000 ingress=20")), false);
        println!("  n = {n:2}: {} rounds in {:.2} s = {:.0} rounds/s ({} messages)", r.finalized_max, r.wall_seconds, r.finalized_max as f64 / r.wall_seconds, r.messages_delivered);
    }
    println!("== bytes sent per node per finalized block (CBOR; n = 4, 200 ingress/s of 300 bytes)");
    for strip in [true, false] {
        let r = run(&sc(&format!("seed=2 nodes=4 duration=20000 ingress=200 size=300 strip={strip}")), true);
        let per = |b: u64| b / 4 / r.finalized_min.max(1);
        println!("  strip={strip}: {} bytes/node/block, of which proposals and fetched ingress {} ({} blocks)", per(r.bytes_sent), per(r.proposal_bytes_sent), r.finalized_min);
    }
    println!("== crypto per finalized height and node (real BLS12-381 + Ed25519, this machine)");
    for n in [4, 13] {
        let r = run(&sc(&format!("seed=3 nodes={n} duration=6000 crypto=bls")), false);
        let per = (n as u64 * r.finalized_min.max(1)) as f64;
        let c = r.crypto;
        println!(
            "  n = {n:2}: {:.1} ms/height/node; per height and node: {:.1} signed, {:.1} aggregates checked, {:.2} shares checked singly, {:.1} proposals checked",
            r.crypto_ms / per,
            c.signed as f64 / per,
            c.verified_aggregates as f64 / per,
            c.verified_shares as f64 / per,
            c.verified_proposals as f64 / per
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--figures") {
        figures();
        return;
    }
    if args.first().map(String::as_str) == Some("--soak") {
        let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
        let started = std::time::Instant::now();
        let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut runs = 0;
        while started.elapsed().as_secs() < seconds {
            seed += 1;
            let nodes = [4, 7, 10, 13][(seed % 4) as usize];
            let f = faults_tolerated(nodes);
            let count = (seed / 4 % (f as u64 + 2)) as usize;
            let faults = (0..count).map(|k| Fault::ALL[((seed / 7) as usize + k) % Fault::ALL.len()]).collect();
            let mut s = Scenario { faults, duration: 20_000, ..Scenario::new(seed, nodes) };
            if seed % 3 == 0 {
                (s.loss_per_million, s.duplicate_per_million, s.max_delay, s.partition) = (50_000, 20_000, 300, true);
            }
            if seed % 5 == 0 {
                s.slow_per_million = 30_000;
            }
            if seed % 7 == 0 {
                s.blackout = true;
            }
            let r = run(&s, false);
            runs += 1;
            if !r.ok() {
                show(&r);
                println!("replay: {}", s.replay_command());
                std::process::exit(1);
            }
        }
        println!("soak: {runs} scenarios, no invariant broken");
        return;
    }
    let measure_bytes = args.iter().any(|a| a == "--bytes");
    for line in args.iter().filter(|a| *a != "--bytes") {
        let scenario: Scenario = line.parse().unwrap_or_else(|e| panic!("{e}"));
        let r = run(&scenario, measure_bytes);
        show(&r);
        if !r.ok() {
            println!("replay: {}", scenario.replay_command());
            std::process::exit(1);
        }
    }
}
