//! `swarm bench inspect`: what the console's counters cost, each figure
//! beside its baseline from the same run.
//!
//! - Counters: ask round trip and tells/s from a to b with b's counters
//!   off, on, and on with a console attached (an observer inspecting b
//!   ten times a second, ten times the console's refresh).
//! - Tracing: the same with both actors the benchmark drives traced.
//!
//! The modes alternate, five rounds, and each reports its median: the
//! machine drifts over a run by more than the counters cost.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use swarm::inspect::{Inspect, Inspector, SetTrace, INSPECT_ACTOR};
use swarm::{MeshConfig, Node};

use super::measure::pair;

/// The figures.
#[derive(Debug, Serialize)]
pub(crate) struct InspectReport {
    ask_rtt_p50_us_counters_off: f64,
    ask_rtt_p50_us_counters_on: f64,
    ask_rtt_p50_us_console: f64,
    ask_rtt_p50_us_traced: f64,
    tells_per_s_counters_off: f64,
    tells_per_s_counters_on: f64,
    tells_per_s_console: f64,
    tells_per_s_traced: f64,
    inspections: u64,
}

impl InspectReport {
    pub(crate) fn table(&self) -> String {
        let ratio = |a: f64, b: f64| format!("{:+.1}%", 100.0 * (a / b - 1.0));
        let off = (
            self.ask_rtt_p50_us_counters_off,
            self.tells_per_s_counters_off,
        );
        let row = |what: &str, (ask, tells): (f64, f64), target: &'static str| {
            [
                (
                    format!("ask RTT p50, {what}"),
                    format!("{ask:.1} us vs {:.1} off ({})", off.0, ratio(ask, off.0)),
                    target,
                ),
                (
                    format!("tells/s, {what}"),
                    format!("{tells:.0} vs {:.0} off ({})", off.1, ratio(tells, off.1)),
                    target,
                ),
            ]
        };
        let rows = [
            row(
                "counters",
                (
                    self.ask_rtt_p50_us_counters_on,
                    self.tells_per_s_counters_on,
                ),
                "within 5%",
            ),
            row(
                "counters + console",
                (self.ask_rtt_p50_us_console, self.tells_per_s_console),
                "within 5%",
            ),
            row(
                "actors traced",
                (self.ask_rtt_p50_us_traced, self.tells_per_s_traced),
                "within 10%",
            ),
        ]
        .concat();
        let mut out = format!("{:<32} {:>36}   {}\n", "metric", "measured", "target");
        for (name, value, target) in rows {
            out.push_str(&format!("{name:<32} {value:>36}   {target}\n"));
        }
        out.push_str(&format!(
            "({} inspections of b answered during the runs)\n",
            self.inspections
        ));
        out
    }
}

/// How the receiving node runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    On,
    Console,
    Traced,
}

static INSPECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn run(scale: f64) -> Result<InspectReport> {
    let n = move |base: u64| ((base as f64 * scale).max(1.0)) as u64;
    let mut runs: [Vec<(f64, f64)>; 4] = Default::default();
    for _ in 0..5 {
        let modes = [Mode::Off, Mode::On, Mode::Console, Mode::Traced];
        for (i, mode) in modes.into_iter().enumerate() {
            let tune = move |b: &mut MeshConfig| b.counters = mode != Mode::Off;
            runs[i].push(pair(tune, n, move |observer, b| watch(observer, b, mode))?);
        }
    }
    let median = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = v.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [off, on, console, traced] = &runs;
    Ok(InspectReport {
        ask_rtt_p50_us_counters_off: median(off, |r| r.0),
        ask_rtt_p50_us_counters_on: median(on, |r| r.0),
        ask_rtt_p50_us_console: median(console, |r| r.0),
        ask_rtt_p50_us_traced: median(traced, |r| r.0),
        tells_per_s_counters_off: median(off, |r| r.1),
        tells_per_s_counters_on: median(on, |r| r.1),
        tells_per_s_console: median(console, |r| r.1),
        tells_per_s_traced: median(traced, |r| r.1),
        inspections: INSPECTIONS.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The console's side: inspects b every 100 ms (with its traces on, when
/// traced) until the run ends.
async fn watch(observer: MeshConfig, b: Node, mode: Mode) {
    if matches!(mode, Mode::Off | Mode::On) {
        return;
    }
    let Ok(me) = Node::start(observer).await else {
        return;
    };
    if me.connect(b.listen_addr()).await.is_err() {
        return;
    }
    let inspector = me.remote::<Inspector>(b.id(), INSPECT_ACTOR);
    if mode == Mode::Traced {
        for actor in ["adder", "counter"] {
            let on = SetTrace {
                actor: actor.into(),
                on: true,
            };
            if !matches!(inspector.send(on).await, Ok(Ok(()))) {
                return;
            }
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if inspector.send(Inspect).await.is_ok() {
            INSPECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
