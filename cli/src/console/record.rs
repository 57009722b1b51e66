//! Recording and replaying a console session: each view of the cluster
//! the console received, one JSON line per frame (the data model's own
//! fields), so a replay renders exactly what the session showed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use swarm::inspect::ClusterView;

/// The most frames a replay loads.
pub const MAX_FRAMES: usize = 100_000;

/// Why a recording could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be opened, written or read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not a frame.
    #[error("{path}:{line}: not a console frame: {reason}")]
    Frame {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The file holds no frame.
    #[error("{path}: no frames recorded")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// More frames than a replay loads.
    #[error("{path}: more than {MAX_FRAMES} frames")]
    TooLong {
        /// The file.
        path: PathBuf,
    },
}

/// Appends frames to a recording.
pub struct Recorder {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl Recorder {
    /// Creates (or truncates) the recording at `path`.
    ///
    /// # Errors
    ///
    /// [`RecordError::Io`] if the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            out: std::io::BufWriter::new(file),
        })
    }

    /// Records one frame (flushed: a session that ends abruptly keeps
    /// every frame it showed). The frame is written as it is encoded, so
    /// recording holds no copy of it (a large cluster's frame is megabytes).
    ///
    /// # Errors
    ///
    /// [`RecordError::Io`] if it cannot be written.
    pub fn frame(&mut self, view: &ClusterView) -> Result<(), RecordError> {
        let path = &self.path;
        let io = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, view).map_err(|e| io(e.into()))?;
        writeln!(self.out).map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// Reads every frame of a recording.
///
/// # Errors
///
/// A [`RecordError`] naming the file (and the line, for a bad frame).
pub fn load(path: &Path) -> Result<Vec<ClusterView>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut frames = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        if frames.len() == MAX_FRAMES {
            return Err(RecordError::TooLong {
                path: path.to_owned(),
            });
        }
        let frame = serde_json::from_str(&line).map_err(|e| RecordError::Frame {
            path: path.to_owned(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(RecordError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(frames)
}

/// Plays frames back: one per step unless paused; seeks clamp to the ends.
#[derive(Debug, Clone)]
pub struct Player {
    frames: Vec<ClusterView>,
    index: usize,
    /// Stepping stops while paused.
    pub paused: bool,
}

impl Player {
    /// A player at the first frame (`frames` is not empty: see [`load`]).
    pub fn new(frames: Vec<ClusterView>) -> Self {
        Self {
            frames,
            index: 0,
            paused: false,
        }
    }

    /// The frame shown now.
    pub fn frame(&self) -> Option<&ClusterView> {
        self.frames.get(self.index)
    }

    /// Where the player is: (frame from 1, frames).
    pub fn position(&self) -> (usize, usize) {
        (self.index + 1, self.frames.len())
    }

    /// The next frame, unless paused or at the end.
    pub fn step(&mut self) {
        if !self.paused {
            self.seek(1);
        }
    }

    /// Moves by `by` frames.
    pub fn seek(&mut self, by: i64) {
        let last = self.frames.len().saturating_sub(1) as i64;
        self.index = (self.index as i64 + by).clamp(0, last) as usize;
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;
    use swarm::inspect::{ActorView, ClusterView};

    use super::*;
    use crate::console::screen::{App, Key};

    fn frames() -> Vec<ClusterView> {
        (0..5u64)
            .map(|i| ClusterView {
                at_ms: 1_000 * i,
                actors: vec![ActorView {
                    name: "ledger".into(),
                    node_name: "n2".into(),
                    state: "running".into(),
                    restarts: i / 2,
                    backlog: i * 7,
                    rate: i as f64 * 1.5,
                    handling_p99_us: 20.0 + i as f64,
                    ..ActorView::default()
                }],
                ..ClusterView::default()
            })
            .collect()
    }

    fn render(view: &ClusterView) -> Buffer {
        let mut app = App::new("session");
        app.update(view.clone());
        app.on_key(Key::Char('2'));
        app.on_key(Key::Enter);
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|f| app.draw(f)).unwrap();
        terminal.backend().buffer().clone()
    }

    #[test]
    fn a_replay_renders_the_frames_the_session_rendered() {
        let path = std::env::temp_dir().join(format!("swarm-record-{}.jsonl", std::process::id()));
        let shown = frames();
        let mut recorder = Recorder::create(&path).unwrap();
        for frame in &shown {
            recorder.frame(frame).unwrap();
        }
        drop(recorder);
        let mut player = Player::new(load(&path).unwrap());
        let _ = std::fs::remove_file(&path);
        for (i, frame) in shown.iter().enumerate() {
            assert_eq!(player.position(), (i + 1, shown.len()));
            let replayed = player.frame().unwrap();
            assert_eq!(render(replayed), render(frame), "frame {}", i + 1);
            player.step();
        }
        // Paused, stepping stays; seeking clamps to the ends.
        player.paused = true;
        player.step();
        assert_eq!(player.position().0, shown.len());
        player.seek(-100);
        assert_eq!(player.position().0, 1);
        player.seek(2);
        assert_eq!(player.frame().map(|f| f.at_ms), Some(2_000));
    }

    #[test]
    fn a_heads_node_ids_are_hex_strings_in_json_and_read_back() {
        use swarm::control::HeadRow;
        use swarm::inspect::NodeLocal;

        let id = |byte: u8| swarm::NodeId::from_bytes([byte; 16]);
        let local = NodeLocal {
            head: Some(HeadRow {
                node: id(1),
                role: "leader".into(),
                leader: Some(id(1)),
                term: 3,
                voters: vec![id(1), id(2)],
                last_log: 9,
                applied: 9,
                lag: vec![(id(2), 1)],
            }),
            ..NodeLocal::default()
        };
        let json = serde_json::to_value(&local).unwrap();
        let (one, two) = ("01".repeat(16), "02".repeat(16));
        let head = &json["head"];
        assert_eq!(head["node"], one.as_str(), "{json}");
        assert_eq!(head["leader"], one.as_str());
        assert_eq!(head["voters"], serde_json::json!([one, two]));
        assert_eq!(head["lag"], serde_json::json!([[two, 1]]));
        assert_eq!(serde_json::from_value::<NodeLocal>(json).unwrap(), local);
    }

    #[test]
    fn a_bad_recording_is_refused_with_its_line() {
        let path =
            std::env::temp_dir().join(format!("swarm-record-bad-{}.jsonl", std::process::id()));
        std::fs::write(
            &path,
            "{\"at_ms\":1,\"nodes\":[],\"actors\":[],\"links\":[],\"closed\":[]}\nnot json\n",
        )
        .unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains(":2: not a console frame"), "{error}");
        std::fs::write(&path, "\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("no frames"));
        let _ = std::fs::remove_file(&path);
        assert!(load(&path).is_err());
    }
}
