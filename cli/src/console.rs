//! `swarm console`: the debug console. It attaches to one member as an
//! operator (certificate and TOTP), polls every member's `swarm.inspect`
//! ([`collect`]), and shows the views of [`views`]: the same rows for the
//! terminal, for `--once VIEW --json`, and (through the data model of
//! `swarm::inspect`) for the admin API.

pub mod record;
pub mod screen;
pub mod views;

pub use swarm_admin::collect;
pub use views::View;

/// What `swarm console --frames N` reports (and `swarm bench console`
/// prints): the cluster's size and what its refreshes cost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FramesReport {
    /// Refreshes made.
    pub frames: u32,
    /// Members listed.
    pub nodes: usize,
    /// Members that answered.
    pub answered: usize,
    /// Actors listed.
    pub actors: usize,
    /// Links listed.
    pub links: usize,
    /// A refresh (every member inspected), median, milliseconds.
    pub poll_ms_p50: f64,
    /// The slowest refresh, milliseconds.
    pub poll_ms_max: f64,
    /// The slowest drawing of a frame, milliseconds.
    pub render_ms_max: f64,
    /// The console's peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

impl FramesReport {
    /// As a table beside the targets of issue 12.
    pub fn table(&self) -> String {
        let rows = [
            (
                "cluster",
                format!(
                    "{} nodes ({} answered), {} actors, {} links",
                    self.nodes, self.answered, self.actors, self.links
                ),
                "",
            ),
            (
                "refresh (poll every node), p50 / max",
                format!("{:.0} / {:.0} ms", self.poll_ms_p50, self.poll_ms_max),
                "≥ 1 per second",
            ),
            (
                "render 200×60, max",
                format!("{:.1} ms", self.render_ms_max),
                "",
            ),
            (
                "console peak RSS",
                format!("{:.1} MiB", self.peak_rss_mib),
                "< 50 MiB",
            ),
        ];
        let mut out = format!("{:<40} {:>44}   {}\n", "metric", "measured", "target");
        for (name, value, target) in rows {
            out.push_str(&format!("{name:<40} {value:>44}   {target}\n"));
        }
        out
    }
}
