//! The console's views as pure functions of a [`ClusterView`]: which rows
//! a view shows, in which order, and how each cell reads. The terminal
//! console, `--once` tables and `--once --json` all come from here.

use std::collections::HashMap;
use std::ops::Range;

use swarm::inspect::{ActorView, ClusterView, LinkView, NodeView, ServiceView};
use swarm::tasks::{TaskState, TaskTable};

/// One of the console's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Members with their resources, load and Raft state.
    #[default]
    Nodes,
    /// Every exposed actor with its counters.
    Actors,
    /// Every link of every node.
    Links,
    /// Service instances as each node's balancer sees them.
    Services,
    /// Each node's task scheduler.
    Tasks,
    /// Membership changes, restarts, placements, moves, refusals.
    Events,
    /// The traced actor's messages.
    Trace,
}

impl View {
    /// Every view, in tab order.
    pub const ALL: [View; 7] = [
        View::Nodes,
        View::Actors,
        View::Links,
        View::Services,
        View::Tasks,
        View::Events,
        View::Trace,
    ];

    /// The view's name on the command line and in tabs.
    pub fn name(self) -> &'static str {
        match self {
            View::Nodes => "nodes",
            View::Actors => "actors",
            View::Links => "links",
            View::Services => "services",
            View::Tasks => "tasks",
            View::Events => "events",
            View::Trace => "trace",
        }
    }

    /// How many rows the view has.
    pub fn rows(self, cluster: &ClusterView) -> usize {
        match self {
            View::Nodes => cluster.nodes.len(),
            View::Actors => cluster.actors.len(),
            View::Links => cluster.links.len(),
            View::Services => cluster.services.len(),
            View::Tasks => cluster.tasks.len(),
            View::Events => cluster.events.len(),
            View::Trace => cluster.trace.len(),
        }
    }
}

impl std::str::FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        View::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = View::ALL.iter().map(|v| v.name()).collect();
                format!("no view {s:?}: one of {}", names.join(", "))
            })
    }
}

/// How the Actors view is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActorSort {
    /// By name (then node).
    #[default]
    Name,
    /// Largest backlog first.
    Backlog,
    /// Busiest first.
    Rate,
    /// Slowest handler (p99) first.
    Handling,
    /// Most errors first.
    Errors,
    /// Most restarts first.
    Restarts,
}

impl ActorSort {
    /// Every order, in the order `s` cycles through them.
    pub const ALL: [ActorSort; 6] = [
        ActorSort::Name,
        ActorSort::Backlog,
        ActorSort::Rate,
        ActorSort::Handling,
        ActorSort::Errors,
        ActorSort::Restarts,
    ];

    /// Its name (the column it sorts by).
    pub fn name(self) -> &'static str {
        match self {
            ActorSort::Name => "name",
            ActorSort::Backlog => "backlog",
            ActorSort::Rate => "rate",
            ActorSort::Handling => "handling",
            ActorSort::Errors => "errors",
            ActorSort::Restarts => "restarts",
        }
    }

    /// The next order.
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

impl std::str::FromStr for ActorSort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ActorSort::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("no sort order {s:?}"))
    }
}

/// Which actors the Actors view shows: every word must match the name,
/// type, node name or state (`node:NAME`, `type:T`, `state:S` and `name:N`
/// match that field only); system actors only if asked (`system`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorFilter {
    words: Vec<String>,
}

impl ActorFilter {
    /// A filter from what the user typed.
    pub fn parse(text: &str) -> Self {
        Self {
            words: text.split_whitespace().map(str::to_lowercase).collect(),
        }
    }

    /// Whether `actor` passes.
    pub fn matches(&self, actor: &ActorView) -> bool {
        let system = self.words.iter().any(|w| w == "system");
        if actor.system && !system {
            return false;
        }
        self.words.iter().filter(|w| *w != "system").all(|w| {
            let has = |field: &str| field.to_lowercase().contains(w.as_str());
            match w.split_once(':') {
                Some(("node", v)) => actor.node_name.to_lowercase().contains(v),
                Some(("type", v)) => actor.type_name.to_lowercase().contains(v),
                Some(("state", v)) => actor.state.to_lowercase() == v,
                Some(("name", v)) => actor.name.to_lowercase().contains(v),
                _ => {
                    has(&actor.name)
                        || has(&actor.type_name)
                        || has(&actor.node_name)
                        || has(&actor.state)
                }
            }
        })
    }
}

