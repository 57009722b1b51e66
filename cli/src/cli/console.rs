//! `swarm console`: attach to a cluster as an operator and show it, live
//! in the terminal (recording it with `--record`), once (`--once VIEW`,
//! as a table or `--json`), or replay a recording (`--replay`).
//!
//! The terminal belongs to its own thread (keys block there); the
//! console's node, its polling and the actions run on the actix thread.
//! They talk over two channels: frames and statuses to the screen,
//! commands back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use swarm::inspect::ClusterView;
use swarm_cli::console::collect::Collector;
use swarm_cli::console::record::{self, Player, Recorder};
use swarm_cli::console::screen::{App, Command, Key};
use swarm_cli::console::{views, FramesReport, View};

/// What `swarm console` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// A configuration with an operator certificate of the cluster.
    #[arg(long, required_unless_present = "replay")]
    config: Option<PathBuf>,
    /// The member to attach to (its mesh address); the console then asks
    /// every member it lists.
    #[arg(long, required_unless_present = "replay")]
    node: Option<SocketAddr>,
    /// Print one view and exit: nodes, actors, links, services, tasks,
    /// events or trace.
    #[arg(long, value_name = "VIEW")]
    once: Option<View>,
    /// With --once: print the view's rows as JSON (the data model's fields).
    #[arg(long, requires = "once")]
    json: bool,
    /// Save every frame the console shows to FILE (JSON lines).
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    record: Option<PathBuf>,
    /// Play a recording back (space pauses, [ ] step, { } jump ten).
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// With --replay --once: the frame to print (from 1; default the last).
    #[arg(long, requires = "replay")]
    frame: Option<usize>,
    /// Without a terminal: refresh N times (rendering each frame off
    /// screen, and recording it with --record), then print what each
    /// refresh took and the most memory the console used, as JSON.
    #[arg(long, value_name = "N", conflicts_with_all = ["once", "replay"])]
    frames: Option<u32>,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    refresh_ms: u64,
    #[command(flatten)]
    totp: super::secrets::Totp,
}

/// What the screen thread is told.
enum Update {
    Frame(ClusterView),
    Status(String),
    /// An actor's state, for the detail pane: (actor, node, text).
    State(String, String, String),
}

/// Asks an actor's inspect hook for its state.
async fn inspect_state(collector: &Collector, name: String, node: String) -> Update {
    let Ok(id) = node.parse::<swarm::NodeId>() else {
        return Update::Status(format!("bad node id {node}"));
    };
    let text = collector.actor_state(id, &name).await;
    Update::State(name, node, text)
}

pub(crate) fn run(args: ConsoleArgs) -> Result<()> {
    args.totp.clone().install();
    if let Some(file) = &args.replay {
        let frames = record::load(file)?;
        if let Some(view) = args.once {
            let k = args.frame.unwrap_or(frames.len());
            let frame = frames
                .get(k.wrapping_sub(1))
                .with_context(|| format!("no frame {k}: the recording has {}", frames.len()))?;
            print_view(view, frame, args.json);
            return Ok(());
        }
        let name = file
            .file_name()
            .unwrap_or(file.as_os_str())
            .to_string_lossy();
        return replay(Player::new(frames), &name, args.refresh_ms);
    }
    let (Some(config), Some(addr)) = (&args.config, args.node) else {
        anyhow::bail!("--config and --node are needed (or --replay FILE)");
    };
    let mut recorder = args.record.as_deref().map(Recorder::create).transpose()?;
    let mesh = super::client_config(config)?;
    actix::System::new().block_on(async move {
        let node = super::secrets::start_client(mesh, addr).await?;
        let result = attach(&node, addr, &args, &mut recorder).await;
        node.close().await;
        result
    })
}

fn print_view(view: View, cluster: &ClusterView, json: bool) {
    if json {
        println!("{}", views::json(view, cluster));
    } else {
        print!("{}", views::text(view, cluster));
    }
}

