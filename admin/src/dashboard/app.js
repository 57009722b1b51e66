// The Swarm dashboard: logs in (name, password, TOTP), then follows the
// cluster view the node streams (server-sent events) and draws the same
// seven views as `swarm console`. Everything is drawn with textContent:
// names in the cluster never become markup.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 1000;
const state = {
  view: "nodes", data: null, sort: { nodes: "name", actors: "name" }, desc: false,
  selected: null, who: null, source: null, pending: null, names: new Map(),
};

const hex = (v) => Array.isArray(v) ? v.map((b) => b.toString(16).padStart(2, "0")).join("") : String(v ?? "");
const short = (id) => hex(id).slice(0, 8);
const n1 = (x) => (x ?? 0).toFixed(1);
const bytes = (b) => {
  b = b || 0;
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + u[i];
};
const us = (x) => x >= 1000 ? (x / 1000).toFixed(1) + " ms" : Math.round(x || 0) + " µs";
const ago = (s) => s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 60 ? (s / 60).toFixed(1) + " min" : Math.round(s) + " s";
const time = (ms) => new Date(ms).toISOString().slice(11, 23);
const resources = (r) => r ? [r.cpus ? r.cpus + " cpu" : "", r.gpus ? r.gpus + " gpu" : "", r.memory ? bytes(r.memory) : ""].filter(Boolean).join(" ") : "";

// Columns: [title, value(row), sort key (or null), numeric].
const COLUMNS = {
  nodes: [
    ["name", (r) => r.name, (r) => r.name],
    ["id", (r) => short(r.id)],
    ["roles", (r) => r.roles.join(",")],
    ["state", (r) => r.state, (r) => r.state],
    ["cpu %", (r) => n1(r.cpu_percent), (r) => r.cpu_percent, true],
    ["memory", (r) => bytes(r.memory_used) + " / " + bytes(r.memory), null, true],
    ["gpus", (r) => r.gpus, null, true],
    ["load", (r) => r.local ? r.local.load_average.toFixed(2) : "", (r) => r.local?.load_average ?? 0, true],
    ["actors", (r) => r.local ? r.local.actors : "", (r) => r.local?.actors ?? 0, true],
    ["links", (r) => r.local ? r.local.links : "", null, true],
    ["uptime", (r) => r.local ? ago(r.local.uptime_s) : "", (r) => r.local?.uptime_s ?? 0, true],
    ["head", (r) => headText(r)],
    ["problem", (r) => r.error ?? ""],
  ],
  actors: [
    ["name", (r) => r.name, (r) => r.name],
    ["type", (r) => r.type_name, (r) => r.type_name],
    ["node", (r) => r.node_name, (r) => r.node_name],
    ["state", (r) => r.state, (r) => r.state],
    ["epoch", (r) => r.epoch, null, true],
    ["restarts", (r) => r.restarts, (r) => r.restarts, true],
    ["backlog", (r) => r.backlog, (r) => r.backlog, true],
    ["msg/s", (r) => n1(r.rate), (r) => r.rate, true],
    ["p50", (r) => us(r.handling_p50_us), null, true],
    ["p99", (r) => us(r.handling_p99_us), (r) => r.handling_p99_us, true],
    ["errors", (r) => r.errors, (r) => r.errors, true],
  ],
  links: [
    ["node", (r) => nodeName(r.node)],
    ["peer", (r) => r.peer_name || short(r.peer)],
    ["roles", (r) => (r.peer_roles || []).join(",")],
    ["age", (r) => r.age_s === undefined ? "" : ago(r.age_s), null, true],
    ["rtt", (r) => r.rtt_us === undefined ? "" : us(r.rtt_us), null, true],
    ["msgs in/out", (r) => r.msgs_in === undefined ? "" : r.msgs_in + " / " + r.msgs_out, null, true],
    ["bytes in/out", (r) => r.bytes_in === undefined ? "" : bytes(r.bytes_in) + " / " + bytes(r.bytes_out), null, true],
    ["queued", (r) => r.queue_bytes === undefined ? "" : bytes(r.queue_bytes), null, true],
    ["cipher / close reason", (r) => r.cipher ?? ("closed " + time(r.at_ms) + ": " + r.reason)],
  ],
  services: [
    ["service", (r) => r.service],
    ["balancer on", (r) => nodeName(r.node)],
    ["instance", (r) => r.actor + "@" + nodeName(r.instance_node)],
    ["outstanding", (r) => r.outstanding, null, true],
    ["sent", (r) => r.sent, null, true],
    ["latency EWMA", (r) => us(r.latency_us), null, true],
    ["ejected", (r) => r.ejected ? "EJECTED" : ""],
  ],
  tasks: [
    ["node", (r) => r.node],
    ["task", (r) => r.task],
    ["state", (r) => r.state],
    ["resources", (r) => r.resources],
    ["attempt", (r) => r.attempt, null, true],
    ["waits for / totals", (r) => r.reason],
  ],
  events: [
    ["time", (r) => time(r.at_ms)],
    ["node", (r) => nodeName(r.node)],
    ["kind", (r) => r.kind],
    ["subject", (r) => r.subject],
    ["detail", (r) => r.detail],
  ],
  trace: [
    ["time", (r) => time(r.at_ms)],
    ["tag", (r) => r.tag],
    ["from", (r) => r.from],
    ["kind", (r) => r.kind],
    ["bytes", (r) => r.bytes, null, true],
    ["waited", (r) => us(r.waited_us), null, true],
    ["handled", (r) => us(r.handled_us), null, true],
    ["result", (r) => r.result],
  ],
};

