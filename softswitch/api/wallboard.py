"""The wallboard: one page of plain HTML and JavaScript, fed live by the CTI WebSocket.

Open `/wallboard?token=<supervisor or agent token>`. Made for a wall-mounted screen across a room:
large type, white and amber on black, every label in Japanese and English. Below the queues, each
outbound campaign that has been started: numbers still to call, connected, calls now, its
abandonment rate against the ceiling, and a progress bar.
"""

from __future__ import annotations

WALLBOARD_HTML = r"""<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ウォールボード Wallboard</title>
<style>
:root { --bg:#000; --fg:#fff; --dim:#b8b8b8; --ok:#3ddc84; --warn:#ffc400; --bad:#ff5252; --card:#111; }
* { box-sizing: border-box; }
html, body { margin:0; background:var(--bg); color:var(--fg);
  font-family:"Noto Sans CJK JP","Noto Sans JP","Hiragino Sans","Yu Gothic",system-ui,sans-serif; }
header { display:flex; justify-content:space-between; align-items:baseline; padding:1.2vw 2vw;
  border-bottom:0.3vw solid #333; }
header h1 { margin:0; font-size:3vw; letter-spacing:.05em; }
header .en { color:var(--dim); font-size:.55em; margin-left:.6em; }
#clock { font-size:3vw; font-variant-numeric:tabular-nums; }
#status { font-size:1.6vw; padding:.2em .6em; border-radius:.3em; background:#333; }
#status.live { background:#0b5d2a; } #status.down { background:#8b0000; }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(44vw, 1fr)); gap:1.5vw; padding:1.5vw 2vw; }
.queue { background:var(--card); border:0.25vw solid #444; border-radius:1vw; padding:1.2vw 1.6vw; }
.queue.alert { border-color:var(--bad); }
.queue h2 { margin:0 0 .8vw 0; font-size:3.2vw; }
.figures { display:grid; grid-template-columns:repeat(4, 1fr); gap:1vw; }
.fig { text-align:center; }
.fig .v { display:block; font-size:6vw; font-weight:800; line-height:1.1; font-variant-numeric:tabular-nums; }
.fig .l { display:block; font-size:1.5vw; color:var(--dim); }
.fig .l b { display:block; color:var(--fg); font-size:1.7vw; font-weight:600; white-space:nowrap; }
.warn { color:var(--warn); } .bad { color:var(--bad); } .ok { color:var(--ok); }
.agents { display:flex; flex-wrap:wrap; gap:.8vw; margin-top:1.2vw; }
.agent-state { font-size:1.7vw; padding:.3em .7em; border-radius:.4em; background:#222; border:0.15vw solid #555; }
.agent-state .n { font-weight:800; font-size:1.3em; margin-left:.4em; font-variant-numeric:tabular-nums; }
.callers { margin-top:1vw; font-size:1.8vw; color:var(--dim); min-height:2.2vw; }
.callers span { color:var(--warn); margin-right:1.2em; font-variant-numeric:tabular-nums; }
#empty { font-size:2.5vw; padding:2vw; color:var(--dim); }
.campaign { border-style:dashed; }
.campaign h2 .mode { font-size:.5em; color:var(--dim); margin-left:.6em; }
.bar { height:1.2vw; background:#333; border-radius:.6vw; overflow:hidden; margin-top:1vw; }
.bar span { display:block; height:100%; background:var(--ok); }
</style></head>
<body>
<header>
  <h1>コールセンター状況<span class="en">Contact centre</span></h1>
  <span id="status" class="down">接続中… Connecting</span>
  <span id="clock">--:--:--</span>
</header>
<main id="queues"><div id="empty">データ待ち… Waiting for data</div></main>
<script>
"use strict";
const STATES = [
  ["available", "受付可", "Ready"], ["offered", "呼出中", "Ringing"], ["on_call", "通話中", "On call"],
  ["wrap_up", "後処理", "Wrap-up"], ["paused", "離席", "Paused"], ["offline", "ログオフ", "Logged out"],
];
const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
let latest = null;       // last queue_stats message
let receivedAt = 0;      // when it arrived (ms), to keep wait clocks running between updates
let backoff = 500;

function mmss(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  const two = n => String(n).padStart(2, "0");
  return (h ? h + ":" + two(m) : String(m)) + ":" + two(s);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function figure(key, value, ja, en, tone) {
  const f = el("div", "fig");
  const v = el("span", "v " + key + (tone ? " " + tone : ""), value);
  const l = el("span", "l");
  l.appendChild(el("b", null, ja));
  l.appendChild(document.createTextNode(en));
  f.appendChild(v); f.appendChild(l);
  return f;
}

function render() {
  const main = document.getElementById("queues");
  if (!latest) return;
  const elapsed = (Date.now() - receivedAt) / 1000;
  main.replaceChildren();
  if (!latest.queues.length && !(latest.campaigns || []).length) {
    main.appendChild(el("div", null, "キューなし No queues")); return;
  }
  for (const q of latest.queues) {
    const card = el("section", "queue");
    card.dataset.queue = q.queue;
    const longest = q.waiting > 0 ? q.longest_wait + elapsed : 0;
    const sl = q.service_level === null || q.service_level === undefined ? null : q.service_level;
    if (longest >= 60 || (sl !== null && sl < 0.8)) card.classList.add("alert");
    card.appendChild(el("h2", null, q.queue));
    const figs = el("div", "figures");
    figs.appendChild(figure("waiting", String(q.waiting), "待ち呼", "Waiting", q.waiting > 0 ? "warn" : ""));
    figs.appendChild(figure("longest", mmss(longest), "最長待ち", "Longest wait",
                            longest >= 60 ? "bad" : longest >= 20 ? "warn" : ""));
    figs.appendChild(figure("sl", sl === null ? "—" : Math.round(sl * 100) + "%", "本日応答率",
                            "Service level today", sl === null ? "" : sl >= 0.8 ? "ok" : "bad"));
    figs.appendChild(figure("abandoned", String(q.abandoned), "本日放棄呼", "Abandoned today",
                            q.abandoned > 0 ? "warn" : ""));
    card.appendChild(figs);
    const callers = el("div", "callers");
    for (const c of (q.callers || []).slice(0, 8)) {
      callers.appendChild(el("span", "caller", mmss(c.wait + elapsed)));
    }
    card.appendChild(callers);
    const agents = el("div", "agents");
    for (const [key, ja, en] of STATES) {
      const n = (q.agents || {})[key] || 0;
      if (key === "offline" && n === 0) continue;
      const chip = el("span", "agent-state " + key, ja + " " + en);
      chip.dataset.state = key;
      chip.appendChild(el("span", "n", String(n)));
      agents.appendChild(chip);
    }
    card.appendChild(agents);
    main.appendChild(card);
  }
  for (const c of (latest.campaigns || [])) main.appendChild(campaignCard(c));
}

const MODES = {preview: "プレビュー Preview", progressive: "プログレッシブ Progressive",
               predictive: "プレディクティブ Predictive"};
const CAMPAIGN_STATES = {running: "発信中 Dialling", paused: "一時停止 Paused", finished: "完了 Finished"};

function campaignCard(c) {
  const card = el("section", "queue campaign");
  card.dataset.campaign = c.id;
  const over = c.abandon_ceiling !== null && c.abandon_rate > c.abandon_ceiling;
  if (over) card.classList.add("alert");
  const h = el("h2", null, c.name);
  h.appendChild(el("span", "mode", (MODES[c.mode] || c.mode) + " · " + (CAMPAIGN_STATES[c.state] || c.state)));
  card.appendChild(h);
  const figs = el("div", "figures");
  figs.appendChild(figure("remaining", String(c.remaining), "未発信", "Still to call", ""));
  figs.appendChild(figure("connected", String(c.connected), "接続", "Connected", c.connected ? "ok" : ""));
  figs.appendChild(figure("calls", String(c.calls), "発信中", "Calls now", ""));
  figs.appendChild(figure("abandon", (c.abandon_rate * 100).toFixed(1) + "%", "放棄率",
                          "Abandoned (max " + Math.round((c.abandon_ceiling || 0) * 100) + "%)", over ? "bad" : "ok"));
  card.appendChild(figs);
  const bar = el("div", "bar");
  const fill = el("span");
  const finished = c.done + c.failed;
  fill.style.width = (c.records ? Math.round(100 * finished / c.records) : 0) + "%";
  bar.appendChild(fill);
  card.appendChild(bar);
  card.appendChild(el("div", "callers progress", finished + " / " + c.records + " 件完了 records done"));
  return card;
}

function setStatus(live, text) {
  const s = document.getElementById("status");
  s.className = live ? "live" : "down";
  s.textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = scheme + "//" + location.host + "/ws/events?kinds=queue_stats,hello&token=" + encodeURIComponent(token);
  const ws = new WebSocket(url);
  ws.onopen = () => { backoff = 500; setStatus(true, "接続済 Live"); };
  ws.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    if (msg.kind === "queue_stats") { latest = msg; receivedAt = Date.now(); render(); }
  };
  ws.onclose = () => {
    setStatus(false, "再接続中… Reconnecting");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

function tick() {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString("ja-JP", {hour12: false});
  render();
}

if (!token) { setStatus(false, "トークンなし No token (?token=...)"); } else { connect(); }
tick();
setInterval(tick, 1000);
</script>
</body></html>
"""
