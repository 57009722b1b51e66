//! The README runs as written. Its shell blocks marked
//! `<!-- readme-test: run -->` (the line right above the fence) run in
//! README order in one bash session (`set -eo pipefail`), as a reader
//! pastes them into one terminal: in an empty directory, with the built
//! `swarm` first on the `PATH`. A block marked
//! `<!-- readme-test: not run: REASON -->` is skipped; every shell block
//! that calls `swarm` carries one of the two marks.
//!
//! The test substitutes only what it must: free loopback ports for the
//! README's fixed ones (7001-7003, 9443), and alice's current TOTP code in
//! `SWARM_TOTP` (which the README documents), computed here before each
//! block once her certificate exists. Nodes the blocks start in the
//! background are SIGTERMed at the end (each must exit with status 0
//! within 2 s, as the README says) and killed with the session's process
//! group whatever happens.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{exe, operator_code_sealed, poll_until, scratch};

/// The mark of a block the test runs.
const RUN: &str = "<!-- readme-test: run -->";

/// The start of the mark of a block it skips (the reason follows).
const NOT_RUN: &str = "<!-- readme-test: not run:";

/// The README's fixed ports, replaced with free ones.
const PORTS: [&str; 4] = ["7001", "7002", "7003", "9443"];

/// How long one block may take (a login waits up to 30 s for a cluster
/// that is still starting).
const BLOCK_WITHIN: Duration = Duration::from_secs(60);

/// The README promises that a node exits this soon after SIGTERM.
const SIGTERM_WITHIN: Duration = Duration::from_secs(2);

/// A shell block of the README.
#[derive(Debug)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    /// Run, or the reason it is not.
    run: Result<(), String>,
    /// Its text.
    text: String,
}

/// Every `sh` block with a mark, in order; panics on a block that calls
/// `swarm` without one.
fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let line = i + 1;
        let mark = i.checked_sub(1).map(|m| lines[m].trim());
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("README line {line}: unclosed block"));
        let text = lines[i + 1..end].join("\n") + "\n";
        i = end + 1;
        let run = match mark {
            Some(RUN) => Ok(()),
            Some(m) if m.starts_with(NOT_RUN) => {
                let reason = m[NOT_RUN.len()..].trim_end_matches("-->").trim();
                assert!(
                    !reason.is_empty(),
                    "README line {line}: a block not run says why"
                );
                Err(reason.to_owned())
            }
            _ => {
                let calls_swarm = text.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("swarm ") || l.contains("$(swarm ")
                });
                assert!(
                    !calls_swarm,
                    "README line {line}: a block that calls swarm needs `{RUN}` or `{NOT_RUN} REASON -->` above it"
                );
                continue;
            }
        };
        blocks.push(Block { line, run, text });
    }
    blocks
}

/// Free loopback ports, TCP and UDP alike (membership gossips on the mesh
/// port number), one for each of [`PORTS`].
fn free_ports() -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < PORTS.len() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            held.push((port, tcp, udp));
        }
    }
    held.into_iter().map(|(port, _, _)| port).collect()
}

/// `text` with the README's ports replaced by `ports`, all at once.
fn with_ports(text: &str, ports: &[u16]) -> String {
    let mut out = text.to_owned();
    for (i, fixed) in PORTS.iter().enumerate() {
        out = out.replace(fixed, &format!("\u{0}{i}\u{0}"));
    }
    for (i, port) in ports.iter().enumerate() {
        out = out.replace(&format!("\u{0}{i}\u{0}"), &port.to_string());
    }
    out
}

/// The bash session the blocks run in, in a process group of its own:
/// dropping it kills the group (every node a block started) before the
/// shell is reaped, so the group's id cannot have been reused.
struct Session {
    bash: Child,
    stdin: ChildStdin,
    /// The scratch directory: `work/` is the reader's, the rest the test's.
    dir: PathBuf,
    /// The background jobs the blocks started: pid and node name.
    jobs: Vec<(u32, String)>,
}

