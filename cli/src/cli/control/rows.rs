//! The rows of `swarm actors`: the head's records joined with what each
//! node's host reports, and node ids with member names. Every join goes
//! through a map built once, so 100,000 actors on 1,000 nodes cost one
//! pass each (the asking is in `control.rs`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use swarm::control::PlacedRow;
use swarm::placement::ResourceSet;
use swarm::supervision::ActorRow;
use swarm::{AskError, NodeId};
use swarm_actors::cluster::MemberRow;

/// What one node's host answered to `ListActors`.
pub(crate) type HostRows = Result<Vec<ActorRow>, AskError>;

/// A named actor as `swarm actors` shows it: the head's record joined with
/// its node's host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ActorLine {
    pub(crate) name: String,
    pub(crate) type_name: String,
    pub(crate) node: String,
    pub(crate) node_name: String,
    /// placed/failed (head) and running/restarting/failed/missing (node).
    pub(crate) state: String,
    pub(crate) epoch: u64,
    pub(crate) restarts: Option<u64>,
    pub(crate) placements: u64,
    pub(crate) resources: ResourceSet,
    pub(crate) group: Option<(String, usize)>,
    /// A durable actor's journal: its last sequence number (from its
    /// node while it runs, from the head's embedded store while passive).
    pub(crate) journal_seq: Option<u64>,
    /// Its journal's backend, while it runs.
    pub(crate) journal_backend: Option<String>,
}

/// Member names by node id, parsed once (a member list of 1,000 nodes is
/// looked up once per row).
pub(crate) struct Names<'a> {
    by_id: HashMap<NodeId, &'a str>,
}

impl<'a> Names<'a> {
    /// Indexes `members` by id (rows whose id does not parse are left out).
    pub(crate) fn new(members: &'a [MemberRow]) -> Self {
        let by_id = members
            .iter()
            .filter_map(|m| Some((m.id.parse::<NodeId>().ok()?, m.name.as_str())))
            .collect();
        Self { by_id }
    }

    /// The member name of `node`, or its short id if no member has it.
    pub(crate) fn of(&self, node: NodeId) -> String {
        self.by_id
            .get(&node)
            .map_or_else(|| node.short(), |n| (*n).to_owned())
    }
}

