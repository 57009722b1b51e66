//! The control-plane commands: `swarm actors`, `swarm heads`, `swarm types`,
//! `swarm spawn`, `swarm stop`, `swarm drain` and `swarm migrate`. Each starts a throw-away mesh-only node
//! with the identity of a configuration file (an operator certificate),
//! connects to one member, learns the heads from its member list and asks
//! the head leader.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;
use swarm::control::{ActorSpec, Control, DrainOutcome, PlacedRow};
use swarm::placement::{Placement, ResourceSet};
use swarm::supervision::{Backoff, Host, ListActors, ListTypes, Restart, HOST_ACTOR};
use swarm::{Node, NodeId};
use swarm_actors::cluster::{ClusterAgent, ListMembers, MemberRow, CLUSTER_ACTOR};

use rows::{ActorLine, HostRows, Names};

mod rows;

/// Runs `f` with a control client through `member`.
pub(crate) fn with_control<T, F, Fut>(config: &Path, member: SocketAddr, f: F) -> Result<T>
where
    F: FnOnce(Node, Control, Vec<MemberRow>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mesh = super::client_config(config)?;
    actix::System::new().block_on(async move {
        let node = super::secrets::start_client(mesh, member).await?;
        let control = node
            .control_through(member)
            .await
            .with_context(|| format!("no authenticated connection to {member}"))?;
        let peer = node
            .peers()
            .into_iter()
            .find(|p| p.addr == member)
            .map(|p| p.id);
        let members = match peer {
            Some(id) => node
                .remote::<ClusterAgent>(id, CLUSTER_ACTOR)
                .send(ListMembers)
                .await
                .with_context(|| format!("{member} did not list its members (membership off?)"))?,
            None => Vec::new(),
        };
        let result = f(node.clone(), control, members).await;
        node.close().await;
        result
    })
}

fn name_of(members: &[MemberRow], node: NodeId) -> String {
    Names::new(members).of(node)
}

/// The lines of `swarm actors`: the head's records, and each of their
/// nodes' hosts asked once (at most [`HOSTS_IN_FLIGHT`] at a time), joined
/// by [`rows::actor_lines`].
///
/// # Errors
///
/// When the head does not list its records.
pub(crate) async fn actor_rows(
    node: &Node,
    control: &Control,
    members: &[MemberRow],
) -> Result<Vec<ActorLine>> {
    let placed: Vec<PlacedRow> = control.placed().await?;
    // A passive or failed record's node runs nothing of it.
    let nodes: BTreeSet<NodeId> = placed
        .iter()
        .filter(|r| r.state == "placed")
        .map(|r| r.node)
        .collect();
    let mut hosts: BTreeMap<NodeId, HostRows> = BTreeMap::new();
    let mut asks = tokio::task::JoinSet::new();
    for id in nodes {
        if asks.len() >= HOSTS_IN_FLIGHT {
            if let Some(Ok((id, rows))) = asks.join_next().await {
                hosts.insert(id, rows);
            }
        }
        let host = node.remote::<Host>(id, HOST_ACTOR);
        asks.spawn_local(async move { (id, host.send(ListActors).await) });
    }
    while let Some(done) = asks.join_next().await {
        if let Ok((id, rows)) = done {
            hosts.insert(id, rows);
        }
    }
    Ok(rows::actor_lines(placed, &hosts, members))
}

/// Hosts asked for their actors at once by `swarm actors`.
const HOSTS_IN_FLIGHT: usize = 16;

/// A type the cluster can spawn, as `swarm types` lists it.
#[derive(Debug, Serialize)]
struct TypeLine {
    type_name: String,
    /// The names of the members whose host can start it.
    nodes: Vec<String>,
}

