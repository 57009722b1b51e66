//! The real terminal console, driven through tmux (send-keys,
//! capture-pane) against a local cluster of node processes: it lists the
//! actors, sorts them, opens a detail pane, restarts an actor (confirmed,
//! as the admin operator with its TOTP code), shows the restart count
//! change, and records the session for a replay that shows it again.
//! Needs tmux, and Chromium for the screenshot (`tools::require` installs
//! them or fails the test with the command that does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use swarm_cli::local::LocalCluster;

use crate::tools::{require, Tool};
use crate::util::{admin_code, exe, place_account, poll_until, scratch};

/// A tmux server of its own, killed when dropped (even on failure).
struct Tmux {
    /// The tmux program.
    exe: PathBuf,
    socket: String,
}

impl Tmux {
    fn start(exe: PathBuf, name: &str, command: &str) -> Self {
        let tmux = Self {
            exe,
            socket: format!("swarm-{name}-{}", std::process::id()),
        };
        let ok = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "160",
                "-y",
                "40",
                command,
            ])
            .status
            .success();
        assert!(ok, "tmux did not start");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.exe)
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.cmd(&["send-keys", "-t", "t", key]);
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Polls the screen until `check` holds (30 s at most).
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            screen = self.screen();
            check(&screen).then(|| screen.clone())
        })
        .unwrap_or_else(|| panic!("{what}; the screen:\n{screen}"))
    }

    fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", "t"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Saves the console's screen, colours and all, as `console.png` in `out`
/// (rendered by Chromium): the README's picture.
fn screenshot(tmux: &Tmux, dir: &Path, out: &Path) {
    let Some(chromium) = require(Tool::Chromium, "the console's screenshot") else {
        return;
    };
    let ansi = tmux.cmd(&["capture-pane", "-e", "-p", "-t", "t"]).stdout;
    let page = dir.join("console.html");
    std::fs::write(
        &page,
        crate::browser::terminal_html(&String::from_utf8_lossy(&ansi)),
    )
    .unwrap();
    let mut browser = crate::browser::Browser::start(&chromium, dir, 1360, 730);
    browser.goto(&format!("file://{}", page.display()));
    browser.wait(
        "the screen",
        "document.querySelector('pre') && document.readyState == 'complete'",
    );
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join("console.png"), browser.screenshot()).unwrap();
}

/// The line of the screen holding `text`.
fn line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(text))
}

