// The Telemetry dashboard: a page of the report service, reading its API with
// the key pasted at sign-in (sessionStorage: this tab only). Every number links
// to the drill-down that lists the tickets behind it; every ticket to its
// timeline. Data is put in the page as text nodes only, never as HTML.
"use strict";

const store = window.sessionStorage;
const main = document.getElementById("main");
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
let timer = null;
let generation = 0;
class Stale extends Error {}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(path, params, accept) {
  const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
  const resp = await fetch(path + (query.size ? "?" + query : ""), {
    headers: { Authorization: "Bearer " + store.getItem("key"), Accept: accept || "application/json" },
  });
  if (resp.status === 401) { signOut(); throw new ApiError(401, "the key was refused"); }
  if (!resp.ok) {
    let message = resp.statusText;
    try { message = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
    throw new ApiError(resp.status, message);
  }
  return accept === "text/csv" ? resp.text() : resp.json();
}

const tenantPath = (p) => `/v1/tenants/${encodeURIComponent(store.getItem("tenant"))}/${p}`;
const api = (p, params) => call(tenantPath(p), params);

// ---- formatting -----------------------------------------------------------
const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
function fmtMs(ms) {
  if (ms == null) return "–";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
const fmtPct = (r) => (r == null ? "–" : (100 * r).toFixed(1) + " %");
const fmtTime = (t) => (t == null ? "–" : new Date(t).toLocaleString("en-GB", { timeZone: zone }));
function isoDay(d) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
  return parts.format(d);
}
const today = () => isoDay(new Date());
const daysAgo = (n) => isoDay(new Date(Date.now() - n * 86400000));

// ---- routing ----------------------------------------------------------------
function route() {
  const hash = location.hash.slice(1) || "/today";
  const [path, query] = hash.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(query || "")) };
}
const href = (path, params) => "#" + path + "?" + new URLSearchParams(params);
const drillHref = (params) => href("/drill", params);

function numLink(value, text, drill, test) {
  return el("a", { class: "num", href: drillHref(drill), "data-test": test, "data-value": value }, text);
}

function card(label, value, text, drill, test) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label),
    el("div", { class: "value" }, drill ? numLink(value, text, drill, test) : el("span", { "data-test": test }, text)));
}

function filtersForm(params, fields) {
  const input = (name, label, attrs) => el("label", {}, label,
    el("input", { name, value: params[name] || "", ...attrs }));
  const controls = {
    from: () => input("from", "from", { type: "date", required: "" }),
    to: () => input("to", "to", { type: "date", required: "" }),
    tz: () => input("tz", "zone", { size: 16 }),
    granularity: () => el("label", {}, "granularity", el("select", { name: "granularity" },
      ["15m", "30m", "hour", "day", "week", "month"].map((g) =>
        el("option", { value: g, ...(g === params.granularity ? { selected: "" } : {}) }, g)))),
    group_id: () => input("group_id", "first group", { size: 10 }),
    agent_id: () => input("agent_id", "last agent", { size: 10 }),
    channel: () => el("label", {}, "channel", el("select", { name: "channel" },
      ["", "whatsapp", "webchat", "email", "other"].map((c) =>
        el("option", { value: c, ...(c === (params.channel || "") ? { selected: "" } : {}) }, c || "any")))),
    sla_seconds: () => input("sla_seconds", "SLA (s)", { type: "number", min: 1, style: "width:6rem" }),
  };
  const form = el("form", { class: "filters" }, fields.map((f) => controls[f]()), el("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ""));
    location.hash = href(route().path, { ...params, ...data, cursor: "" }).slice(1);
  });
  return form;
}

function withDefaults(params, days) {
  return { from: daysAgo(days), to: today(), tz: zone, sla_seconds: "60", ...params };
}

function chart(id) { return el("div", { class: "chart", id }); }

function plot(id, traces, layout) {
  if (!window.Plotly) return;
  window.Plotly.newPlot(id, traces, { margin: { t: 30, r: 50, b: 40, l: 50 }, legend: { orientation: "h" }, ...layout },
    { displaylogo: false, responsive: true });
}

