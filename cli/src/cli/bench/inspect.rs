//! `swarm bench inspect`: what the console's counters cost, each figure
//! beside its baseline from the same run, on the same pair of nodes.
//!
//! Node a asks and tells node b's demo actors in blocks; between blocks b
//! switches mode: counters off, counters on, on with a console attached
//! (an observer inspecting b ten times a second, ten times the console's
//! refresh), and on with both actors traced as well. The modes rotate
//! through eight rounds (each round starting with the next mode), so
//! drift and a block's place in a round fall on every mode alike.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Arbiter;
use anyhow::Result;
use serde::Serialize;
use swarm::inspect::{Inspect, Inspector, SetTrace, INSPECT_ACTOR};
use swarm::Node;
use swarm_cli::demo::{Adder, Counter, Echo};

use super::measure::{blast, config, on, on_async, wait_count};

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

/// How b runs during a block.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    On,
    Console,
    Traced,
}

const MODES: [Mode; 4] = [Mode::Off, Mode::On, Mode::Console, Mode::Traced];

/// One mode's samples.
#[derive(Default)]
struct Samples {
    rtts: Vec<Duration>,
    tells: u64,
    tell_time: Duration,
}

pub(crate) fn run(scale: f64) -> Result<InspectReport> {
    let n = move |base: u64| ((base as f64 * scale).max(1.0)) as u64;
    actix::System::new().block_on(async move {
        let ca = swarm::credentials::Throwaway::new("bench");
        let threads = [Arbiter::new(), Arbiter::new(), Arbiter::new()];
        let a = Node::start_on(&threads[0].handle(), config(&ca, "a")).await?;
        let b = Node::start_on(&threads[1].handle(), config(&ca, "b")).await?;
        let b2 = b.clone();
        on(&threads[1], move || swarm_cli::demo::expose_workload(&b2)).await??;
        a.connect(b.listen_addr()).await?;
        let mut observer_config = config(&ca, "observer");
        observer_config.handshake = ca.node("observer", &["worker", "operator"]);
        let observer = Node::start_on(&threads[2].handle(), observer_config).await?;
        observer.connect(b.listen_addr()).await?;
        let inspector = observer.remote::<Inspector>(b.id(), INSPECT_ACTOR);
        let attached = Arc::new(AtomicBool::new(false));
        let inspections = Arc::new(AtomicU64::new(0));
        let (flag, count, console) = (
            Arc::clone(&attached),
            Arc::clone(&inspections),
            inspector.clone(),
        );
        threads[2].spawn_fn(move || {
            actix_rt::spawn(watch(console, flag, count));
        });

        let mut samples: [Samples; 4] = Default::default();
        let mut sent = 0;
        for round in 0..8 {
            for k in 0..MODES.len() {
                let i = (round + k) % MODES.len();
                let mode = MODES[i];
                b.set_counters(mode != Mode::Off);
                attached.store(
                    matches!(mode, Mode::Console | Mode::Traced),
                    Ordering::Relaxed,
                );
                for actor in ["adder", "counter"] {
                    let trace = SetTrace {
                        actor: actor.into(),
                        on: mode == Mode::Traced,
                    };
                    inspector.send(trace).await?.map_err(anyhow::Error::msg)?;
                }
                let (a2, target) = (a.clone(), b.id());
                let (asks, tells) = (n(5_000), n(500_000));
                let block =
                    on_async(&threads[0], move || block(a2, target, asks, tells, sent)).await??;
                sent += tells;
                let s = &mut samples[i];
                s.rtts.extend(block.0);
                s.tells += tells;
                s.tell_time += block.1;
            }
        }
        a.shutdown();
        b.shutdown();
        observer.shutdown();
        for thread in &threads {
            thread.stop();
        }
        let p50 = |s: &mut Samples| {
            s.rtts.sort();
            s.rtts
                .get(s.rtts.len() / 2)
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        let rate = |s: &Samples| s.tells as f64 / s.tell_time.as_secs_f64().max(1e-9);
        let [off, on, console, traced] = &mut samples;
        Ok(InspectReport {
            ask_rtt_p50_us_counters_off: p50(off),
            ask_rtt_p50_us_counters_on: p50(on),
            ask_rtt_p50_us_console: p50(console),
            ask_rtt_p50_us_traced: p50(traced),
            tells_per_s_counters_off: rate(off),
            tells_per_s_counters_on: rate(on),
            tells_per_s_console: rate(console),
            tells_per_s_traced: rate(traced),
            inspections: inspections.load(Ordering::Relaxed),
        })
    })
}

/// One block from a: `asks` timed asks (64-byte echoes), then `tells`
/// tells (64 bytes, sequence numbers from `first`) until all arrived.
async fn block(
    a: Node,
    target: swarm::NodeId,
    asks: u64,
    tells: u64,
    first: u64,
) -> Result<(Vec<Duration>, Duration)> {
    let adder = a.remote::<Adder>(target, "adder");
    let counter = a.remote::<Counter>(target, "counter");
    let payload = vec![7u8; 64];
    let mut rtts = Vec::with_capacity(asks as usize);
    for _ in 0..asks {
        let t = Instant::now();
        adder
            .send(Echo {
                data: payload.clone(),
            })
            .await?;
        rtts.push(t.elapsed());
    }
    let t = Instant::now();
    blast(&counter, tells, first, 64).await?;
    wait_count(&counter, first + tells).await?;
    Ok((rtts, t.elapsed()))
}

/// The console's side: while `attached`, inspects b every 100 ms.
async fn watch(
    inspector: swarm::RemoteAddr<Inspector>,
    attached: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if attached.load(Ordering::Relaxed) && inspector.send(Inspect).await.is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}