/// `swarm types`: asks every alive member's host which types it registers.
pub(crate) fn types(config: &Path, member: SocketAddr, json: bool) -> Result<()> {
    let (lines, silent) = with_control(config, member, |node, _, members| async move {
        let mut types: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut silent = Vec::new();
        for m in members.iter().filter(|m| m.state == "alive") {
            let (Ok(id), Ok(addr)) = (m.id.parse::<NodeId>(), m.addr.parse::<SocketAddr>()) else {
                continue;
            };
            // Only the member asked through is linked yet.
            if let Err(e) = node.connect(addr).await {
                silent.push(format!("{}: {e}", m.name));
                continue;
            }
            match node.remote::<Host>(id, HOST_ACTOR).send(ListTypes).await {
                Ok(names) => {
                    for name in names {
                        types.entry(name).or_default().push(m.name.clone());
                    }
                }
                Err(e) => silent.push(format!("{}: {e}", m.name)),
            }
        }
        let lines: Vec<TypeLine> = types
            .into_iter()
            .map(|(type_name, nodes)| TypeLine { type_name, nodes })
            .collect();
        Ok((lines, silent))
    })?;
    for s in &silent {
        eprintln!("swarm: no types from {s}");
    }
    if json {
        println!("{}", serde_json::to_string(&lines)?);
        return Ok(());
    }
    println!("{:<24} NODES", "TYPE");
    for l in &lines {
        println!("{:<24} {}", l.type_name, l.nodes.join(","));
    }
    if lines.is_empty() {
        println!("(no registered types)");
    }
    Ok(())
}

pub(crate) fn actors(config: &Path, member: SocketAddr, json: bool) -> Result<()> {
    let lines = with_control(config, member, |node, control, members| async move {
        actor_rows(&node, &control, &members).await
    })?;
    if json {
        println!("{}", serde_json::to_string(&lines)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<12} {:<12} {:>6} {:>8} {:>8} {:<24} GROUP",
        "NAME", "TYPE", "NODE", "STATE", "EPOCH", "RESTARTS", "JOURNAL", "RESOURCES"
    );
    for l in &lines {
        println!(
            "{:<20} {:<16} {:<12} {:<12} {:>6} {:>8} {:>8} {:<24} {}",
            l.name,
            l.type_name,
            l.node_name,
            l.state,
            l.epoch,
            l.restarts.map_or_else(|| "-".to_owned(), |r| r.to_string()),
            l.journal_seq
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            resources(&l.resources),
            l.group
                .as_ref()
                .map_or_else(|| "-".to_owned(), |(g, b)| format!("{g}[{b}]")),
        );
    }
    if lines.is_empty() {
        println!("(no named actors)");
    }
    Ok(())
}