async function downloadCsv(path, params, name) {
  const text = await call(tenantPath(path), { ...params, format: "csv" }, "text/csv");
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
  document.body.append(a); a.click(); a.remove();
}

// ---- views ------------------------------------------------------------------
const SUMMARY_COUNTS = [
  ["tickets_created", "Created"], ["tickets_closed", "Closed"], ["tickets_abandoned", "Abandoned"],
  ["transfers", "Transfers"], ["customer_messages", "Customer messages"], ["agent_messages", "Agent messages"],
  ["bot_messages", "Bot messages"],
];
const STATS = [["wait_time", "Wait"], ["first_response_time", "First response"], ["handle_time", "Handle"],
  ["resolution_time", "Resolution"], ["avg_reply_time", "Reply"]];

function statsTable(row, drill) {
  return el("table", { "data-test": "stats" },
    el("tr", {}, ["", "count", "avg", "p50", "p90", "p95"].map((h) => el("th", {}, h))),
    STATS.filter(([k]) => row[k]).map(([k, label]) => el("tr", {}, el("td", {}, label),
      el("td", {}, numLink(row[k].count, fmtInt(row[k].count), { ...drill, field: k }, k)),
      ["avg_ms", "p50_ms", "p90_ms", "p95_ms"].map((p) => el("td", {}, fmtMs(row[k][p]))))));
}

async function today_(params, mount) {
  const p = { tz: zone, ...params };
  const body = await api("realtime", { tz: p.tz });
  const day = { report: "summary", from: isoDay(new Date()), to: isoDay(new Date()), tz: p.tz };
  const now = { ...day, report: "now" };
  const oldest = body.oldest_waiting_since;
  const view = el("div", {},
    el("h2", {}, "Today ", el("span", { class: "muted" }, `(${p.tz}, refreshes every 15 s)`)),
    el("div", { class: "cards" },
      card("Created today", body.tickets_created, fmtInt(body.tickets_created), { ...day, field: "tickets_created" }, "tickets_created"),
      card("Closed today", body.tickets_closed, fmtInt(body.tickets_closed), { ...day, field: "tickets_closed" }, "tickets_closed"),
      card("Abandoned today", body.tickets_abandoned, fmtInt(body.tickets_abandoned), { ...day, field: "tickets_abandoned" }, "tickets_abandoned"),
      card("Waiting now", body.waiting_now.total, fmtInt(body.waiting_now.total), { ...now, field: "waiting" }, "waiting_now"),
      card("Held by agents now", body.assigned_now.total, fmtInt(body.assigned_now.total), { ...now, field: "assigned" }, "assigned_now"),
      card("Oldest waiting since", oldest, oldest ? `${fmtTime(oldest)} (${fmtMs(Date.now() - Date.parse(oldest))})` : "nobody waits", null, "oldest")),
    el("div", { class: "row" },
      el("div", {}, el("h2", {}, "Waiting now by group"), el("table", { "data-test": "waiting" },
        el("tr", {}, el("th", {}, "group"), el("th", {}, "waiting")),
        Object.entries(body.waiting_now.by_group).map(([g, n]) => el("tr", { "data-row": g }, el("td", {}, g),
          el("td", {}, numLink(n, fmtInt(n), { ...now, field: "waiting", group_id: g }, "waiting")))))),
      el("div", {}, el("h2", {}, "Today's waits"), statsTable(body, day))),
    chart("waiting-chart"));
  mount(view);
  const groups = Object.keys(body.waiting_now.by_group);
  plot("waiting-chart", [{ type: "bar", x: groups, y: groups.map((g) => body.waiting_now.by_group[g]), name: "waiting" }],
    { title: { text: "Waiting now by group" } });
  timer = setTimeout(() => render(), 15000);
}

