use ratatui::backend::TestBackend;
use ratatui::Terminal;
use swarm::cluster::MemberRow;
use swarm::inspect::{ActorView, ClusterView, NodeLocal, NodeView};

use super::*;

fn member(name: &str) -> MemberRow {
    MemberRow {
        id: format!("{name}00000000"),
        name: name.to_owned(),
        addr: "127.0.0.1:1".to_owned(),
        roles: vec!["worker".to_owned()],
        state: "alive".to_owned(),
        cpus: 2.0,
        memory: 1 << 30,
        gpus: 0,
        custom: Vec::new(),
        cpu_percent: 12.0,
        memory_used: 1 << 20,
        services: 0,
        reach: "direct".to_owned(),
        relay: false,
        counters: None,
    }
}

fn actor(name: &str, node: &str, backlog: u64, rate: f64) -> ActorView {
    ActorView {
        name: name.to_owned(),
        type_name: "Ledger".to_owned(),
        node: format!("{node}00000000"),
        node_name: node.to_owned(),
        state: "running".to_owned(),
        backlog,
        rate,
        ..ActorView::default()
    }
}

fn cluster() -> ClusterView {
    ClusterView {
        at_ms: 1,
        nodes: ["n1", "n2"]
            .iter()
            .map(|n| NodeView {
                member: member(n),
                local: Some(NodeLocal {
                    name: (*n).to_owned(),
                    actors: 2,
                    uptime_s: 90,
                    ..NodeLocal::default()
                }),
                error: None,
            })
            .collect(),
        actors: vec![
            actor("alpha", "n1", 3, 50.0),
            actor("beta", "n2", 2_000, 5.0),
            actor("gamma", "n1", 0, 900.0),
        ],
        ..ClusterView::default()
    }
}

/// The screen's text, one string per row.
fn screen(app: &App) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(120, 24)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

/// The row of the screen showing `text`.
fn row_of(lines: &[String], text: &str) -> Option<usize> {
    lines.iter().position(|l| l.contains(text))
}

#[test]
fn the_nodes_view_lists_every_member_with_what_it_reported() {
    let mut app = App::new("live 127.0.0.1:1");
    app.update(cluster());
    let lines = screen(&app);
    assert!(
        lines[0].contains("1 nodes") && lines[0].contains("2 nodes · 3 actors"),
        "{}",
        lines[0]
    );
    let n1 = row_of(&lines, "n1 ").expect("n1 listed");
    assert!(
        lines[n1].contains("worker") && lines[n1].contains("1m30s"),
        "{}",
        lines[n1]
    );
    assert!(row_of(&lines, "n2 ").is_some());
}