pub(crate) fn resources(r: &ResourceSet) -> String {
    let mut parts = Vec::new();
    if r.cpus > 0.0 {
        parts.push(format!("cpus={}", r.cpus));
    }
    if r.gpus > 0 {
        parts.push(format!("gpus={}", r.gpus));
    }
    if r.memory > 0 {
        parts.push(format!("mem={}", r.memory));
    }
    for (name, amount) in &r.custom {
        parts.push(format!("{name}={amount}"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(",")
    }
}

/// One head as `swarm heads` shows it.
#[derive(Debug, Serialize)]
struct HeadLine {
    node: String,
    name: String,
    role: String,
    leader: Option<String>,
    term: u64,
    voters: Vec<String>,
    last_log: u64,
    applied: u64,
    lag: Vec<(String, u64)>,
    error: Option<String>,
}

pub(crate) fn heads(config: &Path, member: SocketAddr, json: bool) -> Result<()> {
    let lines = with_control(config, member, |_, control, members| async move {
        let rows = control.head_status().await;
        let names = Names::new(&members);
        let name_of = |_: &[MemberRow], n: NodeId| names.of(n);
        Ok(rows
            .into_iter()
            .map(|(node, row)| match row {
                Ok(row) => HeadLine {
                    node: node.to_string(),
                    name: name_of(&members, node),
                    role: row.role,
                    leader: row.leader.map(|l| name_of(&members, l)),
                    term: row.term,
                    voters: row.voters.iter().map(|v| name_of(&members, *v)).collect(),
                    last_log: row.last_log,
                    applied: row.applied,
                    lag: row
                        .lag
                        .iter()
                        .map(|(n, l)| (name_of(&members, *n), *l))
                        .collect(),
                    error: None,
                },
                Err(e) => HeadLine {
                    node: node.to_string(),
                    name: name_of(&members, node),
                    role: if matches!(e, swarm::AskError::Forbidden { .. }) {
                        "refused".to_owned()
                    } else {
                        "unreachable".to_owned()
                    },
                    leader: None,
                    term: 0,
                    voters: Vec::new(),
                    last_log: 0,
                    applied: 0,
                    lag: Vec::new(),
                    error: Some(e.to_string()),
                },
            })
            .collect::<Vec<_>>())
    })?;
    if json {
        println!("{}", serde_json::to_string(&lines)?);
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<12} {:>6} {:>9} {:>9} {:<24} LAG",
        "HEAD", "ROLE", "LEADER", "TERM", "LAST LOG", "APPLIED", "VOTERS"
    );
    for h in &lines {
        println!(
            "{:<12} {:<10} {:<12} {:>6} {:>9} {:>9} {:<24} {}",
            h.name,
            h.role,
            h.leader.as_deref().unwrap_or("-"),
            h.term,
            h.last_log,
            h.applied,
            h.voters.join(","),
            h.lag
                .iter()
                .map(|(n, l)| format!("{n}:{l}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if lines.is_empty() {
        println!("(no node has the head role)");
    }
    Ok(())
}

/// What `swarm spawn` asks for.
pub(crate) struct SpawnArgs {
    pub(crate) type_name: String,
    pub(crate) name: String,
    pub(crate) args: String,
    pub(crate) cpus: f64,
    pub(crate) gpus: u32,
    pub(crate) memory: u64,
    pub(crate) resources: Vec<(String, f64)>,
    pub(crate) placement: String,
    pub(crate) restarts: Option<usize>,
    pub(crate) group: Option<String>,
    pub(crate) get_if_exists: bool,
    /// Passivate after this many ms idle.
    pub(crate) passivate_after: Option<u64>,
}

/// Parses `pack`, `spread`, `node:NAME_OR_ID[:soft]`, `label:L[:soft]`.
fn placement(text: &str, members: &[MemberRow]) -> Result<Placement> {
    let mut parts = text.split(':');
    let kind = parts.next().unwrap_or_default();
    let what = parts.next();
    let hard = match parts.next() {
        None | Some("hard") => true,
        Some("soft") => false,
        Some(other) => anyhow::bail!("{other:?} is not hard or soft"),
    };
    Ok(match (kind, what) {
        ("pack", None) => Placement::Pack,
        ("spread", None) => Placement::Spread,
        ("node", Some(node)) => Placement::Node {
            node: node_named(node, members)?,
            hard,
        },
        ("label", Some(label)) => Placement::Label {
            label: label.to_owned(),
            hard,
        },
        _ => anyhow::bail!(
            "placement {text:?}: use pack, spread, node:NAME[:soft] or label:LABEL[:soft]"
        ),
    })
}

/// A node by name, id, or mesh address.
fn node_named(text: &str, members: &[MemberRow]) -> Result<NodeId> {
    if let Ok(id) = text.parse::<NodeId>() {
        return Ok(id);
    }
    if let Some(id) = members
        .iter()
        .find(|m| m.name == text || m.addr == text)
        .and_then(|m| m.id.parse().ok())
    {
        return Ok(id);
    }
    // An id prefix, as listings show ids short: one member only.
    let prefixed: Vec<&MemberRow> = members
        .iter()
        .filter(|m| !text.is_empty() && m.id.starts_with(text))
        .collect();
    match prefixed.as_slice() {
        [one] => one
            .id
            .parse()
            .with_context(|| format!("member id {:?}", one.id)),
        [] => anyhow::bail!("no member named {text:?}"),
        _ => anyhow::bail!(
            "{text:?} is the prefix of {} members' ids: give more of it",
            prefixed.len()
        ),
    }
}

pub(crate) fn spawn(config: &Path, member: SocketAddr, s: SpawnArgs, json: bool) -> Result<()> {
    let value: serde_json::Value = serde_json::from_str(&s.args).context("--args is not JSON")?;
    let args = rmp_serde::to_vec_named(&value).context("--args cannot be encoded")?;
    let located = with_control(config, member, |_, control, members| async move {
        let mut resources = ResourceSet {
            cpus: s.cpus,
            memory: s.memory,
            gpus: s.gpus,
            ..ResourceSet::default()
        };
        for (name, amount) in &s.resources {
            resources = resources.with(name, *amount);
        }
        let restart = match s.restarts {
            None => Restart::never(),
            Some(max) => Restart::on_failure().max(max).backoff(Backoff::exponential(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(5),
            )),
        };
        let bundle = match &s.group {
            None => None,
            Some(g) => {
                let (group, index) = g
                    .rsplit_once(':')
                    .context("--group is GROUP:BUNDLE, e.g. g:0")?;
                Some((group.to_owned(), index.parse().context("bundle index")?))
            }
        };
        let spec = ActorSpec {
            type_name: s.type_name,
            args,
            resources,
            placement: placement(&s.placement, &members)?,
            restart,
            bundle,
            replace_on_escalation: true,
            idle_after_ms: s.passivate_after,
        };
        let located = control.spawn_spec(&s.name, spec, s.get_if_exists).await?;
        let node_name = name_of(&members, located.node);
        Ok((s.name, located, node_name))
    })?;
    let (name, located, node_name) = located;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "name": name,
                "node": located.node.to_string(),
                "node_name": node_name,
                "epoch": located.epoch,
                "type": located.type_name,
            })
        );
    } else {
        println!(
            "{name}: {} on {node_name} (epoch {})",
            located.type_name, located.epoch
        );
    }
    Ok(())
}