async function trends(params, mount) {
  const p = withDefaults(params, 6);
  p.granularity = p.granularity || "day";
  const filters = { from: p.from, to: p.to, tz: p.tz, group_id: p.group_id, agent_id: p.agent_id, channel: p.channel, sla_seconds: p.sla_seconds };
  const [summary, series] = await Promise.all([api("reports/summary", filters),
    api("reports/timeseries", { ...filters, granularity: p.granularity })]);
  const drill = { report: "summary", ...Object.fromEntries(Object.entries(filters).filter(([, v]) => v)) };
  const points = series.points;
  const pointDrill = (pt, field) => ({ ...drill, report: "timeseries", granularity: p.granularity, start: pt.start, field });
  mount(el("div", {},
    filtersForm(p, ["from", "to", "tz", "granularity", "group_id", "agent_id", "channel", "sla_seconds"]),
    el("div", { class: "cards" },
      SUMMARY_COUNTS.map(([k, label]) => card(label, summary[k], fmtInt(summary[k]), { ...drill, field: k }, k)),
      card("Abandon rate", summary.abandon_rate, fmtPct(summary.abandon_rate), { ...drill, field: "tickets_abandoned" }, "abandon_rate"),
      card(`Service level (${summary.sla_seconds} s)`, summary.service_level, fmtPct(summary.service_level), { ...drill, field: "service_level" }, "service_level")),
    statsTable(summary, drill),
    el("div", { class: "row" }, chart("volume-chart"), chart("wait-chart")),
    el("h2", {}, "Points"),
    el("table", { "data-test": "points" },
      el("tr", {}, ["start", "created", "closed", "abandoned", "first responses", "service level", "wait p90"].map((h) => el("th", {}, h))),
      points.map((pt) => el("tr", {}, el("td", {}, fmtTime(pt.start)),
        ["tickets_created", "tickets_closed", "tickets_abandoned"].map((k) => el("td", {}, numLink(pt[k], fmtInt(pt[k]), pointDrill(pt, k), k))),
        el("td", {}, numLink(pt.first_response_time.count, fmtInt(pt.first_response_time.count), pointDrill(pt, "first_response_time"), "first_response_time")),
        el("td", {}, fmtPct(pt.service_level)), el("td", {}, fmtMs(pt.wait_time.p90_ms)))))));
  const x = points.map((pt) => pt.start);
  plot("volume-chart", [["tickets_created", "created"], ["tickets_closed", "closed"], ["tickets_abandoned", "abandoned"]]
    .map(([k, name]) => ({ type: "scatter", mode: "lines+markers", x, y: points.map((pt) => pt[k]), name })),
  { title: { text: "Tickets" } });
  plot("wait-chart", [
    { type: "scatter", mode: "lines", x, y: points.map((pt) => (pt.wait_time.p90_ms ?? null) / 1000), name: "wait p90 (s)" },
    { type: "scatter", mode: "lines", x, y: points.map((pt) => (pt.first_response_time.p90_ms ?? null) / 1000), name: "first response p90 (s)" },
    { type: "scatter", mode: "lines", x, y: points.map((pt) => pt.service_level), name: "service level", yaxis: "y2" },
  ], { title: { text: "Waits and service level" }, yaxis2: { overlaying: "y", side: "right", range: [0, 1], tickformat: ".0%" } });
}

const TABLES = {
  groups: { id: "group_id", cols: [["stints", "stints"], ["answered", "answered"], ["abandoned", "abandoned"],
    ["transferred_out", "transferred out"], ["queue_time", "avg queue time"]] },
  agents: { id: "agent_id", cols: [["stints", "stints"], ["handle_time", "avg handle time"], ["agent_messages", "messages"],
    ["first_responses", "first responses"], ["tickets_closed", "closed"]] },
};

