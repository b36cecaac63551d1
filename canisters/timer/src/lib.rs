//! `timer`: ic-cdk-timers (global timer + self-calls to the timer executor) and a heartbeat.
//! `init` schedules one timer; `schedule` and `start_interval` add more. Every firing counts.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static FIRINGS: Cell<u64> = const { Cell::new(0) };
    static BEATS: Cell<u64> = const { Cell::new(0) };
}

fn count_firing() {
    FIRINGS.set(FIRINGS.get() + 1);
}

/// Schedules one timer one second after install.
#[ic_cdk::init]
fn init() {
    ic_cdk_timers::set_timer(Duration::from_secs(1), async { count_firing() });
}

/// Schedules a one-shot timer `delay_ms` milliseconds from now.
#[ic_cdk::update]
fn schedule(delay_ms: u64) {
    ic_cdk_timers::set_timer(Duration::from_millis(delay_ms), async { count_firing() });
}

/// Starts a repeating timer with the given period.
#[ic_cdk::update]
fn start_interval(period_ms: u64) {
    ic_cdk_timers::set_timer_interval(Duration::from_millis(period_ms), || async {
        count_firing()
    });
}

/// Timer firings so far.
#[ic_cdk::query]
fn count() -> u64 {
    FIRINGS.get()
}

#[ic_cdk::heartbeat]
fn heartbeat() {
    BEATS.set(BEATS.get() + 1);
}

/// Heartbeats so far.
#[ic_cdk::query]
fn beats() -> u64 {
    BEATS.get()
}

/// The canister's view of time (nanoseconds since the epoch).
#[ic_cdk::query]
fn now() -> u64 {
    ic_cdk::api::time()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod did_test {
    include!("../../did_test.rs");
}