/// The actors `filter` lets through, in `sort` order.
pub fn actors<'a>(
    view: &'a ClusterView,
    sort: ActorSort,
    filter: &ActorFilter,
) -> Vec<&'a ActorView> {
    let mut rows: Vec<&ActorView> = view.actors.iter().filter(|a| filter.matches(a)).collect();
    let by_name = |a: &&ActorView, b: &&ActorView| {
        (a.name.as_str(), a.node_name.as_str()).cmp(&(b.name.as_str(), b.node_name.as_str()))
    };
    match sort {
        ActorSort::Name => rows.sort_by(by_name),
        ActorSort::Backlog => rows.sort_by(|a, b| b.backlog.cmp(&a.backlog).then(by_name(a, b))),
        ActorSort::Rate => rows.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(by_name(a, b))),
        ActorSort::Handling => rows.sort_by(|a, b| {
            b.handling_p99_us
                .total_cmp(&a.handling_p99_us)
                .then(by_name(a, b))
        }),
        ActorSort::Errors => rows.sort_by(|a, b| b.errors.cmp(&a.errors).then(by_name(a, b))),
        ActorSort::Restarts => rows.sort_by(|a, b| b.restarts.cmp(&a.restarts).then(by_name(a, b))),
    }
    rows
}

/// When an actor deserves attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alerts {
    /// Messages waiting.
    pub backlog: u64,
    /// Handler time p99, microseconds.
    pub handling_p99_us: f64,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            backlog: 1_000,
            handling_p99_us: 100_000.0,
        }
    }
}

impl Alerts {
    /// Why `actor` is highlighted, if it is.
    pub fn reason(&self, actor: &ActorView) -> Option<String> {
        if actor.backlog >= self.backlog {
            return Some(format!("backlog {} ≥ {}", actor.backlog, self.backlog));
        }
        if actor.handling_p99_us >= self.handling_p99_us {
            return Some(format!(
                "handler p99 {} ≥ {}",
                micros(actor.handling_p99_us),
                micros(self.handling_p99_us)
            ));
        }
        None
    }
}

/// A table: its header and its rows of cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column titles.
    pub header: Vec<&'static str>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// As fixed-width text, columns as wide as their widest cell.
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(self.header.clone());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// A duration in microseconds, short.
pub fn micros(us: f64) -> String {
    if us <= 0.0 {
        "-".to_owned()
    } else if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// A byte count, short.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

fn uptime(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Which rows of a view a table holds: a screen shows only what fits, so
/// a cluster of 10,000 actors costs a screenful of cells per refresh.
pub type Window = Range<usize>;

/// Every row.
pub const ALL_ROWS: Window = 0..usize::MAX;

fn window<'a, T: 'a>(
    items: impl Iterator<Item = T> + 'a,
    w: &Window,
) -> impl Iterator<Item = T> + 'a {
    items.skip(w.start).take(w.end.saturating_sub(w.start))
}

/// The Nodes view.
pub fn nodes_table(view: &ClusterView, w: &Window) -> Table {
    let header = vec![
        "NAME", "ID", "ROLES", "STATE", "CPU%", "MEM", "GPUS", "LOAD", "ACTORS", "LINKS", "UP",
        "HEAD",
    ];
    let rows = window(view.nodes.iter(), w).map(node_row).collect();
    Table { header, rows }
}

fn node_row(n: &NodeView) -> Vec<String> {
    let m = &n.member;
    let local = n.local.as_ref();
    let dash = || "-".to_owned();
    let head = local
        .and_then(|l| l.head.as_ref())
        .map_or_else(dash, |h| format!("{} @{}", h.role, h.applied));
    vec![
        m.name.clone(),
        m.id.chars().take(8).collect(),
        m.roles.join(","),
        match &n.error {
            Some(_) if m.state == "alive" => "alive?".to_owned(),
            _ => m.state.clone(),
        },
        format!("{:.0}", m.cpu_percent),
        format!("{}/{}", bytes(m.memory_used), bytes(m.memory)),
        m.gpus.to_string(),
        local.map_or_else(dash, |l| format!("{:.2}", l.load_average)),
        local.map_or_else(dash, |l| l.actors.to_string()),
        local.map_or_else(dash, |l| l.links.to_string()),
        local.map_or_else(dash, |l| uptime(l.uptime_s)),
        head,
    ]
}

/// The Actors view.
pub fn actors_table(rows: &[&ActorView]) -> Table {
    let header = vec![
        "NAME", "TYPE", "NODE", "STATE", "EPOCH", "RESTARTS", "BACKLOG", "MSG/S", "P50", "P99",
        "ERRORS",
    ];
    let rows = rows
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.type_name.clone(),
                a.node_name.clone(),
                a.state.clone(),
                a.epoch.to_string(),
                a.restarts.to_string(),
                a.backlog.to_string(),
                format!("{:.0}", a.rate),
                micros(a.handling_p50_us),
                micros(a.handling_p99_us),
                a.errors.to_string(),
            ]
        })
        .collect();
    Table { header, rows }
}

