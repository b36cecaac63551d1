//! Runs simulated subnets and prints what happened.
//!
//!   cargo run --release -p tabnet-consensus --example simulate -- 'seed=1 nodes=13 faults=crash,equivocate'
//!   cargo run --release -p tabnet-consensus --example simulate -- --soak 600   # random scenarios for 600 s
//!   … -- --bytes 'seed=1 nodes=4'   # also count the bytes sent (CBOR, as the native transport sends them)
//!
//! Each line is a scenario (see `Scenario`'s text form); a broken invariant prints the replay
//! command and exits with status 1.

use tabnet_consensus::faults_tolerated;
use tabnet_consensus::simulation::{run, Fault, Report, Scenario};

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
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