#[test]
fn the_console_in_a_terminal_sorts_details_and_restarts_an_actor_and_replays_the_session() {
    let Some(tmux) = require(Tool::Tmux, "the terminal console test") else {
        return;
    };
    let dir = scratch("console-tui");
    let mut cluster = LocalCluster::start_control(&exe(), &dir, 1, 2, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    let seed = cluster.nodes[0].addr.to_string();

    // A supervised actor to restart (the head group forms first).
    place_account(&cluster);

    let recording = dir.join("session.jsonl");
    let command = format!(
        "{} console --config {} --node {seed} --totp {} --record {} --refresh-ms 300",
        exe().display(),
        cluster.admin_config().display(),
        admin_code(&cluster.dir),
        recording.display()
    );
    let tmux = Tmux::start(tmux, "console", &command);
    tmux.wait("the nodes view with three answering nodes", |s| {
        s.contains("3 nodes") && s.contains("n3") && s.contains("leader")
    });

    // The actors: every node's, the placed one among them.
    tmux.keys(&["2"]);
    let screen = tmux.wait("the actors view lists account", |s| {
        line_with(s, "account").is_some_and(|l| l.contains("running"))
    });
    assert!(screen.contains("sort: name"), "{screen}");
    // System actors show when asked for.
    assert!(line_with(&screen, "swarm.inspect").is_none(), "{screen}");
    tmux.keys(&["s"]);
    tmux.wait("sorted by backlog", |s| s.contains("sort: backlog"));

    // Only the account, then its details.
    tmux.keys(&["/", "account", "Enter", "Enter"]);
    let screen = tmux.wait("the detail pane of account", |s| {
        s.contains("account on n") && s.contains("restarts: 0")
    });
    assert!(screen.contains("type_name: demo.Ledger"), "{screen}");
    assert!(screen.contains("placed: true"), "{screen}");
    assert!(
        screen.contains("placement: placed by the head on"),
        "{screen}"
    );
    // Its journal (the ledger is durable).
    tmux.wait("the ledger's journal", |s| {
        s.contains("durable: backend embedded, epoch") && s.contains("recovered in")
    });
    // Its own state, through its inspect hook.
    tmux.wait("the ledger's state", |s| {
        s.contains("state: {\"balance\":7")
    });
    if let Ok(out) = std::env::var("SWARM_SCREENSHOTS") {
        screenshot(&tmux, &dir, Path::new(&out));
    }

    // Restart it: asked first, then done, then counted.
    tmux.keys(&["r"]);
    tmux.wait("a confirmation", |s| s.contains("restart account on n"));
    tmux.keys(&["y"]);
    tmux.wait("the restart done", |s| s.contains("restarted account"));
    let screen = tmux.wait("the restart counted, in the actor's history", |s| {
        s.contains("restarts: 1")
            && s.lines()
                .any(|l| l.contains("restarted ") && l.contains("operator's request"))
    });
    let row = line_with(&screen, "demo.Ledger").unwrap();
    assert!(row.split_whitespace().any(|c| c == "1"), "{row}");
    // Audited by the host's node, under the operator's name.
    let audited = ["n1", "n2", "n3"].iter().any(|n| {
        let config = cluster.dir.join(format!("{n}.toml"));
        let records =
            crate::util::swarm_json(&["audit", "--config", config.to_str().unwrap(), "--json"]);
        records.as_array().unwrap().iter().any(|r| {
            r["kind"] == "command" && r["who"] == "admin" && r["tag"] == "swarm.HostRestart"
        })
    });
    assert!(audited, "no node audited the console's restart");

    // The events: the placement (on the head leader) and the restart.
    tmux.keys(&["6"]);
    tmux.wait("the restart and the placement among the events", |s| {
        line_with(s, "restart").is_some_and(|l| l.contains("operator's request"))
            && line_with(s, "placed").is_some_and(|l| l.contains("account"))
    });
    // Trace the actor: its trace view names it.
    tmux.keys(&["2", "t"]);
    tmux.wait("tracing started", |s| s.contains("tracing account"));
    tmux.keys(&["7"]);
    tmux.wait("the trace view of account", |s| {
        s.contains("trace of account@")
    });

    tmux.keys(&["q"]);
    let quit = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (!tmux.alive()).then_some(())
    });
    assert!(quit.is_some(), "the console did not quit");

    // The recording replays the session: its last frame shows the restart.
    let last = Command::new(exe())
        .args(["console", "--replay", recording.to_str().unwrap()])
        .args(["--once", "actors", "--json"])
        .output()
        .unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let actors: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    let account = actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "account")
        .unwrap();
    assert_eq!(account["restarts"], 1, "{account}");
    let first = Command::new(exe())
        .args(["console", "--replay", recording.to_str().unwrap()])
        .args(["--once", "actors", "--json", "--frame", "1"])
        .output()
        .unwrap();
    let actors: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(actors
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["restarts"] == 0));

    // And in the terminal, paused on its first frame, then stepped to the end.
    let replay = Tmux::start(
        tmux.exe.clone(),
        "replay",
        &format!(
            "{} console --replay {}",
            exe().display(),
            recording.display()
        ),
    );
    replay.keys(&[" ", "2"]);
    replay.wait("the replay paused on frame 1", |s| {
        s.contains("frame 1/") && s.contains("(paused)") && s.contains("account")
    });
    replay.keys(&["}", "}", "}", "}", "}", "/", "account", "Enter", "Enter"]);
    replay.wait("the replay's last frame shows the restart", |s| {
        s.contains("restarts: 1")
    });
    replay.keys(&["q"]);
}