// Node names by id, indexed once per view received: rows of 1,000 nodes
// are named without searching the node list for each.
function nodeName(id) {
  const h = hex(id);
  const name = state.names.get(h);
  return name === undefined ? h.slice(0, 8) : name;
}

function received(data) {
  state.data = data;
  state.names = new Map(data.nodes.map((n) => [n.id, n.name]));
}

function headText(r) {
  const h = r.local?.head;
  if (!h) return "";
  const leader = h.leader ? (hex(h.leader) === r.id ? "leader" : "follower of " + nodeName(h.leader)) : "no leader";
  return `${h.role} · ${leader} · term ${h.term} · commit ${h.applied}`;
}

function rows(view) {
  const d = state.data;
  if (!d) return [];
  switch (view) {
    case "nodes": return d.nodes;
    case "actors": {
      const test = filter($("filter").value);
      return d.actors.filter(test);
    }
    case "links": return [...d.links, ...d.closed];
    case "services": return d.services;
    case "tasks": return d.tasks.flatMap((t) => {
      const node = nodeName(t.node);
      const total = { node, task: "(node)", state: `${t.submitted} submitted, ${t.finished} finished, ${t.failed} failed`, resources: "free " + resources(t.free) + " of " + resources(t.total), attempt: "", reason: t.omitted ? `${t.omitted} more not listed` : "" };
      return [total, ...t.rows.map((row) => ({ node, task: row.function + " #" + hex(row.id).slice(0, 8), state: String(row.state).toLowerCase(), resources: resources(row.resources), attempt: row.attempt, reason: row.reason ?? "" }))];
    });
    case "events": return [...d.events].reverse();
    case "trace": return [...d.trace].reverse();
  }
  return [];
}

// The console's filter: plain words match anywhere; node:, type:, state:,
// name: match that field; system actors show only with the word "system".
// The text is parsed once per draw, not once per actor.
function filter(text) {
  const words = text.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const system = words.includes("system");
  const terms = words.filter((w) => w !== "system").map((w) => w.includes(":") ? w.split(/:(.*)/).slice(0, 2) : [null, w]);
  return (a) => {
    if (a.system && !system) return false;
    return terms.every(([k, v]) => {
      const field = { node: a.node_name, type: a.type_name, state: a.state, name: a.name }[k];
      if (k && field !== undefined) return field.toLowerCase().includes(v);
      return [a.name, a.type_name, a.node_name, a.state].some((f) => f.toLowerCase().includes(v));
    });
  };
}

function alerting(a) {
  return a.backlog >= Number($("alert-backlog").value) || a.handling_p99_us >= Number($("alert-p99").value);
}

