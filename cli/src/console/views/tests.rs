use swarm::inspect::{ActorView, ClusterView};

use super::*;

fn actor(name: &str, node: &str, backlog: u64, rate: f64, p99: f64) -> ActorView {
    ActorView {
        name: name.to_owned(),
        type_name: format!("{}Type", name.to_uppercase()),
        node: node.to_owned(),
        node_name: node.to_owned(),
        state: "running".to_owned(),
        backlog,
        rate,
        handling_p99_us: p99,
        system: name.starts_with("swarm."),
        ..ActorView::default()
    }
}

fn cluster() -> ClusterView {
    ClusterView {
        actors: vec![
            actor("b", "n1", 5, 10.0, 50.0),
            actor("a", "n2", 500, 1.0, 5.0),
            actor("c", "n1", 0, 100.0, 200_000.0),
            actor("swarm.inspect", "n1", 0, 0.0, 0.0),
        ],
        ..ClusterView::default()
    }
}

fn names(rows: &[&ActorView]) -> Vec<String> {
    rows.iter().map(|a| a.name.clone()).collect()
}

#[test]
fn actors_sort_by_each_column_and_hide_system_actors_unless_asked() {
    let c = cluster();
    let all = ActorFilter::default();
    assert_eq!(names(&actors(&c, ActorSort::Name, &all)), ["a", "b", "c"]);
    assert_eq!(
        names(&actors(&c, ActorSort::Backlog, &all)),
        ["a", "b", "c"]
    );
    assert_eq!(names(&actors(&c, ActorSort::Rate, &all)), ["c", "b", "a"]);
    assert_eq!(
        names(&actors(&c, ActorSort::Handling, &all)),
        ["c", "b", "a"]
    );
    let with_system = ActorFilter::parse("system");
    assert_eq!(actors(&c, ActorSort::Name, &with_system).len(), 4);
    // Cycling visits every order once.
    let mut order = ActorSort::Name;
    for _ in 0..ActorSort::ALL.len() {
        order = order.next();
    }
    assert_eq!(order, ActorSort::Name);
}

#[test]
fn filters_match_any_field_or_the_one_named() {
    let c = cluster();
    let by = |text: &str| names(&actors(&c, ActorSort::Name, &ActorFilter::parse(text)));
    assert_eq!(by("node:n1"), ["b", "c"]);
    assert_eq!(by("n2"), ["a"]);
    assert_eq!(by("type:ctype"), ["c"]);
    assert_eq!(by("state:running node:n2"), ["a"]);
    assert_eq!(by("state:failed"), Vec::<String>::new());
    assert_eq!(by("NAME:B"), ["b"]);
}

#[test]
fn alerts_name_the_threshold_crossed() {
    let alerts = Alerts::default();
    let c = cluster();
    let reasons: Vec<Option<String>> = c.actors.iter().map(|a| alerts.reason(a)).collect();
    assert_eq!(reasons[0], None);
    assert_eq!(reasons[1], None);
    assert!(reasons[2].as_deref().is_some_and(|r| r.contains("p99")));
    let tight = Alerts {
        backlog: 100,
        ..Alerts::default()
    };
    assert!(tight
        .reason(&c.actors[1])
        .is_some_and(|r| r.contains("backlog 500")));
}

#[test]
fn tables_align_columns_and_format_units() {
    let c = cluster();
    let table = actors_table(&actors(&c, ActorSort::Name, &ActorFilter::default()));
    let text = table.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let column = |line: &str| line.find("BACKLOG").or_else(|| line.find("500"));
    assert_eq!(column(lines[0]), column(lines[1]));
    assert_eq!(micros(0.0), "-");
    assert_eq!(micros(12.3), "12µs");
    assert_eq!(micros(1_500.0), "1.5ms");
    assert_eq!(micros(2_500_000.0), "2.50s");
    assert_eq!(bytes(512), "512B");
    assert_eq!(bytes(3 << 20), "3.0MiB");
    assert_eq!(uptime(3_700), "1h01m");
    assert_eq!("actors".parse::<View>(), Ok(View::Actors));
    assert!("x"
        .parse::<View>()
        .is_err_and(|e| e.contains("nodes, actors, links")));
}

#[test]
fn events_services_and_traces_read_with_node_names() {
    use swarm::cluster::MemberRow;
    use swarm::inspect::{EventView, NodeView, ServiceView, TraceEntry};
    let node = |id: &str, name: &str| NodeView {
        member: MemberRow {
            id: id.into(),
            name: name.into(),
            addr: String::new(),
            roles: Vec::new(),
            state: "alive".into(),
            cpus: 1.0,
            memory: 0,
            gpus: 0,
            custom: Vec::new(),
            cpu_percent: 0.0,
            memory_used: 0,
            services: 0,
            reach: String::new(),
            relay: false,
            counters: None,
        },
        local: None,
        error: None,
    };
    let event = |seq: u64, kind: &str| EventView {
        seq,
        at_ms: 3_723_004 + seq,
        node: "aa".into(),
        kind: kind.into(),
        subject: "ledger".into(),
        detail: "something".into(),
    };
    let c = ClusterView {
        nodes: vec![node("aa", "n1"), node("bb", "n2")],
        events: vec![event(1, "placed"), event(2, "restart")],
        services: vec![ServiceView {
            node: "aa".into(),
            service: "greeter".into(),
            instance_node: "bb".into(),
            actor: "g".into(),
            outstanding: 2,
            sent: 10,
            latency_us: 250.0,
            ejected: true,
        }],
        traced: Some("ledger@aa".into()),
        trace: vec![TraceEntry {
            seq: 1,
            at_ms: 0,
            tag: "demo.Deposit".into(),
            from: "bb".into(),
            bytes: 9,
            kind: "ask".into(),
            waited_us: 3.0,
            handled_us: 12.0,
            result: "handled".into(),
        }],
        ..ClusterView::default()
    };
    let events = events_table(&c, &ALL_ROWS);
    // Newest first, with the node's name and a UTC clock.
    assert_eq!(events.rows[0][2], "restart");
    assert_eq!(events.rows[0][0], "01:02:03.006");
    assert_eq!(events.rows[1][1], "n1");
    let services = services_table(&c, &ALL_ROWS);
    assert_eq!(
        services.rows[0],
        ["greeter", "n2", "g", "n1", "2", "10", "250µs", "yes"]
    );
    let trace = trace_table(&c, &ALL_ROWS);
    assert_eq!(trace.rows[0][1..4], ["demo.Deposit", "n2", "ask"]);
    assert_eq!(View::Trace.rows(&c), 1);
    assert_eq!(json(View::Events, &c).as_array().map(Vec::len), Some(2));
    assert!(text(View::Services, &c).starts_with("SERVICE"));
}