impl Session {
    fn start(dir: &Path) -> Session {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(dir.join("blocks")).unwrap();
        let bin = exe().parent().unwrap().to_owned();
        let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        let mut bash = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(&work)
            .env("PATH", path)
            .env_remove("SWARM_TOTP")
            .env_remove("SWARM_PASS")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(dir.join("session.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("session.err")).unwrap())
            .process_group(0)
            .spawn()
            .expect("bash runs the README's blocks");
        let stdin = bash.stdin.take().unwrap();
        let mut session = Session {
            bash,
            stdin,
            dir: dir.to_owned(),
            jobs: Vec::new(),
        };
        session.send("set -eo pipefail -x\n");
        session
    }

    fn send(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs `text` as block `n` (sourced, stdin from /dev/null so nothing
    /// in it reads the session's script) and waits until it finished.
    fn run(&mut self, n: usize, text: &str) -> Result<Duration, String> {
        let file = self.dir.join(format!("blocks/{n}.sh"));
        std::fs::write(&file, text).unwrap();
        let done = self.dir.join(format!("blocks/{n}.done"));
        self.send(&format!(
            ". {} </dev/null\njobs -p > {}\n: > {}\n",
            file.display(),
            self.dir.join(format!("blocks/{n}.jobs")).display(),
            done.display()
        ));
        let started = Instant::now();
        let ended = poll_until(BLOCK_WITHIN, Duration::from_millis(20), || {
            if done.exists() {
                return Some(Ok(()));
            }
            let status = self.bash.try_wait().unwrap()?;
            Some(Err(format!("the block failed: bash exited {status}")))
        });
        match ended {
            Some(Ok(())) => {
                self.new_jobs(n);
                Ok(started.elapsed())
            }
            Some(Err(e)) => Err(e),
            None => Err(format!("the block still runs after {BLOCK_WITHIN:?}")),
        }
    }

    /// The background jobs block `n` left that no block before did, with
    /// the node each runs; read right after the block, while they run.
    fn new_jobs(&mut self, n: usize) {
        let file = self.dir.join(format!("blocks/{n}.jobs"));
        for pid in std::fs::read_to_string(file).unwrap().split_whitespace() {
            let pid: u32 = pid.parse().unwrap();
            if !self.jobs.iter().any(|(p, _)| *p == pid) {
                self.jobs.push((pid, node_name(pid)));
            }
        }
    }

    /// Waits (in the shell) for background job `pid` and answers its exit
    /// status, `None` if it has not exited within `within`.
    fn exit_status(&mut self, pid: u32, within: Duration) -> Option<i32> {
        let file = self.dir.join(format!("blocks/exit-{pid}"));
        self.send(&format!(
            "st=0; wait {pid} || st=$?; echo $st > {}\n",
            file.display()
        ));
        poll_until(within, Duration::from_millis(5), || {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
    }

    /// What the session and every node log in `work/` said, for a failure.
    fn transcript(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.dir.join("session.out"), self.dir.join("session.err")];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("work")) {
            let mut logs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            files.extend(logs);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} (last 40 lines)\n", file.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.bash);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::Kill);
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

/// Which node a background job runs (`n1` for `--config ca/n1.toml`).
fn node_name(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .and_then(|c| Path::new(c).file_stem())
        .map_or_else(
            || format!("pid {pid}"),
            |s| s.to_string_lossy().into_owned(),
        )
}

#[test]
fn readme_shell_blocks_run_in_order_on_the_cluster_the_readme_builds() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    // The first two setup commands stay as they are (and are not run here:
    // they build and test this workspace).
    assert!(
        readme.starts_with("# Swarm\n\n```sh\ncargo run -- demo\ncargo test --workspace\n```\n"),
        "the README's first block changed"
    );
    let blocks = blocks(&readme);
    let skipped: Vec<_> = blocks.iter().filter(|b| b.run.is_err()).collect();
    assert!(
        skipped.len() <= 2,
        "blocks not run are kept few: {skipped:?}"
    );
    let run: Vec<&Block> = blocks.iter().filter(|b| b.run.is_ok()).collect();
    assert!(
        run.len() >= 6,
        "the README's walkthrough blocks: {blocks:?}"
    );
    let passphrase = run
        .iter()
        .flat_map(|b| b.text.lines())
        .find_map(|l| l.strip_prefix("export SWARM_PASS='"))
        .and_then(|rest| rest.split('\'').next())
        .expect("the README exports SWARM_PASS")
        .to_owned();

    let dir = scratch("readme");
    std::fs::create_dir_all(&dir).unwrap();
    let ports = free_ports();
    let mut session = Session::start(&dir);
    let ca = dir.join("work/ca");
    let started = Instant::now();
    for (n, block) in run.iter().enumerate() {
        // Alice's code for the block that logs her in (each block gets a
        // fresh one: a code is good for one login within a minute).
        if ca.join("alice.cert").exists() {
            let code = operator_code_sealed(&ca, "alice", &passphrase);
            session.send(&format!("export SWARM_TOTP={code}\n"));
        }
        match session.run(n, &with_ports(&block.text, &ports)) {
            Ok(took) => eprintln!("README block at line {}: {took:?}", block.line),
            Err(e) => panic!(
                "README block at line {}: {e}\n{}\n{}",
                block.line,
                block.text,
                session.transcript()
            ),
        }
    }
    eprintln!("every block ran in {:?}", started.elapsed());

    let out = std::fs::read_to_string(dir.join("session.out")).unwrap();
    let err = std::fs::read_to_string(dir.join("session.err")).unwrap();
    for expected in ["READY ", "password set", "swarm_node_uptime_s", "drained"] {
        assert!(
            out.contains(expected),
            "{expected:?} not in what the blocks printed\n{}",
            session.transcript()
        );
    }
    assert!(
        err.contains("logged in as alice"),
        "{}",
        session.transcript()
    );

    // Every node the blocks started: the drained one has exited with
    // status 0 already; the rest exit, status 0, within 2 s of SIGTERM.
    let jobs = session.jobs.clone();
    let names: Vec<&str> = jobs.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, ["n1", "n2", "n3"], "the README's nodes");
    for (pid, name) in jobs {
        if name == "n2" {
            assert_eq!(
                session.exit_status(pid, Duration::from_secs(10)),
                Some(0),
                "the drained n2 exits with status 0\n{}",
                session.transcript()
            );
            continue;
        }
        let sent = Instant::now();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::Term,
        )
        .unwrap();
        let status = session.exit_status(pid, SIGTERM_WITHIN + Duration::from_secs(8));
        let took = sent.elapsed();
        eprintln!("{name}: exit status {status:?} {took:?} after SIGTERM");
        assert_eq!(
            status,
            Some(0),
            "{name} after SIGTERM\n{}",
            session.transcript()
        );
        assert!(
            took < SIGTERM_WITHIN,
            "{name} took {took:?} to exit after SIGTERM"
        );
    }
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
}
