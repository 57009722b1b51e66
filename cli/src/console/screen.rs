//! The terminal console as pure functions: [`App`] holds what the user
//! sees (the latest [`ClusterView`], the view, its order, filter and
//! selection), [`App::on_key`] turns a key into a state change or a
//! [`Command`] for the session to carry out, and [`App::draw`] renders
//! into any ratatui frame (a terminal, or the test backend).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState, Tabs, Wrap};
use ratatui::Frame;
use swarm::inspect::{ActorView, ClusterView};

use super::views::{self, ActorFilter, ActorSort, Alerts, View};

/// A key, as the console understands keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Left arrow.
    Left,
    /// Right arrow.
    Right,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
}

/// What the session should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Nothing beyond redrawing.
    None,
    /// Leave the console.
    Quit,
    /// Restart the actor `name` on the node `node` (hex id).
    Restart {
        /// The actor.
        name: String,
        /// Its node.
        node: String,
    },
    /// Stop the named actor `name`.
    Stop {
        /// The actor.
        name: String,
    },
    /// Drain the node `name` (id `node`, hex).
    Drain {
        /// The node's name.
        name: String,
        /// Its id.
        node: String,
    },
    /// Trace the actor `name` on `node` (hex id), or stop tracing it.
    Trace {
        /// The actor.
        name: String,
        /// Its node.
        node: String,
        /// Start or stop.
        on: bool,
    },
    /// Ask the actor `name` on `node` (hex id) for its state (its inspect
    /// hook), for the detail pane.
    Inspect {
        /// The actor.
        name: String,
        /// Its node.
        node: String,
    },
    /// Replay: toggle pause.
    Pause,
    /// Replay: move by this many frames.
    Seek(i64),
}

/// The console's state.
#[derive(Debug, Clone, Default)]
pub struct App {
    /// The cluster as last seen.
    pub cluster: ClusterView,
    /// The view shown.
    pub view: View,
    /// The Actors view's order.
    pub sort: ActorSort,
    /// The Actors view's filter, as typed.
    pub filter: String,
    /// The filter line has the keyboard.
    pub typing: bool,
    /// The selected row of the view shown.
    pub selected: usize,
    /// The detail pane of the selected actor is open.
    pub detail: bool,
    /// When actors are highlighted.
    pub alerts: Alerts,
    /// The last thing worth saying (an action's result, an error).
    pub status: String,
    /// An action waiting for `y`.
    pub confirm: Option<Command>,
    /// Where the session's frames come from, for the title
    /// (`live ADDR` or `replay FILE k/n`).
    pub source: String,
    /// The state an actor's inspect hook answered: (actor, node, text).
    pub state: Option<(String, String, String)>,
}

impl App {
    /// A console on `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// A new view of the cluster arrived.
    pub fn update(&mut self, cluster: ClusterView) {
        self.cluster = cluster;
        self.selected = self.selected.min(self.rows().saturating_sub(1));
    }

    /// The actors the Actors view lists, in order.
    pub fn actors(&self) -> Vec<&ActorView> {
        views::actors(&self.cluster, self.sort, &ActorFilter::parse(&self.filter))
    }

    fn rows(&self) -> usize {
        match self.view {
            // Counted, not sorted: a sort of 100,000 rows is the frame's
            // largest cost, and the draw sorts once already.
            View::Actors => {
                let filter = ActorFilter::parse(&self.filter);
                self.cluster
                    .actors
                    .iter()
                    .filter(|a| filter.matches(a))
                    .count()
            }
            other => other.rows(&self.cluster),
        }
    }

    /// The selected actor, in the Actors view.
    pub fn selected_actor(&self) -> Option<&ActorView> {
        if self.view != View::Actors {
            return None;
        }
        self.actors().get(self.selected).copied()
    }

    fn switch(&mut self, view: View) {
        self.view = view;
        self.selected = 0;
        self.detail = false;
    }