async function table(name, params, mount) {
  const spec = TABLES[name];
  const p = withDefaults(params, 6);
  p.sort = p.sort || spec.id;
  const range = { from: p.from, to: p.to, tz: p.tz };
  const body = await api(`reports/${name}`, { ...range, sort: p.sort, limit: 200, cursor: p.cursor });
  const sortKey = (k) => (["queue_time", "handle_time"].includes(k) ? k + ".avg_ms" : k);
  const header = (k, label) => {
    const key = sortKey(k);
    const next = p.sort === key ? "-" + key : key;
    const mark = p.sort === key ? " ▲" : p.sort === "-" + key ? " ▼" : "";
    return el("th", { class: "sortable", "data-sort": key, onclick: () => { location.hash = href(`/${name}`, { ...p, sort: next, cursor: "" }).slice(1); } }, label + mark);
  };
  mount(el("div", {},
    filtersForm(p, ["from", "to", "tz"]),
    el("p", {}, el("button", { "data-test": "csv", onclick: () => downloadCsv(`reports/${name}`, { ...range, sort: p.sort }, `${name}-${p.from}-${p.to}.csv`) }, "Download CSV")),
    el("table", { "data-test": name },
      el("tr", {}, header(spec.id, spec.id === "group_id" ? "group" : "agent"), spec.cols.map(([k, label]) => header(k, label)),
        el("th", {}, spec.id === "group_id" ? "queue p90" : "handle p90")),
      body.rows.map((row) => el("tr", { "data-row": row[spec.id] }, el("td", {}, row[spec.id]),
        spec.cols.map(([k]) => {
          // A stats column shows its average; its link lists the stints averaged.
          const stats = typeof row[k] === "object";
          const value = stats ? row[k].count : row[k];
          const text = stats ? fmtMs(row[k].avg_ms) : fmtInt(value);
          return el("td", {}, numLink(value, text, { report: name, ...range, [spec.id]: row[spec.id], field: k }, k));
        }),
        el("td", {}, fmtMs((row.queue_time || row.handle_time).p90_ms))))),
    body.next_cursor ? el("a", { href: href(`/${name}`, { ...p, cursor: body.next_cursor }) }, "Next page") : ""));
}

async function drillView(params, mount) {
  const body = await api("drill", { ...params, limit: 100 });
  const m = (r, k) => r.metrics[k];
  const what = params.group_id && params.report === "groups" ? ` of group ${params.group_id}`
    : params.agent_id && params.report === "agents" ? ` of agent ${params.agent_id}` : "";
  mount(el("div", {},
    el("h2", {}, `${params.field}${what}`, params.sla ? ` ${params.sla} ${params.sla_seconds || 60} s` : "",
      el("span", { class: "muted" }, ` — ${params.report}, ${fmtTime(body.start)} to ${fmtTime(body.end)}`)),
    el("p", {}, "Number: ", el("strong", { "data-test": "total" }, fmtInt(body.total)), " from ",
      el("strong", { "data-test": "tickets" }, fmtInt(body.tickets)), " tickets. ",
      el("button", { "data-test": "csv", onclick: () => downloadCsv("drill", { ...params, limit: 1000 }, `drill-${params.field}.csv`) }, "Download CSV")),
    el("table", { "data-test": "drill" },
      el("tr", {}, ["ticket", "count", "status", "channel", "first group", "created", "closed", "wait", "first response", "handle", "resolution"].map((h) => el("th", {}, h))),
      body.rows.map((r) => el("tr", {},
        el("td", {}, el("a", { href: href("/ticket", { id: r.ticket_id }), "data-test": "ticket" }, r.ticket_id)),
        el("td", {}, fmtInt(r.count)), el("td", {}, m(r, "status")), el("td", {}, m(r, "channel") || "–"),
        el("td", {}, m(r, "first_group_id") || "–"), el("td", {}, fmtTime(m(r, "created_at"))), el("td", {}, fmtTime(m(r, "closed_at"))),
        ["wait_time_ms", "first_response_time_ms", "handle_time_ms", "resolution_time_ms"].map((k) => el("td", {}, fmtMs(m(r, k))))))),
    body.next_cursor ? el("a", { href: drillHref({ ...params, cursor: body.next_cursor }) }, "Next page") : ""));
}

