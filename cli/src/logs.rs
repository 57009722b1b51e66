//! The log filter `swarm` processes start with when `RUST_LOG` is unset:
//! Swarm's own lines at the command's level, libraries' routine chatter
//! below it. `RUST_LOG` replaces it whole (`RUST_LOG=openraft=info` shows
//! openraft's elections again).

/// Libraries whose normal operation logs at info or warn: openraft dumps
/// its whole `RaftState` at info and logs ordinary elections (a vote
/// refused, a leader stepping down for a higher term) at warn. Their
/// errors still show.
pub const QUIET_LIBRARIES: &str = "openraft=error";

/// The filter directive for `level` (e.g. `info`, `warn`): that level for
/// everything but [`QUIET_LIBRARIES`].
pub fn default_filter(level: &str) -> String {
    format!("{level},{QUIET_LIBRARIES}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::EnvFilter;

    use super::*;

    /// What the subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_default_filter_keeps_openraft_elections_below_the_level_but_not_its_errors() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(default_filter("info")))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "openraft::core", "RaftState {{ .. }}");
            tracing::warn!(target: "openraft::engine", "vote is rejected");
            tracing::error!(target: "openraft::storage", "the log is corrupt");
            tracing::info!(target: "swarm_actors::cluster", "member up");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("RaftState"), "{text}");
        assert!(!text.contains("vote is rejected"), "{text}");
        assert!(text.contains("the log is corrupt"), "{text}");
        assert!(text.contains("member up"), "{text}");
    }
}