    /// Handles one key.
    pub fn on_key(&mut self, key: Key) -> Command {
        if self.typing {
            match key {
                Key::Enter | Key::Esc => self.typing = false,
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return Command::None;
        }
        if let Some(action) = self.confirm.take() {
            if key == Key::Char('y') {
                return action;
            }
            self.status = "cancelled".to_owned();
            return Command::None;
        }
        let index = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
        match key {
            Key::Char('q') => return Command::Quit,
            Key::Tab | Key::Right => self.switch(View::ALL[(index + 1) % View::ALL.len()]),
            Key::BackTab | Key::Left => {
                self.switch(View::ALL[(index + View::ALL.len() - 1) % View::ALL.len()]);
            }
            Key::Char(c @ '1'..='9') => {
                if let Some(v) = View::ALL.get(c as usize - '1' as usize) {
                    self.switch(*v);
                }
            }
            Key::Down | Key::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows().saturating_sub(1));
            }
            Key::Up | Key::Char('k') => self.selected = self.selected.saturating_sub(1),
            Key::Char('s') if self.view == View::Actors => {
                self.sort = self.sort.next();
                self.selected = 0;
            }
            Key::Char('/') if self.view == View::Actors => self.typing = true,
            Key::Enter if self.view == View::Actors => {
                self.detail = !self.detail;
                if let Some(a) = self.selected_actor().filter(|_| self.detail) {
                    return Command::Inspect {
                        name: a.name.clone(),
                        node: a.node.clone(),
                    };
                }
            }
            Key::Esc => self.detail = false,
            Key::Char('r') => self.ask_confirm(|a| Command::Restart {
                name: a.name.clone(),
                node: a.node.clone(),
            }),
            Key::Char('x') => self.ask_confirm(|a| Command::Stop {
                name: a.name.clone(),
            }),
            Key::Char('t') => {
                if let Some(a) = self.selected_actor() {
                    let on = !a.tracing;
                    let command = Command::Trace {
                        name: a.name.clone(),
                        node: a.node.clone(),
                        on,
                    };
                    self.status = format!(
                        "{} {} on {}",
                        if on { "tracing" } else { "stopped tracing" },
                        a.name,
                        a.node_name
                    );
                    return command;
                }
            }
            Key::Char('d') if self.view == View::Nodes => {
                if let Some(node) = self.cluster.nodes.get(self.selected) {
                    let name = node.member.name.clone();
                    self.status = format!("drain node {name}? y/n");
                    self.confirm = Some(Command::Drain {
                        name,
                        node: node.member.id.clone(),
                    });
                }
            }
            Key::Char(' ') => return Command::Pause,
            Key::Char('[') => return Command::Seek(-1),
            Key::Char(']') => return Command::Seek(1),
            Key::Char('{') => return Command::Seek(-10),
            Key::Char('}') => return Command::Seek(10),
            _ => {}
        }
        Command::None
    }

    fn ask_confirm(&mut self, command: impl Fn(&ActorView) -> Command) {
        let Some(actor) = self.selected_actor() else {
            return;
        };
        let action = command(actor);
        let verb = match action {
            Command::Restart { .. } => "restart",
            _ => "stop",
        };
        self.status = format!("{verb} {} on {}? y/n", actor.name, actor.node_name);
        self.confirm = Some(action);
    }

    /// Renders the whole console into `frame`.
    pub fn draw(&self, frame: &mut Frame<'_>) {
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.draw_tabs(frame, top);
        let (table_area, detail_area) = if self.detail && self.selected_actor().is_some() {
            let [t, d] = Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(body);
            (t, Some(d))
        } else {
            (body, None)
        };
        self.draw_table(frame, table_area);
        if let (Some(area), Some(actor)) = (detail_area, self.selected_actor()) {
            let state = self
                .state
                .as_ref()
                .filter(|(name, node, _)| *name == actor.name && *node == actor.node)
                .map(|(_, _, text)| text.as_str());
            let placed = self.cluster.placed.iter().find(|p| p.name == actor.name);
            draw_detail(frame, area, actor, placed, state);
        }
        frame.render_widget(Paragraph::new(self.status_line()), bottom);
    }

    fn draw_tabs(&self, frame: &mut Frame<'_>, area: Rect) {
        let titles: Vec<String> = View::ALL
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{} {}", i + 1, v.name()))
            .collect();
        let index = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
        let width: usize = titles.iter().map(|t| t.chars().count() + 3).sum();
        let [tabs, summary] =
            Layout::horizontal([Constraint::Length(width as u16), Constraint::Min(0)]).areas(area);
        let tabs_widget = Tabs::new(titles)
            .select(index)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        frame.render_widget(tabs_widget, tabs);
        let c = &self.cluster;
        let text = format!(
            "{} · {} nodes · {} actors · {} links",
            self.source,
            c.nodes.len(),
            c.actors.len(),
            c.links.len(),
        );
        frame.render_widget(Paragraph::new(text), summary);
    }

    fn draw_table(&self, frame: &mut Frame<'_>, area: Rect) {
        // Only the rows that fit (borders and header take three lines),
        // scrolled so the selection shows.
        let fits = usize::from(area.height.saturating_sub(3)).max(1);
        let first = (self.selected + 1).saturating_sub(fits);
        let w = first..first + fits;
        let c = &self.cluster;
        let (table, alerted): (views::Table, Vec<bool>) = match self.view {
            View::Nodes => (views::nodes_table(c, &w), Vec::new()),
            View::Actors => {
                let all = self.actors();
                let rows = all
                    .get(w.start.min(all.len())..w.end.min(all.len()))
                    .unwrap_or_default();
                let alerted = rows
                    .iter()
                    .map(|a| self.alerts.reason(a).is_some())
                    .collect();
                (views::actors_table(rows), alerted)
            }
            View::Links => (views::links_table(c, &w), Vec::new()),
            View::Services => (views::services_table(c, &w), Vec::new()),
            View::Tasks => (views::tasks_table(c, &w), Vec::new()),
            View::Events => (views::events_table(c, &w), Vec::new()),
            View::Trace => (views::trace_table(c, &w), Vec::new()),
        };
        let widths = column_widths(&table);
        let header =
            Row::new(table.header.clone()).style(Style::new().add_modifier(Modifier::BOLD));
        let rows = table.rows.into_iter().enumerate().map(|(i, cells)| {
            let row = Row::new(cells);
            if alerted.get(i).copied().unwrap_or(false) {
                row.style(Style::new().fg(Color::Red))
            } else {
                row
            }
        });
        let title = match self.view {
            View::Actors => format!(
                " actors · sort: {} · filter: {} ",
                self.sort.name(),
                if self.filter.is_empty() {
                    "-"
                } else {
                    &self.filter
                }
            ),
            View::Trace => match &self.cluster.traced {
                Some(actor) => format!(" trace of {actor} (t on the actor stops it) "),
                None => " trace: select an actor and press t ".to_owned(),
            },
            v => format!(" {} ", v.name()),
        };
        let widget = Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title))
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let mut state = TableState::default().with_selected(Some(self.selected - first));
        frame.render_stateful_widget(widget, area, &mut state);
    }

    fn status_line(&self) -> Line<'static> {
        if self.typing {
            return Line::from(format!("filter: {}▏ (enter to keep)", self.filter));
        }
        if !self.status.is_empty() {
            return Line::from(Span::styled(
                self.status.clone(),
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        let alert = self
            .actors()
            .iter()
            .find_map(|a| self.alerts.reason(a).map(|r| format!("{}: {r}", a.name)));
        match alert {
            Some(alert) => Line::from(Span::styled(
                format!("alert: {alert}"),
                Style::new().fg(Color::Red),
            )),
            None => Line::from(
                "q quit · tab view · ↑↓ select · s sort · / filter · enter detail · t trace · r restart · x stop · d drain",
            ),
        }
    }
}

/// Each column as wide as its widest cell (header included), at most 32;
/// the last takes what is left.
fn column_widths(table: &views::Table) -> Vec<Constraint> {
    let mut widths: Vec<usize> = table.header.iter().map(|h| h.chars().count()).collect();
    for row in &table.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = widths.len().saturating_sub(1);
    widths
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let w = w.min(32) as u16;
            if i == last {
                Constraint::Min(w)
            } else {
                Constraint::Length(w)
            }
        })
        .collect()
}

