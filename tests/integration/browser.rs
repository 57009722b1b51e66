//! A real headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ended by a NUL byte on file
//! descriptors 3 and 4; no WebSocket, no driver binary). Killed when
//! dropped, even on failure. Tests find Chromium, or install it, through
//! `tools::require(Tool::Chromium, ..)`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::poll_until;

/// One browser with one page.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts `exe` headless with a fresh profile in `dir` (a
    /// `width`×`height` window), and opens a blank page.
    pub fn start(exe: &std::path::Path, dir: &std::path::Path, width: u32, height: u32) -> Self {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        // fd 3: commands in (our pipe), fd 4: answers out (our pipe).
        let script = format!(
            "exec '{}' --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
             --no-first-run --no-default-browser-check --disable-extensions \
             --ignore-certificate-errors --window-size={width},{height} \
             --user-data-dir='{}' --remote-debugging-pipe about:blank \
             3<&0 4>&1 0</dev/null 1>/dev/null 2>'{}'",
            exe.display(),
            profile.display(),
            dir.join("chromium.log").display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let to = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut message = Vec::new();
            while let Ok(n) = reader.read_until(0, &mut message) {
                if n == 0 {
                    return;
                }
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if tx.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Self {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// Sends a command (to the page once attached) and waits for its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        self.to.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Opens `url`.
    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (30 s at most); answers it.
    pub fn wait(&mut self, what: &str, expression: &str) -> Value {
        let mut value = Value::Null;
        let found = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            value = self.eval(&format!(
                "(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
            ));
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            truthy.then(|| value.clone())
        });
        found.unwrap_or_else(|| {
            let text = self.eval("document.body ? document.body.innerText : ''");
            panic!(
                "{what}: {expression} stayed {value}; the page:\n{}",
                text.as_str().unwrap_or("")
            )
        })
    }

    /// A PNG of the page as it is.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `sh` exec'd Chromium, so the kill reached it; its helpers exit
        // with it. The profile goes with the test's directory.
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A terminal screen captured with its colours (`tmux capture-pane -e`)
/// as an HTML page, for a screenshot of the console.
pub fn terminal_html(ansi: &str) -> String {
    const BASIC: [&str; 16] = [
        "#1c1c1c", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d8dee9",
        "#5c6370", "#ff7b86", "#b5e890", "#ffd68a", "#82c4ff", "#dd9cf0", "#7fd6e0", "#ffffff",
    ];
    let palette = |n: u32| -> String {
        match n {
            0..=15 => BASIC[n as usize].to_owned(),
            16..=231 => {
                let n = n - 16;
                let level = |c: u32| if c == 0 { 0 } else { 55 + 40 * c };
                format!(
                    "#{:02x}{:02x}{:02x}",
                    level(n / 36),
                    level(n / 6 % 6),
                    level(n % 6)
                )
            }
            _ => {
                let g = 8 + 10 * (n.saturating_sub(232));
                format!("#{g:02x}{g:02x}{g:02x}")
            }
        }
    };
    let mut out = String::from(
        "<!doctype html><meta charset=utf-8><body style=\"margin:0;background:#0f1419\">\
         <pre style=\"margin:0;padding:8px;color:#d8dee9;font:13px/1.25 'DejaVu Sans Mono',monospace\">",
    );
    let (mut fg, mut bg, mut bold, mut reverse) = (None::<String>, None::<String>, false, false);
    let mut open = false;
    let mut chars = ansi.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            let mut params = String::new();
            let mut end = ' ';
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    end = c;
                    break;
                }
                params.push(c);
            }
            if end != 'm' {
                continue;
            }
            let mut codes = params.split(';').map(|p| p.parse::<u32>().unwrap_or(0));
            while let Some(code) = codes.next() {
                match code {
                    0 => (fg, bg, bold, reverse) = (None, None, false, false),
                    1 => bold = true,
                    7 => reverse = true,
                    22 => bold = false,
                    27 => reverse = false,
                    30..=37 => fg = Some(palette(code - 30)),
                    90..=97 => fg = Some(palette(code - 90 + 8)),
                    40..=47 => bg = Some(palette(code - 40)),
                    100..=107 => bg = Some(palette(code - 100 + 8)),
                    39 => fg = None,
                    49 => bg = None,
                    38 | 48 => {
                        let colour = match codes.next() {
                            Some(5) => codes.next().map(palette),
                            Some(2) => {
                                let (r, g, b) = (codes.next(), codes.next(), codes.next());
                                Some(format!(
                                    "#{:02x}{:02x}{:02x}",
                                    r.unwrap_or(0),
                                    g.unwrap_or(0),
                                    b.unwrap_or(0)
                                ))
                            }
                            _ => None,
                        };
                        if code == 38 {
                            fg = colour;
                        } else {
                            bg = colour;
                        }
                    }
                    _ => {}
                }
            }
            if open {
                out.push_str("</span>");
            }
            let (f, b) = if reverse {
                (
                    bg.clone().or(Some("#0f1419".into())),
                    fg.clone().or(Some("#d8dee9".into())),
                )
            } else {
                (fg.clone(), bg.clone())
            };
            out.push_str(&format!(
                "<span style=\"{}{}{}\">",
                f.map(|c| format!("color:{c};")).unwrap_or_default(),
                b.map(|c| format!("background:{c};")).unwrap_or_default(),
                if bold { "font-weight:bold;" } else { "" }
            ));
            open = true;
            continue;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</span>");
    }
    out.push_str("</pre></body>");
    out
}
