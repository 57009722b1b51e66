//! The operator views as a cluster's operator runs them: `swarm members
//! --json` and `swarm tasks --json`, each a child process of this binary
//! against one member, timed from start to exit, with its peak RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// One view command's run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ViewRun {
    /// Wall time, seconds.
    pub(crate) seconds: f64,
    /// Rows (entries of the JSON list) it printed.
    pub(crate) rows: usize,
    /// Rows that carry an answer (`swarm tasks`: members that answered).
    pub(crate) answered: usize,
    /// The child's peak RSS (`VmHWM`, sampled every 20 ms), MiB.
    pub(crate) peak_rss_mib: Option<f64>,
}

/// `swarm members --json` and `swarm tasks --json` against `seed`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Views {
    pub(crate) members: ViewRun,
    pub(crate) tasks: ViewRun,
}

impl Views {
    /// The figures as table lines.
    pub(crate) fn table(&self) -> String {
        let line = |name: &str, r: &ViewRun| {
            format!(
                "  {name:<28} {:.3} s  ({} rows, {} answered, peak RSS {})\n",
                r.seconds,
                r.rows,
                r.answered,
                r.peak_rss_mib
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.1} MiB")),
            )
        };
        line("swarm members --json", &self.members) + &line("swarm tasks --json", &self.tasks)
    }
}

/// Runs both views by `exe` with `config` against `seed`.
///
/// # Errors
///
/// If a command cannot run, fails or prints no JSON list.
pub(crate) fn run(exe: &Path, config: &Path, seed: SocketAddr) -> Result<Views> {
    let members = view(exe, "members", config, seed, |_| true)?;
    let tasks = view(exe, "tasks", config, seed, |row| {
        row["tasks"].get("Ok").is_some()
    })?;
    Ok(Views { members, tasks })
}

fn view(
    exe: &Path,
    command: &str,
    config: &Path,
    seed: SocketAddr,
    answered: impl Fn(&serde_json::Value) -> bool,
) -> Result<ViewRun> {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg(command)
        .arg("--config")
        .arg(config)
        .args(["--node", &seed.to_string(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {} {command}", exe.display()))?;
    let pid = child.id();
    // Read while it runs: a big listing would fill the pipe and stall it.
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let drain = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = from.read_to_end(&mut out);
            out
        })
    };
    let (reader, errors) = (drain(Box::new(stdout)), drain(Box::new(stderr)));
    let mut peak = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak = vm_hwm(pid).or(peak);
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    let out = reader.join().unwrap_or_default();
    let err = errors.join().unwrap_or_default();
    anyhow::ensure!(
        status.success(),
        "{command} --json failed: {}",
        String::from_utf8_lossy(&err)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out)
        .with_context(|| format!("{command} --json printed no JSON list"))?;
    Ok(ViewRun {
        seconds,
        rows: rows.len(),
        answered: rows.iter().filter(|r| answered(r)).count(),
        peak_rss_mib: peak.map(|kib| kib as f64 / 1024.0),
    })
}

/// `swarm console --frames N` against a member: its refreshes, and how
/// big one refresh is as the dashboard receives it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConsoleRun {
    /// What the console reported of its refreshes.
    #[serde(flatten)]
    pub(crate) frames: swarm_cli::console::FramesReport,
    /// The largest refresh, JSON bytes: the console's recording holds
    /// each refresh's cluster view, which the admin API's stream (the
    /// dashboard) sends whole each refresh, gathered by the same
    /// collector.
    pub(crate) view_json_bytes: usize,
}

impl ConsoleRun {
    /// The figures as table lines.
    pub(crate) fn table(&self) -> String {
        format!(
            "  swarm console ({} refreshes)   p50 {:.0} ms, max {:.0} ms, drawing max {:.1} ms, \
             peak RSS {:.1} MiB; {} of {} members answered; view {:.1} KiB as JSON\n",
            self.frames.frames,
            self.frames.poll_ms_p50,
            self.frames.poll_ms_max,
            self.frames.render_ms_max,
            self.frames.peak_rss_mib,
            self.frames.answered,
            self.frames.nodes,
            self.view_json_bytes as f64 / 1024.0,
        )
    }
}

/// Runs `swarm console --frames FRAMES` by `exe` as the operator of
/// `config` against `seed`, refreshing once a second.
///
/// # Errors
///
/// If the console cannot run, fails, or its report or recording is
/// missing.
pub(crate) fn console(
    exe: &Path,
    config: &Path,
    seed: SocketAddr,
    frames: u32,
) -> Result<ConsoleRun> {
    let recording = std::env::temp_dir().join(format!(
        "swarm-bench-views-console-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&recording);
    let out = Command::new(exe)
        .arg("console")
        .arg("--config")
        .arg(config)
        .args(["--node", &seed.to_string()])
        .args(["--frames", &frames.to_string(), "--refresh-ms", "1000"])
        .arg("--record")
        .arg(&recording)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} console", exe.display()))?;
    let recorded = std::fs::read_to_string(&recording);
    let _ = std::fs::remove_file(&recording);
    anyhow::ensure!(
        out.status.success(),
        "the console failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = serde_json::from_slice(&out.stdout).context("the console's report")?;
    let view_json_bytes = recorded
        .context("the console's recording")?
        .lines()
        .map(str::len)
        .max()
        .unwrap_or(0);
    Ok(ConsoleRun {
        frames,
        view_json_bytes,
    })
}

/// A live process's peak resident memory (`VmHWM`), KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