async function ticketView(params, mount) {
  // Fully encoded: a literal "/" would let the browser resolve "." and ".." segments
  // (another path); the server decodes %2F before routing to {ticket_id:path}.
  const t = await api(`tickets/${encodeURIComponent(params.id)}`);
  const mx = t.metrics;
  const lanes = [];
  const bar = (lane, s, color) => {
    const end = s.ended_at || t.events[t.events.length - 1].occurred_at;
    lanes.push({ type: "bar", orientation: "h", y: [lane], base: [s.started_at], x: [Date.parse(end) - Date.parse(s.started_at)],
      marker: { color }, showlegend: false, hovertext: `${lane}: ${s.started_at} → ${s.ended_at || "open"}` });
  };
  t.group_stints.forEach((s) => bar(`group ${s.group_id}`, s, "#8fb1ff"));
  t.agent_stints.forEach((s) => bar(`agent ${s.agent_id}`, s, "#7cd4a6"));
  lanes.push({ type: "scatter", mode: "markers", y: t.events.map(() => "events"), x: t.events.map((e) => e.occurred_at),
    text: t.events.map((e) => e.type), marker: { size: 11, color: "#2456d6" }, showlegend: false });
  mount(el("div", {},
    el("h2", {}, "Ticket ", el("span", { "data-test": "ticket-id" }, t.ticket_id), " ", el("span", { class: "muted" }, mx.status)),
    el("div", { class: "cards" },
      [["created_at", fmtTime], ["closed_at", fmtTime], ["wait_time_ms", fmtMs], ["first_response_time_ms", fmtMs],
        ["queue_time_ms", fmtMs], ["handle_time_ms", fmtMs], ["resolution_time_ms", fmtMs], ["transfers", fmtInt],
        ["agents_involved", fmtInt]].map(([k, f]) => card(k.replace(/_ms$/, "").replaceAll("_", " "), mx[k], f(mx[k]), null, k))),
    chart("timeline"),
    el("h2", {}, "Events"),
    el("table", { "data-test": "events" },
      el("tr", {}, ["time", "type", "group", "agent", "sender", "event id"].map((h) => el("th", {}, h))),
      t.events.map((e) => el("tr", {}, el("td", {}, fmtTime(e.occurred_at)), el("td", {}, e.type),
        el("td", {}, e.group_id || e.to_group_id || ""), el("td", {}, e.agent_id || e.to_agent_id || ""),
        el("td", {}, e.sender || e.closed_by || ""), el("td", {}, e.event_id))))));
  plot("timeline", lanes, { title: { text: "Timeline" }, xaxis: { type: "date" }, barmode: "overlay" });
}

const VIEWS = {
  "/today": today_, "/trends": trends, "/groups": (p, m) => table("groups", p, m), "/agents": (p, m) => table("agents", p, m),
  "/drill": drillView, "/ticket": ticketView,
};

// ---- sign-in and rendering --------------------------------------------------
function signOut() {
  generation++;
  store.removeItem("key"); store.removeItem("tenant");
  render();
}

function showSignIn() {
  main.removeAttribute("data-loading");
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  main.replaceChildren(document.getElementById("signin").content.cloneNode(true));
  const form = document.getElementById("signin-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    store.setItem("key", document.getElementById("key").value.trim());
    try {
      const who = await call("/v1/key");
      store.setItem("tenant", who.tenant_id);
      render();
    } catch (err) {
      store.removeItem("key");
      showSignIn();
      document.getElementById("signin-error").textContent = "That key was refused: " + err.message;
    }
  });
}

async function render() {
  clearTimeout(timer);
  if (!store.getItem("key") || !store.getItem("tenant")) { showSignIn(); return; }
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = "tenant " + store.getItem("tenant");
  const { path, params } = route();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + path);
  const view = VIEWS[path] || today_;
  // A render that a newer one overtook (its answers came late) shows nothing.
  const mine = ++generation;
  const mount = (node) => {
    if (mine !== generation) throw new Stale();
    main.replaceChildren(node);
  };
  main.setAttribute("data-loading", "1");
  try {
    await view(params, mount);
  } catch (err) {
    if (!(err instanceof Stale) && mine === generation) {
      main.replaceChildren(el("p", { class: "error", "data-test": "error" }, `${err.status || ""} ${err.message}`));
    }
  } finally {
    if (mine === generation) main.removeAttribute("data-loading");
  }
}

document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", render);
render();
