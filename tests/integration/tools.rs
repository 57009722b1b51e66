//! The tools some tests need beyond the Rust toolchain: Chromium (the web
//! dashboard), tmux (the terminal console), network namespaces (root,
//! `ip`, `iptables`) and PostgreSQL (the durable store's database). [`require`] finds the tool, or installs it once per
//! process through the project's script (`.ci/test-tools TOOL`), or fails
//! the test with one line naming that command. A test passes without
//! running only where the person opted out with [`OPT_OUT`], and never
//! under `CI=true`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// A tool some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// A headless Chromium (`chromium`, `chromium-browser` or `google-chrome`).
    Chromium,
    /// tmux, the terminal the console test drives.
    Tmux,
    /// Network namespaces: root, `ip` (iproute2) and `iptables`, with the
    /// nat table usable inside a namespace.
    Netns,
    /// PostgreSQL's server programs (`initdb`, `postgres`, `pg_isready`,
    /// `psql`), and, for a test run as root, the unprivileged `postgres`
    /// user to run them as (the server refuses root).
    Postgres,
}

impl Tool {
    /// The name `.ci/test-tools` and [`OPT_OUT`] know it by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chromium => "chromium",
            Self::Tmux => "tmux",
            Self::Netns => "netns",
            Self::Postgres => "postgres",
        }
    }

    /// What it is, for messages.
    fn what(self) -> &'static str {
        match self {
            Self::Chromium => "Chromium",
            Self::Tmux => "tmux",
            Self::Netns => "network namespaces (root, ip, iptables)",
            Self::Postgres => "PostgreSQL (initdb, postgres)",
        }
    }
}

/// The environment variable that lets a test pass without running where
/// its tool is missing: a comma-separated list of tool names
/// (`chromium,tmux,netns,postgres`) or `all`. Ignored under `CI=true`.
pub const OPT_OUT: &str = "SWARM_TEST_TOOLS_OPT_OUT";

/// The tool for `test`: its program (for [`Tool::Netns`], `ip`) once it
/// works here (for [`Tool::Postgres`], the directory of its programs),
/// installing it through `.ci/test-tools` if it is missing;
/// `None` (the test passes without running; it says so on stderr) only
/// where the person opted out of this tool and `CI=true` is not set.
///
/// # Panics
///
/// If the tool is missing, cannot be installed here, and the test was not
/// opted out (or `CI=true`): with the command that installs it.
pub fn require(tool: Tool, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let why = match probe(tool, &path) {
        Ok(found) => return Some(found),
        Err(why) => why,
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let opt_out = std::env::var(OPT_OUT).unwrap_or_default();
    if verdict(tool, &opt_out, ci) == Verdict::NotRun {
        eprintln!(
            "NOT RUN: {test} needs {} ({why}); {OPT_OUT}={opt_out} is set",
            tool.what()
        );
        return None;
    }
    let said = match install(tool) {
        Ok(()) => match probe(tool, &path) {
            Ok(found) => return Some(found),
            Err(still) => format!("it ran, yet {still}"),
        },
        Err(said) => said,
    };
    panic!("{}", missing_line(tool, test, &why, &said));
}

/// What to do where a tool is missing.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Install it, or fail the test.
    InstallOrFail,
    /// Pass without running: the person opted out (outside CI).
    NotRun,
}

/// The verdict for `tool` with [`OPT_OUT`] set to `opt_out` (empty if
/// unset), under CI or not.
fn verdict(tool: Tool, opt_out: &str, ci: bool) -> Verdict {
    let listed = opt_out
        .split(',')
        .map(str::trim)
        .any(|name| name == tool.name() || name == "all");
    if listed && !ci {
        Verdict::NotRun
    } else {
        Verdict::InstallOrFail
    }
}

/// The one line a test fails with: what is missing, the command that
/// installs it, what the script said, and the opt-out.
fn missing_line(tool: Tool, test: &str, why: &str, said: &str) -> String {
    let name = tool.name();
    let root = if tool == Tool::Netns {
        ", then run the test as root"
    } else {
        ""
    };
    let what = tool.what();
    format!(
        "{test} needs {what}: {why}. Install it with `sudo .ci/test-tools {name}`{root} \
         (it was tried here and said: {said}). To pass without running it (never under \
         CI=true): {OPT_OUT}={name}"
    )
}

/// The tool's program if it works with `path` as PATH, or why not.
fn probe(tool: Tool, path: &OsStr) -> Result<PathBuf, String> {
    match tool {
        Tool::Chromium => ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .filter_map(|name| which(name, path))
            .find(|exe| runs(exe, &["--version"]))
            .ok_or_else(|| "no working `chromium` on PATH".to_owned()),
        Tool::Tmux => which("tmux", path)
            .filter(|exe| runs(exe, &["-V"]))
            .ok_or_else(|| "no working `tmux` on PATH".to_owned()),
        Tool::Netns => namespaces(path),
        Tool::Postgres => postgres(path),
    }
}