/// The Links view.
pub fn links_table(view: &ClusterView, w: &Window) -> Table {
    let header = vec![
        "NODE",
        "PEER",
        "ADDRESS",
        "AGE",
        "RTT",
        "MSG IN",
        "MSG OUT",
        "BYTES IN",
        "BYTES OUT",
        "QUEUED",
    ];
    let names = NodeNames::new(view);
    let name_of = |id: &str| names.of(id);
    let rows = window(view.links.iter(), w)
        .map(|l: &LinkView| {
            vec![
                name_of(&l.node),
                l.peer_name.clone(),
                l.addr.clone(),
                uptime(l.age_s as u64),
                micros(l.rtt_us),
                l.msgs_in.to_string(),
                l.msgs_out.to_string(),
                bytes(l.bytes_in),
                bytes(l.bytes_out),
                bytes(l.queue_bytes),
            ]
        })
        .collect();
    Table { header, rows }
}

/// Node names by id (hex), indexed once per table: a view of 1,000 nodes
/// names each row's node without searching the member list.
pub struct NodeNames<'a> {
    by_id: HashMap<&'a str, &'a str>,
}

impl<'a> NodeNames<'a> {
    /// Indexes the members of `cluster`.
    pub fn new(cluster: &'a ClusterView) -> Self {
        let by_id = cluster
            .nodes
            .iter()
            .map(|n| (n.member.id.as_str(), n.member.name.as_str()))
            .collect();
        Self { by_id }
    }

    /// The name of the node `id` (hex), or its short id if unknown.
    pub fn of(&self, id: &str) -> String {
        self.by_id
            .get(id)
            .map_or_else(|| id.chars().take(8).collect(), |n| (*n).to_owned())
    }
}