#[test]
fn actors_sort_by_backlog_and_rate_and_alerts_are_highlighted() {
    let mut app = App::new("live");
    app.update(cluster());
    app.on_key(Key::Tab);
    assert_eq!(app.view, View::Actors);
    let lines = screen(&app);
    let (a, b, g) = (
        row_of(&lines, "alpha").unwrap(),
        row_of(&lines, "beta").unwrap(),
        row_of(&lines, "gamma").unwrap(),
    );
    assert!(a < b && b < g, "by name");
    // beta's backlog crosses the default threshold: red, and named below.
    let mut terminal = Terminal::new(TestBackend::new(120, 24)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let buffer = terminal.backend().buffer();
    let x = lines[b].find("beta").unwrap() as u16;
    assert_eq!(buffer[(x, b as u16)].fg, Color::Red);
    assert!(
        lines[23].contains("alert: beta: backlog 2000"),
        "{}",
        lines[23]
    );

    app.on_key(Key::Char('s'));
    assert_eq!(app.sort, ActorSort::Backlog);
    let lines = screen(&app);
    assert!(row_of(&lines, "beta") < row_of(&lines, "alpha"));
    assert!(lines.iter().any(|l| l.contains("sort: backlog")));
    app.on_key(Key::Char('s'));
    let lines = screen(&app);
    assert!(row_of(&lines, "gamma") < row_of(&lines, "alpha"), "by rate");
}

#[test]
fn a_filter_narrows_the_actors_and_the_detail_pane_shows_the_selected_one() {
    let mut app = App::new("live");
    app.update(cluster());
    app.on_key(Key::Char('2'));
    app.on_key(Key::Char('/'));
    for c in "node:n1".chars() {
        app.on_key(Key::Char(c));
    }
    app.on_key(Key::Enter);
    let lines = screen(&app);
    assert!(row_of(&lines, "beta").is_none());
    assert!(row_of(&lines, "gamma").is_some());
    app.on_key(Key::Down);
    assert_eq!(
        app.on_key(Key::Enter),
        Command::Inspect {
            name: "gamma".into(),
            node: "n100000000".into()
        }
    );
    assert!(app.detail);
    app.state = Some((
        "gamma".into(),
        "n100000000".into(),
        "{\"balance\": 42}".into(),
    ));
    let lines = screen(&app);
    assert!(row_of(&lines, "gamma on n1").is_some(), "{lines:#?}");
    assert!(row_of(&lines, "backlog: 0").is_some(), "{lines:#?}");
    assert!(
        row_of(&lines, "state: {\"balance\": 42}").is_some(),
        "{lines:#?}"
    );
}

#[test]
fn actions_wait_for_confirmation() {
    let mut app = App::new("live");
    app.update(cluster());
    app.on_key(Key::Char('2'));
    assert_eq!(app.on_key(Key::Char('r')), Command::None);
    assert!(
        app.status.contains("restart alpha on n1? y/n"),
        "{}",
        app.status
    );
    assert_eq!(
        app.on_key(Key::Char('y')),
        Command::Restart {
            name: "alpha".into(),
            node: "n100000000".into()
        }
    );
    app.on_key(Key::Char('x'));
    assert_eq!(app.on_key(Key::Char('n')), Command::None);
    assert_eq!(app.status, "cancelled");
    app.on_key(Key::Char('1'));
    app.on_key(Key::Down);
    app.on_key(Key::Char('d'));
    assert_eq!(
        app.on_key(Key::Char('y')),
        Command::Drain {
            name: "n2".into(),
            node: "n200000000".into()
        }
    );
    assert_eq!(app.on_key(Key::Char('q')), Command::Quit);
}

#[test]
fn t_traces_the_selected_actor_and_every_view_has_a_tab() {
    let mut app = App::new("live");
    app.update(cluster());
    app.on_key(Key::Char('2'));
    app.on_key(Key::Down);
    assert_eq!(
        app.on_key(Key::Char('t')),
        Command::Trace {
            name: "beta".into(),
            node: "n200000000".into(),
            on: true
        }
    );
    for (i, view) in View::ALL.iter().enumerate() {
        let digit = char::from_digit(i as u32 + 1, 10).unwrap();
        app.on_key(Key::Char(digit));
        assert_eq!(app.view, *view);
        let lines = screen(&app);
        assert!(
            lines[0].contains(&format!("{} {}", i + 1, view.name())),
            "{}",
            lines[0]
        );
    }
    let lines = screen(&app);
    assert!(lines
        .iter()
        .any(|l| l.contains("select an actor and press t")));
}

#[test]
fn a_long_view_scrolls_to_the_selection_and_draws_only_what_fits() {
    let mut c = cluster();
    c.actors = (0..5_000)
        .map(|i| actor(&format!("a{i:04}"), "n1", 0, 0.0))
        .collect();
    let mut app = App::new("live");
    app.update(c);
    app.on_key(Key::Char('2'));
    for _ in 0..100 {
        app.on_key(Key::Down);
    }
    let lines = screen(&app);
    assert!(row_of(&lines, "a0100").is_some(), "the selection shows");
    assert!(row_of(&lines, "a0000").is_none(), "scrolled past the top");
    assert!(row_of(&lines, "a0200").is_none(), "only what fits");
}
