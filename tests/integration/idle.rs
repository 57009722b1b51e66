//! `swarm bench idle`: idle node processes of the built binary, per role
//! (head leader and follower, workers holding a lease, a worker in a
//! cluster without heads), report their CPU, wake-ups and memory; an idle
//! worker without heads wakes up only for membership and slow
//! housekeeping, and starts no task threads.

use crate::util::swarm_json;

/// The roles the bench reports, each with at least one process.
const ROLES: [&str; 5] = [
    "head leader",
    "head follower",
    "worker with lease and actor",
    "worker with lease",
    "worker without heads",
];

/// DESIGN.md "Scale": an idle node is cheap. Wake-ups are counted (context
/// switches), not timed: on this loaded 2-core VM a release node woken by
/// a 50 ms timer (and a 1 s certificate poll) switched ~40 times a second,
/// one woken only by SWIM probes (one a second, answered by each peer) and
/// slower housekeeping ~6-8, as 3832c1b's.
#[test]
fn idle_nodes_report_their_cost_per_role_and_a_worker_without_heads_sleeps() {
    let report = swarm_json(&[
        "bench",
        "idle",
        "--members",
        "2",
        "--idle-secs",
        "3",
        "--json",
    ]);
    eprintln!("{report}");
    let roles = report["roles"].as_array().expect("roles");
    let row = |role: &str| {
        roles
            .iter()
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("no row for {role}: {report}"))
    };
    for role in ROLES {
        let r = row(role);
        let figure = |key: &str| {
            r[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{role}: {key} missing: {r}"))
        };
        assert!(figure("processes") >= 1.0, "{role}: {r}");
        assert!(figure("threads") >= 1.0, "{role}: {r}");
        let (rss, anon, pss) = (figure("rss_mib"), figure("anon_mib"), figure("pss_mib"));
        // The binary's shared code makes the rest of RSS; PSS splits it.
        assert!(0.0 < anon && anon < rss, "{role}: {r}");
        assert!(anon <= pss && pss <= rss, "{role}: {r}");
        assert!(
            figure("cpu_pct") >= 0.0 && figure("wakeups_per_s") >= 0.0,
            "{role}: {r}"
        );
    }
    let plain = row("worker without heads");
    let wakeups = plain["wakeups_per_s"].as_f64().unwrap_or(f64::NAN);
    assert!(
        wakeups < IDLE_WAKEUPS_MAX,
        "an idle worker without heads woke {wakeups:.1} times a second (at most {IDLE_WAKEUPS_MAX}): {plain}"
    );
    // The main thread and the audit log's writer; task threads start
    // with the first sync task.
    let threads = plain["threads"].as_f64().unwrap_or(f64::NAN);
    assert!(
        threads <= 2.0,
        "an idle worker without heads runs {threads} threads: {plain}"
    );
}

/// Between the ~6-8 wake-ups a second of an idle worker without heads and
/// the ~40 of one with a 50 ms timer.
const IDLE_WAKEUPS_MAX: f64 = 15.0;