pub(crate) fn stop(config: &Path, member: SocketAddr, name: &str, json: bool) -> Result<()> {
    with_control(config, member, |_, control, _| async move {
        Ok(control.stop(name).await?)
    })?;
    if json {
        println!("{}", serde_json::json!({ "stopped": name }));
    } else {
        println!("{name}: stopped");
    }
    Ok(())
}

/// One actor of a drain as `swarm drain --json` prints it.
#[derive(Debug, Serialize)]
struct DrainLine {
    name: String,
    type_name: String,
    /// moved, cannot move, stopped, gone.
    outcome: &'static str,
    /// Where it runs now (moved).
    node: Option<String>,
    node_name: Option<String>,
    epoch: Option<u64>,
    /// Why it could not move.
    reason: Option<String>,
    /// What `swarm drain` prints for it.
    text: String,
}

/// `swarm drain NODE [--force]`: prints what became of each actor, and
/// fails (exit status 1) when the drain stopped because one cannot move.
pub(crate) fn drain(
    config: &Path,
    member: SocketAddr,
    node: &str,
    force: bool,
    json: bool,
) -> Result<()> {
    let (report, members) = with_control(config, member, |_, control, members| async move {
        let id = node_named(node, &members)?;
        Ok((control.drain(id, force).await?, members))
    })?;
    let names = Names::new(&members);
    let name_of = |n: NodeId| names.of(n);
    let summary = report.summary(name_of);
    if json {
        let actors: Vec<DrainLine> = report
            .actors
            .iter()
            .map(|a| {
                let (outcome, to, epoch, reason) = match &a.outcome {
                    DrainOutcome::Moved { node, epoch } => {
                        ("moved", Some(*node), Some(*epoch), None)
                    }
                    DrainOutcome::Stayed { reason } => ("cannot move", None, None, Some(reason)),
                    DrainOutcome::Stopped { reason } => ("stopped", None, None, Some(reason)),
                    _ => ("gone", None, None, None),
                };
                DrainLine {
                    name: a.name.clone(),
                    type_name: a.type_name.clone(),
                    outcome,
                    node: to.map(|n| n.to_string()),
                    node_name: to.map(name_of),
                    epoch,
                    reason: reason.map(ToString::to_string),
                    text: a.line(name_of),
                }
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "drained": name_of(report.node),
                "node": report.node.to_string(),
                "left": report.left,
                "moved": report.moved,
                "stayed": report.stayed,
                "stopped": report.stopped,
                "actors": actors,
                "summary": summary,
            })
        );
    } else {
        println!("{summary}");
        for actor in &report.actors {
            println!("  {}", actor.line(name_of));
        }
        let unlisted =
            (report.moved + report.stayed + report.stopped).saturating_sub(report.actors.len());
        if unlisted > 0 {
            println!("  ({unlisted} more not listed)");
        }
    }
    if !report.left {
        anyhow::bail!(
            "the drain of {} stopped: {} actor(s) cannot move",
            name_of(report.node),
            report.stayed
        );
    }
    Ok(())
}