/// The selected actor's every field (the data model's), `key: value`,
/// flowing over the pane's lines.
fn draw_detail(
    frame: &mut Frame<'_>,
    area: Rect,
    actor: &ActorView,
    placed: Option<&swarm::control::PlacedRow>,
    state: Option<&str>,
) {
    let fields = match serde_json::to_value(actor) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut spans = Vec::new();
    for (key, value) in fields {
        if key == "history" || key == "durable" {
            continue;
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if n.is_f64() => {
                format!("{:.1}", n.as_f64().unwrap_or_default())
            }
            other => other.to_string(),
        };
        spans.push(Span::styled(
            format!("{key}: "),
            Style::new().fg(Color::Cyan),
        ));
        spans.push(Span::raw(format!("{value}   ")));
    }
    let label = |text: &str| Span::styled(text.to_owned(), Style::new().fg(Color::Cyan));
    let mut lines = vec![Line::from(spans)];
    if let Some(p) = placed {
        let r = &p.resources;
        let group = p
            .bundle
            .as_ref()
            .map_or_else(String::new, |(g, b)| format!(", group {g} bundle {b}"));
        lines.push(Line::from(vec![
            label("placement: "),
            Span::raw(format!(
                "{} by the head on {} (epoch {}, placed {} times), reserves {} CPUs, {}, {} GPUs{group}",
                p.state,
                p.node.short(),
                p.epoch,
                p.placements,
                r.cpus,
                views::bytes(r.memory),
                r.gpus,
            )),
        ]));
    }
    if let Some(j) = &actor.durable {
        lines.push(Line::from(vec![
            label("durable: "),
            Span::raw(views::journal(j)),
        ]));
    }
    for r in &actor.history {
        lines.push(Line::from(vec![
            label("restarted "),
            Span::raw(format!("{} {}", views::clock(r.at_ms), r.reason)),
        ]));
    }
    lines.push(Line::from(vec![
        label("state: "),
        Span::raw(
            state
                .unwrap_or("(asking; actors answer with an inspect hook)")
                .to_owned(),
        ),
    ]));
    let widget = Paragraph::new(lines)
        .block(Block::bordered().title(format!(" {} on {} ", actor.name, actor.node_name)))
        .wrap(Wrap { trim: false });
    frame.render_widget(widget, area);
}

#[cfg(test)]
mod tests;