async fn attach(
    node: &swarm::Node,
    addr: SocketAddr,
    args: &ConsoleArgs,
    recorder: &mut Option<Recorder>,
) -> Result<()> {
    let peer = node
        .connect(addr)
        .await
        .with_context(|| format!("no authenticated connection to {addr}"))?;
    let mut collector = Collector::new(node.clone(), addr, peer.id);
    if let Ok(control) = node.control_through(addr).await {
        collector = collector.with_control(control);
    }
    if let Some(view) = args.once {
        // Rates are computed between two inspections: inspect once to
        // start them, then report the second.
        if view == View::Actors {
            collector.poll().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cluster = collector.poll().await?;
        if let Some(r) = recorder {
            r.frame(&cluster)?;
        }
        print_view(view, &cluster, args.json);
        return Ok(());
    }
    if let Some(frames) = args.frames {
        return headless(&collector, frames, args.refresh_ms, recorder).await;
    }
    live(&collector, addr, args.refresh_ms, recorder).await
}

/// `--frames N`: refreshes without a terminal, each frame drawn off screen
/// into a 200×60 buffer (the actors view by backlog, as an operator would
/// watch it).
async fn headless(
    collector: &Collector,
    frames: u32,
    refresh_ms: u64,
    recorder: &mut Option<Recorder>,
) -> Result<()> {
    use ratatui::backend::TestBackend;
    let mut terminal = ratatui::Terminal::new(TestBackend::new(200, 60))?;
    let mut app = App::new("headless");
    app.on_key(Key::Char('2'));
    app.on_key(Key::Char('s'));
    let mut tick = tokio::time::interval(Duration::from_millis(refresh_ms));
    let (mut polls, mut render_max) = (Vec::new(), Duration::ZERO);
    for _ in 0..frames {
        tick.tick().await;
        let started = Instant::now();
        let view = collector.poll().await?;
        polls.push(started.elapsed());
        if let Some(r) = recorder.as_mut() {
            r.frame(&view)?;
        }
        app.update(view);
        let started = Instant::now();
        terminal.draw(|f| app.draw(f))?;
        render_max = render_max.max(started.elapsed());
    }
    let last = &app.cluster;
    polls.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let report = FramesReport {
        frames,
        nodes: last.nodes.len(),
        answered: last.nodes.iter().filter(|n| n.local.is_some()).count(),
        actors: last.actors.len(),
        links: last.links.len(),
        poll_ms_p50: polls.get(polls.len() / 2).copied().map_or(0.0, ms),
        poll_ms_max: polls.last().copied().map_or(0.0, ms),
        render_ms_max: ms(render_max),
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The most resident memory this process used (`VmHWM`), MiB; 0 where
/// /proc does not say.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The interactive console on a live cluster.
async fn live(
    collector: &Collector,
    addr: SocketAddr,
    refresh_ms: u64,
    recorder: &mut Option<Recorder>,
) -> Result<()> {
    let (to_screen, updates) = std::sync::mpsc::channel();
    let (commands, mut from_screen) = tokio::sync::mpsc::unbounded_channel();
    let source = format!("live {addr}");
    let screen = std::thread::spawn(move || {
        let mut app = App::new(source);
        let mut on_command = |c: Command| commands.send(c).is_ok();
        screen_loop(&mut app, &updates, &mut on_command, None, refresh_ms)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(refresh_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let update = tokio::select! {
            _ = tick.tick() => match collector.poll().await {
                Ok(view) => {
                    if let Some(r) = recorder.as_mut() {
                        r.frame(&view)?;
                    }
                    Update::Frame(view)
                }
                Err(e) => Update::Status(e.to_string()),
            },
            command = from_screen.recv() => match command {
                None | Some(Command::Quit) => break,
                Some(Command::Inspect { name, node }) => inspect_state(collector, name, node).await,
                Some(c) => Update::Status(act(collector, c).await),
            },
        };
        if to_screen.send(update).is_err() {
            break;
        }
    }
    drop(to_screen);
    match screen.join() {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the console's screen thread panicked"),
    }
}

/// Carries out an operator's action; says how it went.
async fn act(collector: &Collector, command: Command) -> String {
    let said = |r: Result<String, String>| r.unwrap_or_else(|e| e);
    match command {
        Command::Restart { name, node } => {
            let Ok(id) = node.parse::<swarm::NodeId>() else {
                return format!("bad node id {node}");
            };
            said(collector.restart(id, &name).await)
        }
        Command::Stop { name } => said(collector.stop(&name).await),
        Command::Drain { name, node } => {
            let Ok(id) = node.parse::<swarm::NodeId>() else {
                return format!("bad node id {node}");
            };
            said(collector.drain(id, &name).await)
        }
        Command::Trace { name, node, on } => {
            let Ok(id) = node.parse::<swarm::NodeId>() else {
                return format!("bad node id {node}");
            };
            match collector.trace(id, &name, on).await {
                Ok(()) if on => format!("tracing {name} (view 7)"),
                Ok(()) => format!("stopped tracing {name}"),
                Err(e) => format!("trace {name}: {e}"),
            }
        }
        Command::None
        | Command::Quit
        | Command::Pause
        | Command::Seek(_)
        | Command::Inspect { .. } => String::new(),
    }
}

/// Plays a recording in the terminal.
fn replay(player: Player, file: &str, refresh_ms: u64) -> Result<()> {
    let (_to_screen, updates) = std::sync::mpsc::channel::<Update>();
    let mut app = App::new(format!("replay {file}"));
    let mut nothing = |_: Command| true;
    screen_loop(&mut app, &updates, &mut nothing, Some(player), refresh_ms)
}

/// Owns the terminal: draws, reads keys, applies updates (or steps the
/// player), until the user quits or the session ends.
fn screen_loop(
    app: &mut App,
    updates: &std::sync::mpsc::Receiver<Update>,
    on_command: &mut dyn FnMut(Command) -> bool,
    mut player: Option<Player>,
    refresh_ms: u64,
) -> Result<()> {
    let mut terminal = ratatui::init();
    let refresh = Duration::from_millis(refresh_ms);
    let mut next_step = Instant::now() + refresh;
    if let Some(p) = &player {
        show(app, p);
    }
    let result = (|| -> Result<()> {
        loop {
            if let Some(p) = player.as_mut() {
                if Instant::now() >= next_step {
                    p.step();
                    show(app, p);
                    next_step = Instant::now() + refresh;
                }
            }
            loop {
                match updates.try_recv() {
                    Ok(Update::Frame(view)) => app.update(view),
                    Ok(Update::Status(s)) => app.status = s,
                    Ok(Update::State(name, node, text)) => app.state = Some((name, node, text)),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) if player.is_none() => {
                        return Ok(())
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                }
            }
            terminal.draw(|f| app.draw(f))?;
            if !event::poll(Duration::from_millis(50))? {
                continue;
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
                on_command(Command::Quit);
                return Ok(());
            }
            let Some(key) = translate(key.code) else {
                continue;
            };
            if !app.typing && app.confirm.is_none() {
                app.status.clear();
            }
            match app.on_key(key) {
                Command::None => {}
                Command::Quit => {
                    on_command(Command::Quit);
                    return Ok(());
                }
                Command::Pause | Command::Seek(_) if player.is_none() => {}
                Command::Pause => {
                    if let Some(p) = player.as_mut() {
                        p.paused = !p.paused;
                        show(app, p);
                        next_step = Instant::now() + refresh;
                    }
                }
                Command::Seek(by) => {
                    if let Some(p) = player.as_mut() {
                        p.seek(by);
                        show(app, p);
                        next_step = Instant::now() + refresh;
                    }
                }
                // A recording holds no actor to ask.
                Command::Inspect { .. } if player.is_some() => {}
                action if player.is_some() => {
                    app.status = format!("a replay cannot act ({action:?})");
                }
                action => {
                    if !matches!(action, Command::Inspect { .. }) {
                        app.status = "working…".to_owned();
                    }
                    if !on_command(action) {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

/// Shows the player's frame, with where it is in the title.
fn show(app: &mut App, p: &Player) {
    if let Some(frame) = p.frame() {
        app.update(frame.clone());
    }
    let (k, n) = p.position();
    let file = app
        .source
        .split(" frame ")
        .next()
        .unwrap_or_default()
        .to_owned();
    let state = if p.paused { " (paused)" } else { "" };
    app.source = format!("{file} frame {k}/{n}{state}");
}

fn translate(code: KeyCode) -> Option<Key> {
    Some(match code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}
