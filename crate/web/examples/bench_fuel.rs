//! Native half of the execution benchmark: the same compute canister as www/bench.mjs runs in
//! the browser. Usage: `bench_fuel [runs [iterations]] [-v]` (default 30 runs of 5000000 loop
//! turns) prints the median and range of the last two thirds of the runs (`-v`: every run too).
//! `bench_fuel --serve` reads a number of loop turns per line of standard input and answers each
//! with one run as `{"fuel":…,"millis":…}`: scripts/bench-browser.mjs alternates these with
//! runs in the browser.
use std::io::{BufRead, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve") {
        return serve();
    }
    let verbose = args.iter().any(|a| a == "-v");
    let numbers: Vec<u64> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(|a| {
            a.parse()
                .expect("usage: bench_fuel [runs [iterations]] [-v] | bench_fuel --serve")
        })
        .collect();
    let runs = numbers.first().copied().unwrap_or(30).max(1) as usize;
    let iterations = numbers.get(1).copied().unwrap_or(5_000_000);
    let epoch = Instant::now();
    let clock = || epoch.elapsed().as_secs_f64() * 1e3;
    let mut rates = Vec::new();
    for run in 0..runs {
        let r =
            tabnet_web::bench::run_fuel(iterations, &clock).expect("the benchmark canister runs");
        assert_eq!(
            r.fuel,
            tabnet_web::bench::expected_fuel(iterations),
            "fuel is deterministic"
        );
        let rate = r.fuel as f64 / (r.millis / 1e3) / 1e6;
        if verbose {
            eprintln!(
                "native run {run}: {} fuel in {:.1} ms = {rate:.1} M fuel/s",
                r.fuel, r.millis
            );
        }
        rates.push(rate);
    }
    let warmup = runs.div_ceil(3).min(runs - 1);
    let first = rates[0];
    let mut steady = rates.split_off(warmup);
    steady.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "native: first run {first:.1} M fuel/s; runs {warmup}..{}: median {:.1} M fuel/s (range {:.1}–{:.1})",
        runs - 1,
        steady[steady.len() / 2],
        steady[0],
        steady[steady.len() - 1]
    );
}

fn serve() {
    let epoch = Instant::now();
    let clock = || epoch.elapsed().as_secs_f64() * 1e3;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let iterations: u64 = line
            .expect("stdin")
            .trim()
            .parse()
            .expect("a number of loop turns per line");
        let r =
            tabnet_web::bench::run_fuel(iterations, &clock).expect("the benchmark canister runs");
        writeln!(out, r#"{{"fuel":{},"millis":{}}}"#, r.fuel, r.millis)
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}