function draw() {
  const view = state.view;
  const cols = COLUMNS[view];
  let list = rows(view);
  const key = state.sort[view];
  const col = cols.find((c) => c[0] === key);
  if (col && col[2]) {
    // Keys computed once per row, compared without the locale (100,000
    // rows sort in well under a second).
    const f = col[2];
    const keyed = list.map((r) => ({ r, k: col[3] ? Number(f(r)) : String(f(r)) }));
    keyed.sort(col[3] ? (a, b) => b.k - a.k : (a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
    list = keyed.map((x) => x.r);
  }
  const head = document.createElement("tr");
  for (const [title, , sortKey] of cols) {
    const th = document.createElement("th");
    th.textContent = title;
    if (sortKey) {
      th.dataset.sort = title;
      if (title === key) th.classList.add("sorted");
      th.onclick = () => { state.sort[view] = title; draw(); };
    }
    head.appendChild(th);
  }
  $("table").tHead.replaceChildren(head);
  const body = document.createDocumentFragment();
  // The first rows only: a cluster of thousands of actors is read through
  // the sort and the filter, not by scrolling.
  const shown = list.slice(0, MAX_ROWS);
  for (const r of shown) {
    const tr = document.createElement("tr");
    for (const [title, value, , numeric] of cols) {
      const td = document.createElement("td");
      td.textContent = String(value(r));
      td.dataset.col = title;
      if (numeric) td.classList.add("num");
      if (title === "state") td.classList.add("state-" + String(value(r)).toLowerCase());
      tr.appendChild(td);
    }
    if (view === "nodes" && state.who?.roles.includes("admin") && r.state === "alive") {
      // Drain: its named actors move elsewhere, then it leaves.
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.textContent = "drain";
      button.className = "drain";
      button.dataset.node = r.id;
      const target = { node: r.id, name: r.name };
      button.onclick = () => ask(`Drain ${target.name}? Its named actors move elsewhere, then it leaves the cluster; an actor that cannot move keeps running there and the drain stops.`, () => act("drain", target));
      td.appendChild(button);
      tr.appendChild(td);
    }
    if (view === "actors") {
      tr.classList.add("selectable");
      tr.dataset.name = r.name;
      tr.dataset.node = r.node;
      if (alerting(r)) tr.classList.add("alert");
      if (state.selected && state.selected.name === r.name && state.selected.node === r.node) tr.classList.add("selected");
      tr.onclick = () => select(r);
    }
    body.appendChild(tr);
  }
  $("table").tBodies[0].replaceChildren(body);
  const d = state.data;
  if (d) {
    const backlog = Number($("alert-backlog").value), p99 = Number($("alert-p99").value);
    const alerts = d.actors.filter((a) => a.backlog >= backlog || a.handling_p99_us >= p99).length;
    const traced = d.traced ? ` · tracing ${d.traced}` : "";
    const cut = list.length > shown.length ? ` · showing ${shown.length} of ${list.length}` : "";
    $("summary").textContent = `${d.nodes.length} nodes · ${d.actors.length} actors · ${d.links.length} links · ${alerts} alerts${traced}${cut} · ${time(d.at_ms)}`;
  }
  drawDetail();
}

function select(actor) {
  state.selected = { name: actor.name, node: actor.node };
  $("detail-state").textContent = "…";
  fetchJson(`/api/actor?node=${encodeURIComponent(actor.node)}&name=${encodeURIComponent(actor.name)}`)
    .then((s) => { $("detail-state").textContent = pretty(s.state); })
    .catch((e) => { $("detail-state").textContent = e.message; });
  draw();
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function drawDetail() {
  const sel = state.selected;
  const a = sel && state.data?.actors.find((x) => x.name === sel.name && x.node === sel.node);
  $("detail").hidden = !a;
  if (!a) return;
  $("detail-title").textContent = `${a.name} on ${a.node_name}`;
  const placed = state.data.placed.find((p) => p.name === a.name);
  const fields = [
    ["type", a.type_name], ["state", a.state], ["epoch", a.epoch], ["restarts", a.restarts],
    ["supervisor", a.supervisor || "(none)"], ["placed by head", a.placed ? "yes" : "no"],
    ["placement", placed ? [`${placed.state} on ${nodeName(placed.node)}`, `epoch ${placed.epoch}`, `${placed.placements} placements`, resources(placed.resources)].filter(Boolean).join(", ") : ""],
    ["backlog", a.backlog], ["messages", a.messages], ["asks", a.asks], ["msg/s", n1(a.rate)],
    ["handler p50 / p99", us(a.handling_p50_us) + " / " + us(a.handling_p99_us)],
    ["mailbox p99", us(a.waiting_p99_us)], ["errors", a.errors], ["tracing", a.tracing ? "on" : "off"],
  ];
  const j = a.durable;
  if (j) {
    const snap = j.snapshot_seq ? `at ${j.snapshot_seq}` + (j.snapshot_at_ms ? ` (${time(j.snapshot_at_ms)})` : "") : "none";
    fields.push(
      ["journal", `${j.backend}, epoch ${j.epoch} claim ${j.claim}`], ["last seq", j.last_seq],
      ["last snapshot", snap], ["recovery", n1(j.recovery_ms) + " ms"],
      ["written", `${j.events} events, ${bytes(j.bytes)}`],
      ["write p50 / p99", us(j.write_p50_us) + " / " + us(j.write_p99_us)],
    );
  }
  const dl = document.createDocumentFragment();
  for (const [k, v] of fields) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dd.dataset.field = k;
    dl.append(dt, dd);
  }
  $("detail-fields").replaceChildren(dl);
  const items = (a.history || []).map((h) => {
    const li = document.createElement("li");
    li.textContent = `${new Date(h.at_ms).toISOString()} ${h.reason}`;
    return li;
  });
  $("detail-history").replaceChildren(...items);
  $("trace").textContent = a.tracing ? "Stop trace" : "Trace";
}

async function fetchJson(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && state.who) loggedOut("session ended: log in again");
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function post(url, body) {
  return fetchJson(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Swarm-Request": "1" },
    body: JSON.stringify(body),
  });
}

// Actions go through a confirmation box (admin role; audited by the nodes).
function ask(text, action) {
  state.pending = action;
  $("confirm-text").textContent = text;
  $("confirm").hidden = false;
  $("confirm-yes").focus();
}

function act(action, target) {
  $("status").textContent = `${action} ${target.name}…`;
  post("/api/action", { action, node: target.node, name: target.name })
    .then((r) => { $("status").textContent = r.message; })
    .catch((e) => { $("status").textContent = e.message; });
}

function follow() {
  if (state.source) state.source.close();
  const source = new EventSource("/api/stream");
  state.source = source;
  source.addEventListener("view", (e) => {
    received(JSON.parse(e.data));
    draw();
  });
  source.addEventListener("problem", (e) => { $("status").textContent = JSON.parse(e.data); });
  source.addEventListener("ended", () => loggedOut("session ended: log in again"));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) fetchJson("/api/whoami").catch(() => loggedOut("session ended: log in again"));
  };
}