/// Joins the head's records with the hosts' answers (by node): one line
/// per record, in the head's order. A record's host row is the one with
/// its name and epoch; a host that did not answer makes its records
/// `unreachable` (`refused` when it refused this identity).
pub(crate) fn actor_lines(
    placed: Vec<PlacedRow>,
    hosts: &BTreeMap<NodeId, HostRows>,
    members: &[MemberRow],
) -> Vec<ActorLine> {
    let names = Names::new(members);
    let running: HashMap<(NodeId, &str, u64), &ActorRow> = hosts
        .iter()
        .filter_map(|(node, rows)| Some((*node, rows.as_ref().ok()?)))
        .flat_map(|(node, rows)| {
            rows.iter()
                .map(move |a| ((node, a.name.as_str(), a.epoch), a))
        })
        .collect();
    placed
        .into_iter()
        .map(|r| {
            let mut journal = None;
            let (state, restarts) = if r.state != "placed" {
                (r.state, None)
            } else {
                match hosts.get(&r.node) {
                    Some(Ok(_)) => match running.get(&(r.node, r.name.as_str(), r.epoch)) {
                        Some(a) => {
                            journal.clone_from(&a.journal);
                            (a.state.clone(), Some(a.restarts))
                        }
                        None => ("starting".to_owned(), None),
                    },
                    // A host that refused this identity is not unreachable.
                    Some(Err(AskError::Forbidden { .. })) => ("refused".to_owned(), None),
                    _ => ("unreachable".to_owned(), None),
                }
            };
            ActorLine {
                node: r.node.to_string(),
                node_name: names.of(r.node),
                name: r.name,
                type_name: r.type_name,
                state,
                epoch: r.epoch,
                restarts,
                placements: r.placements,
                resources: r.resources,
                group: r.bundle,
                journal_seq: journal.as_ref().map(|(_, seq)| *seq).or(r.journal_seq),
                journal_backend: journal.map(|(backend, _)| backend),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> NodeId {
        NodeId::from_bytes([i; 16])
    }

    fn placed(name: &str, on: NodeId, epoch: u64, state: &str) -> PlacedRow {
        PlacedRow {
            name: name.to_owned(),
            type_name: "demo.Ledger".to_owned(),
            node: on,
            state: state.to_owned(),
            epoch,
            placements: 1,
            resources: ResourceSet::default(),
            bundle: None,
            journal_seq: None,
        }
    }

    fn running(name: &str, epoch: u64, state: &str, restarts: u64) -> ActorRow {
        ActorRow {
            name: name.to_owned(),
            type_name: "demo.Ledger".to_owned(),
            state: state.to_owned(),
            restarts,
            epoch,
            supervisor: String::new(),
            placed: true,
            history: Vec::new(),
            journal: None,
        }
    }

    fn member(id: NodeId, name: &str) -> MemberRow {
        serde_json::from_value(serde_json::json!({
            "id": id.to_string(), "name": name, "addr": "127.0.0.1:1", "roles": [],
            "state": "alive", "cpus": 0.0, "memory": 0, "gpus": 0, "custom": [],
            "cpu_percent": 0.0, "memory_used": 0, "services": 0, "relay": false,
            "reach": "direct",
        }))
        .expect("a member row")
    }

    /// The join as it was before the index: one search of the node's rows
    /// and of the member list per record (the reference the index must
    /// agree with).
    fn by_search(
        placed: Vec<PlacedRow>,
        hosts: &BTreeMap<NodeId, HostRows>,
        members: &[MemberRow],
    ) -> Vec<ActorLine> {
        placed
            .into_iter()
            .map(|r| {
                let on_node = hosts.get(&r.node).map(|rows| {
                    rows.as_ref().map(|rows| {
                        rows.iter()
                            .find(|a| a.name == r.name && a.epoch == r.epoch)
                            .cloned()
                    })
                });
                let (state, restarts) = match (&r.state[..], on_node) {
                    ("placed", Some(Ok(Some(a)))) => (a.state, Some(a.restarts)),
                    ("placed", Some(Ok(None))) => ("starting".to_owned(), None),
                    ("placed", Some(Err(AskError::Forbidden { .. }))) => {
                        ("refused".to_owned(), None)
                    }
                    ("placed", _) => ("unreachable".to_owned(), None),
                    (other, _) => (other.to_owned(), None),
                };
                let id = r.node.to_string();
                ActorLine {
                    node_name: members
                        .iter()
                        .find(|m| m.id == id)
                        .map_or_else(|| r.node.short(), |m| m.name.clone()),
                    node: id,
                    name: r.name,
                    type_name: r.type_name,
                    state,
                    epoch: r.epoch,
                    restarts,
                    placements: r.placements,
                    resources: r.resources,
                    group: r.bundle,
                    journal_seq: r.journal_seq,
                    journal_backend: None,
                }
            })
            .collect()
    }

    #[test]
    fn indexed_join_gives_the_rows_of_the_search_in_every_case() {
        let (a, b, c, d) = (node(1), node(2), node(3), node(4));
        let members = vec![member(a, "n1"), member(b, "n2"), member(c, "n3")];
        let rows = vec![
            placed("running", a, 5, "placed"),
            placed("old-epoch", a, 7, "placed"),
            placed("starting", a, 8, "placed"),
            placed("failed", a, 9, "failed: escalated"),
            placed("on-refusing", b, 3, "placed"),
            placed("on-silent", c, 4, "placed"),
            placed("on-unknown-member", d, 2, "placed"),
            // The same name on two nodes: each host's row is its own.
            placed("twin", a, 10, "placed"),
            placed("twin", d, 11, "placed"),
        ];
        let mut hosts: BTreeMap<NodeId, HostRows> = BTreeMap::new();
        hosts.insert(
            a,
            Ok(vec![
                running("running", 5, "running", 2),
                running("old-epoch", 6, "running", 0),
                running("twin", 10, "restarting", 1),
                running("not-placed", 1, "running", 0),
            ]),
        );
        hosts.insert(
            b,
            Err(AskError::Forbidden {
                reason: "no rule".to_owned(),
            }),
        );
        hosts.insert(
            c,
            Err(AskError::Timeout {
                after: std::time::Duration::from_secs(1),
            }),
        );
        hosts.insert(d, Ok(vec![running("twin", 11, "failed", 3)]));
        let lines = actor_lines(rows.clone(), &hosts, &members);
        assert_eq!(lines, by_search(rows, &hosts, &members));
        let states: Vec<(&str, &str, Option<u64>)> = lines
            .iter()
            .map(|l| (l.name.as_str(), l.state.as_str(), l.restarts))
            .collect();
        assert_eq!(
            states,
            [
                ("running", "running", Some(2)),
                ("old-epoch", "starting", None),
                ("starting", "starting", None),
                ("failed", "failed: escalated", None),
                ("on-refusing", "refused", None),
                ("on-silent", "unreachable", None),
                ("on-unknown-member", "starting", None),
                ("twin", "restarting", Some(1)),
                ("twin", "failed", Some(3)),
            ]
        );
        assert_eq!(lines[0].node_name, "n1");
        assert_eq!(lines[6].node_name, d.short());
    }

    /// 100,000 records on 1,000 nodes (the size): every line is
    /// joined with its own host row and named. The search it replaces took
    /// 27.6 s of CPU here; the bench times it (`swarm bench control
    /// --actors`), this checks the rows.
    #[test]
    fn a_running_durable_actor_shows_its_nodes_journal_and_a_passive_one_the_heads() {
        let a = node(1);
        let mut durable = placed("durable", a, 3, "placed");
        durable.journal_seq = Some(40);
        let mut sleeping = placed("sleeping", a, 2, "passive");
        sleeping.journal_seq = Some(17);
        let plain = placed("plain", a, 4, "placed");
        let mut row = running("durable", 3, "running", 0);
        row.journal = Some(("embedded".to_owned(), 42));
        let mut hosts = BTreeMap::new();
        hosts.insert(a, Ok(vec![row, running("plain", 4, "running", 0)]));
        let lines = actor_lines(vec![durable, sleeping, plain], &hosts, &[]);
        let shown: Vec<(&str, &str, Option<u64>, Option<&str>)> = lines
            .iter()
            .map(|l| {
                let backend = l.journal_backend.as_deref();
                (l.name.as_str(), l.state.as_str(), l.journal_seq, backend)
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("durable", "running", Some(42), Some("embedded")),
                ("sleeping", "passive", Some(17), None),
                ("plain", "running", None, None),
            ]
        );
    }

    #[test]
    #[ignore = "stress: 100,000 rows"]
    fn stress_a_hundred_thousand_records_on_a_thousand_nodes_join_each_to_its_host_row() {
        let nodes: Vec<NodeId> = (0..1_000u16)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..2].copy_from_slice(&i.to_be_bytes());
                NodeId::from_bytes(id)
            })
            .collect();
        let members: Vec<MemberRow> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| member(*n, &format!("n{i}")))
            .collect();
        let mut hosts: BTreeMap<NodeId, HostRows> = BTreeMap::new();
        let mut rows = Vec::new();
        for i in 0..100_000u64 {
            let on = nodes[(i % 1_000) as usize];
            let name = format!("b{i:06}");
            rows.push(placed(&name, on, i + 1, "placed"));
            if let Ok(list) = hosts.entry(on).or_insert_with(|| Ok(Vec::new())) {
                list.push(running(&name, i + 1, "running", i % 3));
            }
        }
        let lines = actor_lines(rows, &hosts, &members);
        assert_eq!(lines.len(), 100_000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line.state, "running");
            assert_eq!(line.restarts, Some(i as u64 % 3));
            assert_eq!(line.node_name, format!("n{}", i % 1_000));
        }
    }
}
