// The dashboard page: one Server-Sent Events stream (/events) from the web process's in-memory view; the first
// message is the whole view, the next ones its changes (the equity curve: only the points changed). Every value is
// written with textContent (never as HTML). window.dashboard holds what the page shows (read by the browser test).
"use strict";

const state = { points: [], updates: 0, last: null, chart: null, stream: null };
window.dashboard = state;

const $ = (id) => document.getElementById(id);
const fmt = (v, d = 2) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const utc = (s) => (s ? new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ") : "-");
const clock = (s) => (s ? new Date(s * 1000).toISOString().slice(11, 19) : "-");

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

function money(v) {
  const td = cell(fmt(v), "num");
  if (v > 0) td.classList.add("pos");
  else if (v < 0) td.classList.add("neg");
  return td;
}

function stateCell(s) {
  const td = document.createElement("td");
  td.className = "state";
  const span = document.createElement("span");
  span.textContent = s;
  span.className = String(s).split(" ")[0];
  td.appendChild(span);
  return td;
}

function fill(tableId, rows) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
}

function render(v) {
  const sys = $("system");
  sys.textContent = v.system.state;
  sys.className = "badge " + v.system.state;
  $("halted").textContent = v.system.halted_reason ? "HALTED: " + v.system.halted_reason : "";
  const a = v.account;
  $("account").textContent = a.equity === null ? "" :
    `balance ${fmt(a.balance)}  equity ${fmt(a.equity)} ${a.currency}`;
  $("broker").textContent = a.connected === null ? "" : "broker " + (a.connected ? "connected" : "DISCONNECTED");
  $("session").textContent = v.session.id ? `session ${v.session.id} since ${utc(v.session.start)} UTC` +
    (a.start_balance !== null ? `, start balance ${fmt(a.start_balance)}` : "") : "(no running session yet)";

  fill("services", Object.entries(v.services).map(([name, s]) => {
    const tr = document.createElement("tr");
    tr.dataset.service = name;
    tr.append(cell(name), stateCell(s.state), cell(s.pid), cell(s.uptime_s === null ? "-" : fmt(s.uptime_s, 0) + " s", "num"),
      cell(s.hb_age_s === null ? "-" : fmt(s.hb_age_s, 1) + " s", "num"), cell(fmt(s.rss_mb, 0), "num"),
      cell(s.restarts, "num"));
    return tr;
  }));
  $("issues").replaceChildren(...v.system.issues.map((i) => {
    const li = document.createElement("li");
    li.textContent = i;
    return li;
  }));

  fill("symbols", Object.entries(v.symbols).map(([sym, r]) => {
    const tr = document.createElement("tr");
    tr.dataset.symbol = sym;
    tr.append(cell(sym), cell(utc(r.bar_time)), cell(r.close, "num"), cell(r.signal), cell(r.hmm_state, "num"),
      cell(r.virtual), money(r.virtual_pnl), cell(r.real + (r.real_lots ? " " + r.real_lots : "")),
      money(r.real_pnl), money(r.paper_pnl), money(r.drift), cell(`${r.real_trades} / ${r.paper_trades}`, "num"),
      cell(r.last_ack || "-"));
    return tr;
  }));

  fill("alerts", v.alerts.slice().reverse().map((al) => {
    const tr = document.createElement("tr");
    tr.className = "sev-" + al.severity + (al.halt ? " halt" : "");
    tr.append(cell(utc(al.time) + ":" + clock(al.time).slice(6)), cell(al.severity), cell(al.kind),
      cell(al.service), cell(al.message));
    return tr;
  }));
  const c = v.counters || {};
  $("counters").textContent = `messages ${c.messages || 0}, gaps ${c.gaps || 0}, browsers ${c.browsers || 0}` +
    (c.browsers_dropped ? `, dropped ${c.browsers_dropped}` : "") + (v.history_note ? ` · history: ${v.history_note}` : "");
}

function mergeCurve(v) {
  if (v.full) state.points = v.curve.slice();
  else if (v.curve.length) {
    const first = v.curve[0][0];
    let keep = state.points.length;
    while (keep > 0 && state.points[keep - 1][0] >= first) keep--;
    state.points = state.points.slice(0, keep).concat(v.curve);
  }
  if (state.points.length > v.curve_points) state.points = state.points.slice(-v.curve_points);
  const data = [state.points.map((p) => p[1]), state.points.map((p) => p[2]), state.points.map((p) => p[3])];
  const el = $("chart");
  if (!state.chart) {
    state.chart = new uPlot({
      width: Math.max(400, el.clientWidth - 10), height: 320,
      scales: { x: { time: true } },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"), // bar times in UTC, as the tables show them
      axes: [{}, { size: 70 }],
      series: [{ label: "bar time (UTC)" }, { label: "real equity", stroke: "#1f6feb", width: 2 },
        { label: "paper equity", stroke: "#d97706", width: 2, dash: [6, 4] }],
    }, data, el);
  } else {
    state.chart.setData(data);
  }
  el.dataset.points = String(state.points.length);
}

function connect() {
  const stream = new EventSource("/events");
  state.stream = stream;
  stream.onopen = () => { $("link").textContent = "live"; };
  stream.onerror = () => { $("link").textContent = "reconnecting…"; };
  stream.onmessage = (e) => {
    const v = JSON.parse(e.data);
    state.updates += 1;
    state.last = v;
    render(v);
    mergeCurve(v);
  };
}

window.addEventListener("resize", () => {
  if (state.chart) state.chart.setSize({ width: Math.max(400, $("chart").clientWidth - 10), height: 320 });
});
connect();