function loggedIn(who) {
  state.who = who;
  document.body.classList.toggle("admin", who.roles.includes("admin"));
  $("who").textContent = `${who.name} (${who.roles.join(", ")})`;
  $("login").hidden = true;
  $("console").hidden = false;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  document.body.dataset.ready = "console";
  follow();
}

function loggedOut(message) {
  if (state.source) state.source.close();
  state.source = null;
  state.who = null;
  $("login").hidden = false;
  $("console").hidden = true;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
  document.body.dataset.ready = "login";
}

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  draw();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    post("/api/login", { name: $("name").value, password: $("password").value, code: $("code").value })
      .then((who) => { $("password").value = ""; $("code").value = ""; loggedIn(who); })
      .catch((err) => { $("code").value = ""; $("login-error").textContent = err.message; });
  });
  $("logout").onclick = () => post("/api/logout", {}).finally(() => loggedOut(""));
  for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => show(b.dataset.view);
  $("filter").oninput = draw;
  $("alert-backlog").oninput = draw;
  $("alert-p99").oninput = draw;
  $("close-detail").onclick = () => { state.selected = null; draw(); };
  $("restart").onclick = () => { const t = { ...state.selected }; ask(`Restart ${t.name}?`, () => act("restart", t)); };
  $("stop").onclick = () => { const t = { ...state.selected }; ask(`Stop ${t.name} (the head forgets it)?`, () => act("stop", t)); };
  $("trace").onclick = () => {
    const t = { ...state.selected };
    const a = state.data.actors.find((x) => x.name === t.name && x.node === t.node);
    act(a && a.tracing ? "untrace" : "trace", t);
  };
  $("confirm-yes").onclick = () => { $("confirm").hidden = true; const f = state.pending; state.pending = null; if (f) f(); };
  $("confirm-no").onclick = () => { $("confirm").hidden = true; state.pending = null; };
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || !state.who) return;
    const k = Number(e.key);
    if (k >= 1 && k <= 7) show(Object.keys(COLUMNS)[k - 1]);
  });
  fetchJson("/api/whoami").then(loggedIn).catch(() => loggedOut(""));
});
