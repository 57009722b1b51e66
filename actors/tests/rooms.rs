//! The rooms of swarm-actors import in one direction.
//!
//! `src/rooms.txt` declares the order once (`lib.rs` shows it in the crate's
//! docs). This test reads every `.rs` file under `src/`, resolves each
//! `crate::`, `$crate::` and `super::` path to the room it names (doc links
//! and paths named in comments too: docs point the same way), and fails
//! on any path from a room to one listed above it, or between two rooms of
//! one line. A room may also declare the order of its own files (a
//! `[room]` section); then its files import in one direction too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Imports that run up the declared order on purpose: (file, room it
/// imports, why). Keep it short; each entry is a debt or a reason.
const ALLOWED: &[(&str, &str, &str)] = &[];

#[test]
fn swarm_actors_imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = Order::parse(&std::fs::read_to_string(src.join("rooms.txt")).unwrap()).unwrap();
    let files = read_tree(&src);
    let report = check(&order, &files);
    let mut problems: Vec<String> = report
        .iter()
        .filter(|i| {
            !ALLOWED
                .iter()
                .any(|(file, room, _)| *file == i.file && *room == i.to)
        })
        .map(ToString::to_string)
        .collect();
    for (file, room, _) in ALLOWED {
        if !report.iter().any(|i| i.file == *file && i.to == *room) {
            problems.push(format!(
                "allow list entry ({file}, {room}) is no longer needed: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} import(s) run up the order in src/rooms.txt:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_an_upward_import_and_passes_a_downward_one() {
    let order = Order::parse("top\nmiddle\nbottom a b\n[middle]\nouter\ninner\n").unwrap();
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = vec![
        file(
            "lib.rs",
            "mod top; mod middle; mod bottom; mod a; mod b;\npub use bottom::Thing;",
        ),
        file(
            "top.rs",
            "use crate::middle::X; use crate::{bottom::Y, a::Z};",
        ),
        // Up, through a use tree, an inline path, a super path, a re-export
        // and a macro's `$crate`:
        file("bottom.rs", "use crate::{a::Y, top::X};"),
        file(
            "a.rs",
            "fn f() { crate::middle::g() } // see [`T`](crate::top::T)\n",
        ),
        file(
            "b.rs",
            "mod inner { use super::super::top::T; }\nconst S: &str = \"crate::top\";",
        ),
        file(
            "middle.rs",
            "mod outer; mod inner; fn f() -> crate::Thing { todo!() }",
        ),
        file("middle/inner.rs", "use super::outer::O;"),
        file(
            "middle/outer.rs",
            "use super::inner::I; macro_rules! m { () => { $crate::top::m() } }",
        ),
    ];
    let found: BTreeSet<String> = check(&order, &files)
        .iter()
        .map(|i| format!("{} -> {}", i.file, i.to))
        .collect();
    let expected: BTreeSet<String> = [
        "bottom.rs -> top",
        "bottom.rs -> a",
        "a.rs -> middle",
        "a.rs -> top",
        "b.rs -> top",
        "middle/outer.rs -> top",
        "middle/inner.rs -> middle/outer",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_room_missing_from_the_order_is_reported() {
    let order = Order::parse("top\nbottom\n").unwrap();
    let files = vec![
        (
            "lib.rs".to_string(),
            "mod top; mod bottom; mod stray;".to_string(),
        ),
        ("stray.rs".to_string(), String::new()),
    ];
    let found = check(&order, &files);
    assert!(
        found.iter().any(|i| i.file == "lib.rs" && i.to == "stray"),
        "{found:?}"
    );
}

/// The declared order: rooms by level (0 is the top) and, for rooms that
/// declare one, the order of their own files.
struct Order {
    level: BTreeMap<String, usize>,
    inner: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Order {
    fn parse(text: &str) -> Result<Self, String> {
        let mut level = BTreeMap::new();
        let mut inner: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut section: Option<String> = None;
        let mut line_no = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(room) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(room.to_string());
                line_no = 0;
                continue;
            }
            let map = match &section {
                None => &mut level,
                Some(room) => inner.entry(room.clone()).or_default(),
            };
            for name in line.split_whitespace() {
                if map.insert(name.to_string(), line_no).is_some() {
                    return Err(format!("{name} is listed twice"));
                }
            }
            line_no += 1;
        }
        Ok(Order { level, inner })
    }
}

/// One import that runs up the order.
#[derive(Debug)]
struct Upward {
    file: String,
    line: usize,
    to: String,
    why: &'static str,
}

impl std::fmt::Display for Upward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  src/{}:{} imports {} ({})",
            self.file, self.line, self.to, self.why
        )
    }
}

fn read_tree(src: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Every import in `files` (paths relative to `src/`) that runs up `order`.
fn check(order: &Order, files: &[(String, String)]) -> Vec<Upward> {
    let root = files
        .iter()
        .find(|(p, _)| p == "lib.rs")
        .map(|(_, t)| tokens(t))
        .unwrap_or_default();
    let reexports = reexports(&root);
    let mut found = Vec::new();
    for (path, text) in files {
        let module = module_path(path);
        let Some(room) = module.first().cloned() else {
            // lib.rs: every room it declares must be placed.
            for name in declared_modules(&root) {
                if !order.level.contains_key(&name) {
                    found.push(Upward {
                        file: path.clone(),
                        line: 1,
                        to: name,
                        why: "not in the order",
                    });
                }
            }
            continue;
        };
        let Some(&from) = order.level.get(&room) else {
            continue;
        };
        let inner = order.inner.get(&room);
        let from_file = module.get(1).cloned();
        let mut paths = imports(&tokens(text), &module);
        paths.extend(doc_paths(text));
        for (target, line) in paths {
            let Some(first) = target.first() else {
                continue;
            };
            let to_room = if order.level.contains_key(first) {
                first.clone()
            } else if let Some(r) = reexports.get(first) {
                r.clone()
            } else {
                continue;
            };
            if to_room != room {
                let to = order.level[&to_room];
                if to <= from {
                    let why = if to == from {
                        "same line: peers do not import each other"
                    } else {
                        "up"
                    };
                    found.push(Upward {
                        file: path.clone(),
                        line,
                        to: to_room,
                        why,
                    });
                }
                continue;
            }
            // Inside a room that declares the order of its files.
            let (Some(inner), Some(from_file), Some(to_file)) = (inner, &from_file, target.get(1))
            else {
                continue;
            };
            let (Some(&a), Some(&b)) = (inner.get(from_file), inner.get(to_file)) else {
                continue;
            };
            if from_file != to_file && b <= a {
                let why = if a == b {
                    "same line: peers do not import each other"
                } else {
                    "up"
                };
                found.push(Upward {
                    file: path.clone(),
                    line,
                    to: format!("{room}/{to_file}"),
                    why,
                });
            }
        }
    }
    found
}

/// `a/b/c.rs` is module `[a, b, c]`; `lib.rs` and `a/mod.rs` are their folder.
fn module_path(path: &str) -> Vec<String> {
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let mut parts: Vec<String> = path.split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("lib" | "mod")) {
        parts.pop();
    }
    parts
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
}

/// Identifiers and the punctuation paths are made of, with their line,
/// after dropping comments, strings and character literals.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            'r' if matches!(next, Some('#' | '"')) && (i == 0 || !is_ident(chars[i - 1])) => {
                // A raw string r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    // r#ident
                    i = j;
                    continue;
                }
                j += 1;
                loop {
                    match chars.get(j) {
                        None => break,
                        Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                            j += 1 + hashes;
                            break;
                        }
                        Some('\n') => line += 1,
                        _ => {}
                    }
                    j += 1;
                }
                i = j;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    } else if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if next == Some('\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            ':' if next == Some(':') => {
                out.push((Tok::Punct("::"), line));
                i += 2;
            }
            '{' | '}' | ',' | ';' | '*' => {
                let p = match c {
                    '{' => "{",
                    '}' => "}",
                    ',' => ",",
                    ';' => ";",
                    _ => "*",
                };
                out.push((Tok::Punct(p), line));
                i += 1;
            }
            c if is_ident(c) || c == '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push((Tok::Ident(word), line));
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The modules `lib.rs` declares (`mod x;`, `pub mod x;`, `mod x { .. }`).
fn declared_modules(root: &[(Tok, usize)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    for (i, (tok, _)) in root.iter().enumerate() {
        match tok {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => depth -= 1,
            Tok::Ident(w) if w == "mod" && depth == 0 => {
                if let Some((Tok::Ident(name), _)) = root.get(i + 1) {
                    out.push(name.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// Names `lib.rs` re-exports at the crate root, and the room each comes from.
fn reexports(root: &[(Tok, usize)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i + 1 < root.len() {
        if root[i].0 == Tok::Ident("use".into()) {
            let mut j = i + 1;
            let mut leaves = Vec::new();
            use_tree(root, &mut j, Vec::new(), &mut leaves);
            for path in leaves {
                let path: Vec<&String> = path.iter().filter(|s| *s != "crate").collect();
                if let (Some(room), Some(name)) = (path.first(), path.last()) {
                    out.insert((*name).clone(), (*room).clone());
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Reads a use tree from `toks[*i]` on (just after a `::`), pushing every
/// full path it names.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut segment_next = true;
    loop {
        match (toks.get(*i).map(|t| &t.0), segment_next) {
            (Some(Tok::Ident(w)), true) => {
                path.push(w.clone());
                segment_next = false;
                *i += 1;
            }
            (Some(Tok::Punct("::")), false) => {
                segment_next = true;
                *i += 1;
            }
            (Some(Tok::Punct("*")), true) => {
                path.push("*".into());
                *i += 1;
                break;
            }
            (Some(Tok::Punct("{")), true) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Punct("}")) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(",")) => *i += 1,
                        None => return,
                        _ => {
                            let before = *i;
                            use_tree(toks, i, path.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
            }
            _ => break,
        }
    }
    out.push(path);
}

/// Every path a file names, resolved from the crate root, with its line.
/// `module` is the file's module path; inline `mod x { .. }` blocks extend it.
fn imports(toks: &[(Tok, usize)], module: &[String]) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = &toks[i];
        match tok {
            Tok::Punct("{") => {
                depth += 1;
                i += 1;
            }
            Tok::Punct("}") => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct("{"), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w)
                if (w == "crate" || w == "$crate" || w == "super")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Punct("::"))
                    // `$crate` and `crate` after `::` belong to another path.
                    && !(i > 0 && toks[i - 1].0 == Tok::Punct("::")) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut base = if w == "super" {
                    here.pop();
                    here
                } else {
                    Vec::new()
                };
                let mut j = i + 2;
                while let (Some((Tok::Ident(s), _)), Some((Tok::Punct("::"), _))) =
                    (toks.get(j), toks.get(j + 1))
                {
                    if s != "super" {
                        break;
                    }
                    base.pop();
                    j += 2;
                }
                let mut leaves = Vec::new();
                use_tree(toks, &mut j, base, &mut leaves);
                for path in leaves {
                    out.push((path, *line));
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// The rooms `crate::` paths in a file's comments name (doc links, code
/// spans), with their line: a room's docs point down like its code. Only
/// the room is kept: inside a room, docs may name any of its files.
fn doc_paths(text: &str) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find("//") else { continue };
        let mut rest = &line[at..];
        while let Some(found) = rest.find("crate::") {
            let after = &rest[found + "crate::".len()..];
            let path: Vec<String> = after
                .split("::")
                .map(|seg| seg.chars().take_while(|c| is_ident(*c)).collect::<String>())
                .take_while(|seg| !seg.is_empty())
                .take(1)
                .collect();
            if !path.is_empty() {
                out.push((path, i + 1));
            }
            rest = after;
        }
    }
    out
}