/// The directory of PostgreSQL's server programs (Debian keeps them in
/// `/usr/lib/postgresql/VERSION/bin`, off PATH; the newest wins), or why
/// not. As root, the `postgres` user must exist too.
fn postgres(path: &OsStr) -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"))
        .collect();
    dirs.sort_by_key(|dir| {
        let version = dir.parent().and_then(Path::file_name);
        version
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let on_path = which("initdb", path).and_then(|exe| exe.parent().map(Path::to_path_buf));
    let bin = dirs
        .into_iter()
        .rev()
        .chain(on_path)
        .find(|dir| {
            ["initdb", "postgres", "pg_isready", "psql"]
                .iter()
                .all(|exe| dir.join(exe).is_file())
                && runs(&dir.join("postgres"), &["--version"])
        })
        .ok_or("no PostgreSQL server programs (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH")?;
    if is_root() && super::postgres::unprivileged().is_none() {
        return Err(
            "running as root, and there is no `postgres` user to run the server as".to_owned(),
        );
    }
    Ok(bin)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// `ip` if network namespaces can be made here, with iptables' nat table
/// usable inside one, or why not.
fn namespaces(path: &OsStr) -> Result<PathBuf, String> {
    let ip = which("ip", path)
        .filter(|ip| runs(ip, &["-V"]))
        .ok_or("no working `ip` (iproute2) on PATH")?;
    let iptables = which("iptables", path)
        .filter(|iptables| runs(iptables, &["--version"]))
        .ok_or("no working `iptables` on PATH")?;
    let probe = format!("swprobe{}", std::process::id());
    if !runs(&ip, &["netns", "add", &probe]) {
        return Err("cannot create a network namespace (not root?)".to_owned());
    }
    let nat = Command::new(&ip)
        .args(["netns", "exec", &probe])
        .arg(&iptables)
        .args(["-t", "nat", "-L"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    runs(&ip, &["netns", "del", &probe]);
    if !nat {
        return Err("iptables cannot use the nat table in a namespace".to_owned());
    }
    Ok(ip)
}

/// Runs `.ci/test-tools` for `tool`, once per process for each tool (the
/// tests that need one wait for the first's attempt and share its
/// outcome; the script takes a lock of its own against other processes).
/// `Err` holds the last line it said.
fn install(tool: Tool) -> Result<(), String> {
    static TRIED: Mutex<Vec<(&str, Result<(), String>)>> = Mutex::new(Vec::new());
    let mut tried = TRIED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, outcome)) = tried.iter().find(|(name, _)| *name == tool.name()) {
        return outcome.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/test-tools");
    eprintln!("{} is missing: running {}", tool.name(), script.display());
    let outcome = match Command::new(&script).arg(tool.name()).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            eprint!("{text}");
            if out.status.success() {
                Ok(())
            } else {
                Err(text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("nothing")
                    .to_owned())
            }
        }
        Err(e) => Err(format!("{} did not start: {e}", script.display())),
    };
    tried.push((tool.name(), outcome.clone()));
    outcome
}

/// The executable `name` on `path`, if there is one.
fn which(name: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|exe| {
            std::fs::metadata(exe).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether `exe` with `args` exits successfully.
fn runs(exe: &Path, args: &[&str]) -> bool {
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    //! The helper's decisions and its look-up, on a PATH that hides the
    //! tool; running with the tools present is the tools' own tests.

    use std::ffi::OsString;

    use super::*;

    /// PATH without the directories that hold any of `names`.
    fn path_without(names: &[&str]) -> OsString {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let kept: Vec<PathBuf> = std::env::split_paths(&path)
            .filter(|dir| names.iter().all(|name| !dir.join(name).exists()))
            .collect();
        std::env::join_paths(kept).unwrap()
    }

    #[test]
    fn a_missing_tool_is_installed_or_fails_unless_opted_out_outside_ci() {
        use Verdict::{InstallOrFail, NotRun};
        let tmux = Tool::Tmux;
        assert_eq!(verdict(tmux, "", false), InstallOrFail);
        assert_eq!(verdict(tmux, "tmux", false), NotRun);
        assert_eq!(verdict(tmux, "chromium, tmux", false), NotRun);
        assert_eq!(verdict(tmux, "all", false), NotRun);
        assert_eq!(verdict(tmux, "chromium,netns", false), InstallOrFail);
        assert_eq!(verdict(tmux, "1", false), InstallOrFail);
        // Under CI nothing is skipped, opted out or not.
        assert_eq!(verdict(tmux, "tmux", true), InstallOrFail);
        assert_eq!(verdict(tmux, "all", true), InstallOrFail);
    }

    #[test]
    fn the_failure_is_one_line_naming_the_install_command_and_the_opt_out() {
        let line = missing_line(
            Tool::Chromium,
            "dashboard",
            "no working `chromium` on PATH",
            "cannot install chromium: needs root and apt-get",
        );
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("`sudo .ci/test-tools chromium`"), "{line}");
        assert!(line.contains("SWARM_TEST_TOOLS_OPT_OUT=chromium"), "{line}");
        let line = missing_line(Tool::Netns, "partition", "not root", "");
        assert!(line.contains("run the test as root"), "{line}");
    }

    #[test]
    fn a_tool_hidden_from_path_is_reported_missing() {
        let empty = OsString::new();
        for tool in [Tool::Chromium, Tool::Tmux, Tool::Netns] {
            let why = probe(tool, &empty).unwrap_err();
            assert!(why.contains("on PATH"), "{why}");
        }
        let hidden = path_without(&["tmux"]);
        assert_eq!(which("tmux", &hidden), None);
        assert_eq!(
            probe(Tool::Tmux, &hidden).unwrap_err(),
            "no working `tmux` on PATH"
        );
    }
}