/// The Services view: each instance as each node's balancer sees it.
pub fn services_table(cluster: &ClusterView, w: &Window) -> Table {
    let header = vec![
        "SERVICE",
        "INSTANCE",
        "ACTOR",
        "SEEN FROM",
        "OUTSTANDING",
        "SENT",
        "LATENCY",
        "EJECTED",
    ];
    let mut sorted: Vec<&ServiceView> = cluster.services.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.service, &a.instance_node, &a.actor, &a.node).cmp(&(
            &b.service,
            &b.instance_node,
            &b.actor,
            &b.node,
        ))
    });
    let names = NodeNames::new(cluster);
    let rows = window(sorted.into_iter(), w)
        .map(|s| {
            vec![
                s.service.clone(),
                names.of(&s.instance_node),
                s.actor.clone(),
                names.of(&s.node),
                s.outstanding.to_string(),
                s.sent.to_string(),
                micros(s.latency_us),
                if s.ejected { "yes" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    Table { header, rows }
}

/// Tasks waiting (pending or queued), running, and ended on one node.
fn task_counts(table: &TaskTable) -> (usize, usize) {
    let waiting = table
        .rows
        .iter()
        .filter(|r| matches!(r.state, TaskState::Pending | TaskState::Queued))
        .count();
    let running = table
        .rows
        .iter()
        .filter(|r| r.state == TaskState::Running)
        .count();
    (waiting, running)
}

/// The Tasks view: each node's scheduler.
pub fn tasks_table(cluster: &ClusterView, w: &Window) -> Table {
    let header = vec![
        "NODE",
        "WAITING",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "SUBMITTED",
        "CPU FREE",
        "OBJECTS",
        "WAITS FOR",
    ];
    let names = NodeNames::new(cluster);
    let rows = window(cluster.tasks.iter(), w)
        .map(|t| {
            let (waiting, running) = task_counts(t);
            let node = t
                .node
                .map_or_else(|| "-".to_owned(), |n| names.of(&n.to_string()));
            let why = t
                .rows
                .iter()
                .find(|r| matches!(r.state, TaskState::Pending | TaskState::Queued))
                .and_then(|r| r.reason.clone())
                .unwrap_or_else(|| "-".to_owned());
            vec![
                node,
                waiting.to_string(),
                running.to_string(),
                t.finished.to_string(),
                t.failed.to_string(),
                t.submitted.to_string(),
                format!("{}/{}", t.free.cpus, t.total.cpus),
                format!("{} ({})", t.objects.0, bytes(t.objects.1)),
                why,
            ]
        })
        .collect();
    Table { header, rows }
}

/// A durable actor's journal, on one line (the detail pane).
pub fn journal(j: &swarm::inspect::JournalView) -> String {
    let snapshot = match (j.snapshot_seq, j.snapshot_at_ms) {
        (0, _) => "no snapshot".to_owned(),
        (seq, 0) => format!("snapshot at {seq}"),
        (seq, at) => format!("snapshot at {seq} ({})", clock(at)),
    };
    format!(
        "backend {}, epoch {} claim {}, last seq {}, {snapshot}, recovered in {:.1} ms, wrote {} events ({}), write p50/p99 {}/{}",
        j.backend,
        j.epoch,
        j.claim,
        j.last_seq,
        j.recovery_ms,
        j.events,
        bytes(j.bytes),
        micros(j.write_p50_us),
        micros(j.write_p99_us),
    )
}

/// A Unix time in milliseconds as `HH:MM:SS.mmm` (UTC).
pub fn clock(at_ms: u64) -> String {
    let s = at_ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        at_ms % 1000
    )
}

/// The Events view, newest first.
pub fn events_table(cluster: &ClusterView, w: &Window) -> Table {
    let header = vec!["TIME", "NODE", "KIND", "SUBJECT", "DETAIL"];
    let names = NodeNames::new(cluster);
    let rows = window(cluster.events.iter().rev(), w)
        .map(|e| {
            vec![
                clock(e.at_ms),
                names.of(&e.node),
                e.kind.clone(),
                e.subject.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    Table { header, rows }
}

/// The Trace view, newest first.
pub fn trace_table(cluster: &ClusterView, w: &Window) -> Table {
    let header = vec![
        "TIME", "TAG", "FROM", "KIND", "BYTES", "WAITED", "HANDLED", "RESULT",
    ];
    let names = NodeNames::new(cluster);
    let rows = window(cluster.trace.iter().rev(), w)
        .map(|t| {
            vec![
                clock(t.at_ms),
                t.tag.clone(),
                names.of(&t.from),
                t.kind.clone(),
                t.bytes.to_string(),
                micros(t.waited_us),
                micros(t.handled_us),
                t.result.clone(),
            ]
        })
        .collect();
    Table { header, rows }
}

/// One view's rows as JSON: the data model's own fields.
pub fn json(view: View, cluster: &ClusterView) -> serde_json::Value {
    let value = match view {
        View::Nodes => serde_json::to_value(&cluster.nodes),
        View::Actors => serde_json::to_value(&cluster.actors),
        View::Links => serde_json::to_value(&cluster.links),
        View::Services => serde_json::to_value(&cluster.services),
        View::Tasks => serde_json::to_value(&cluster.tasks),
        View::Events => serde_json::to_value(&cluster.events),
        View::Trace => serde_json::to_value(&cluster.trace),
    };
    value.unwrap_or(serde_json::Value::Null)
}

/// One view as a text table (system actors included).
pub fn text(view: View, cluster: &ClusterView) -> String {
    match view {
        View::Nodes => nodes_table(cluster, &ALL_ROWS).text(),
        View::Actors => {
            let all = ActorFilter::parse("system");
            actors_table(&actors(cluster, ActorSort::Name, &all)).text()
        }
        View::Links => links_table(cluster, &ALL_ROWS).text(),
        View::Services => services_table(cluster, &ALL_ROWS).text(),
        View::Tasks => tasks_table(cluster, &ALL_ROWS).text(),
        View::Events => events_table(cluster, &ALL_ROWS).text(),
        View::Trace => trace_table(cluster, &ALL_ROWS).text(),
    }
}

#[cfg(test)]
mod tests;