/// `swarm migrate NAME --to NODE`: moves a named actor live and prints
/// where it runs now.
pub(crate) fn migrate(
    config: &Path,
    member: SocketAddr,
    name: &str,
    to: &str,
    json: bool,
) -> Result<()> {
    let ((node, epoch), members) =
        with_control(config, member, |_, control, members| async move {
            let id = node_named(to, &members)?;
            Ok((control.migrate(name, id).await?, members))
        })?;
    let node_name = Names::new(&members).of(node);
    if json {
        let moved = serde_json::json!({
            "migrated": name,
            "node": node.to_string(),
            "node_name": node_name,
            "epoch": epoch,
        });
        println!("{moved}");
    } else {
        println!("{name}: moved to {node_name} (epoch {epoch})");
    }
    Ok(())
}

/// `swarm cert revoke NAME|SERIAL`: a serial, or the serial of
/// `CA_DIR/NAME.cert`.
pub(crate) fn revoke(
    config: &Path,
    member: SocketAddr,
    target: &str,
    ca_dir: &Path,
    json: bool,
) -> Result<()> {
    let (serial, name) = match target.parse::<u64>() {
        Ok(serial) => (serial, format!("serial {serial}")),
        Err(_) => {
            let path = ca_dir.join(format!("{target}.cert"));
            let cert = swarm::credentials::read_cert(&path).with_context(|| {
                format!("{target} is not a serial, and its certificate is not in {} (pass the serial, or --ca-dir)", ca_dir.display())
            })?;
            (cert.body().serial, target.to_owned())
        }
    };
    let (new, all) = with_control(config, member, |_, control, _| async move {
        let new = control.revoke(serial, &name).await?;
        Ok((new, control.revoked().await?))
    })?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "serial": serial, "new": new, "revoked": all })
        );
    } else if new {
        println!("certificate {serial} revoked: every node closes its links within a lease renewal (a fifth of the lease; 600 ms by default) and refuses its handshakes");
    } else {
        println!("certificate {serial} was revoked already");
    }
    Ok(())
}

/// `swarm keys rotate --capabilities`: the head group's capability key
/// moves to its next generation.
pub(crate) fn rotate_capabilities(config: &Path, member: SocketAddr) -> Result<()> {
    let generation = with_control(config, member, |_, control, _| async move {
        Ok(control.rotate_capability_key().await?)
    })?;
    println!("capability key at generation {generation}: every operator's login ends on each node with its next lease grant (a fifth of the lease; 600 ms by default); operators log in again");
    Ok(())
}
