//! Native half of the execution benchmark: the same compute canister as www/bench.js runs in
//! the browser. Prints fuel per second (first run apart: it includes nothing to warm natively,
//! but is reported the same way as in the browser).
use std::time::Instant;

fn main() {
    let epoch = Instant::now();
    let clock = || epoch.elapsed().as_secs_f64() * 1e3;
    let mut rates = Vec::new();
    for run in 0..6 {
        let r = tabnet_web::bench::run_fuel(5_000_000, &clock).expect("the benchmark canister runs");
        let rate = r.fuel as f64 / (r.millis / 1e3);
        if run > 0 {
            rates.push(rate);
        }
        eprintln!("native run {run}: {} fuel in {:.1} ms", r.fuel, r.millis);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "native: warm median {:.1} M fuel/s, best {:.1} M fuel/s",
        rates[rates.len() / 2] / 1e6,
        rates[rates.len() - 1] / 1e6
    );
}
