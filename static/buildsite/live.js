// Buildsite's browser side: a reconnecting event socket, the live build page, the live
// dashboard and the pipeline editor. A plain ES module: no build step.
//
// Protocol (see docs/live-ui.md): the socket sends one JSON event per message, in id
// order. The page remembers the newest id it applied and reconnects with ?after=<id>,
// so a dropped connection loses nothing; an id already applied is ignored.

const TERMINAL = new Set(["succeeded", "failed", "cached", "upstream_failed", "cancelled"]);
const STATE_ORDER = [
  "pending", "ready", "queued", "running", "retrying",
  "succeeded", "cached", "failed", "upstream_failed", "cancelled",
];
const ICONS = {
  pending: "○", ready: "◔", queued: "◑", running: "▶", retrying: "↻",
  succeeded: "✓", cached: "≡", failed: "✗", upstream_failed: "⊘", cancelled: "■",
};
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;
export const stripAnsi = (text) => text.replace(ANSI, "");

export class LiveSocket {
  constructor(path, { after = 0, onEvent, onStatus = () => {} }) {
    this.path = path;
    this.last = after;
    this.seen = new Set();
    this.seenOrder = [];
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.closedByUs = false;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${this.path}?after=${this.last}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus("connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onStatus("live");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(), 25000);
    };
    ws.onmessage = (msg) => {
      this.lastHeard = Date.now();
      const event = JSON.parse(msg.data);
      if (typeof event.id !== "number") return; // pong
      this.apply(event);
    };
    ws.onclose = () => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws || this.closedByUs) return;
      this.scheduleReconnect();
    };
  }

  apply(event) {
    if (this.seen.has(event.id)) return;
    this.seen.add(event.id);
    this.seenOrder.push(event.id);
    if (this.seenOrder.length > 10000) this.seen.delete(this.seenOrder.shift());
    this.last = Math.max(this.last, event.id);
    this.onEvent(event);
  }

  ping() {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    const sent = Date.now();
    this.ws.send(JSON.stringify({ type: "ping" }));
    // No answer at all within 10 s: the connection is dead even if TCP has not noticed.
    setTimeout(() => {
      if ((this.lastHeard || 0) < sent && this.ws?.readyState === WebSocket.OPEN) this.ws.close();
    }, 10000);
  }

  scheduleReconnect() {
    // Exponential backoff with jitter, 0.5 s up to 15 s.
    const base = Math.min(15000, 500 * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    this.attempt += 1;
    this.onStatus("reconnecting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.connect();
  }

  close() {
    this.closedByUs = true;
    this.ws?.close();
  }
}

function statusReporter() {
  const el = document.querySelector("[data-live-status]");
  return (status, delay) => {
    if (!el) return;
    el.dataset.status = status;
    el.textContent = status === "live" ? "● live"
      : status === "reconnecting" ? `reconnecting in ${Math.ceil(delay / 1000)} s…`
      : "connecting…";
  };
}

function csrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

const el = (tag, attrs = {}, text) => {
  const ns = ["svg", "rect", "text", "g", "line", "title"].includes(tag)
    ? "http://www.w3.org/2000/svg" : null;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};

function stateBadge(state) {
  const span = el("span", { class: `state state-${state}` });
  span.append(el("span", { class: "glyph", "aria-hidden": "true" }), state);
  return span;
}

function seconds(task, now) {
  if (!task.started_at) return null;
  const end = task.finished_at ? Date.parse(task.finished_at) : now;
  return Math.max(0, (end - Date.parse(task.started_at)) / 1000);
}

function fmtSeconds(s) {
  if (s === null) return "—";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const fmtTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—");

// Like Django's filesizeformat, so the server-rendered artifact list and this one agree.
function fmtBytes(n) {
  if (n < 1024) return `${n}\u00a0byte${n === 1 ? "" : "s"}`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = n / 1024, i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${value.toFixed(1)}\u00a0${units[i]}`;
}

// --- the build page ----------------------------------------------------------------------
export function watchBuild({ data, logUrl, rawLogUrl }) {
  const tasks = new Map(data.tasks.map((t) => [t.name, { ...t, log: null, pending: [] }]));
  const page = {
    build: data.build,
    state: data.state,
    selected: null,
    userChose: false,
    follow: true,
  };
  const dag = document.querySelector("[data-dag]");
  const panel = document.querySelector("[data-panel]");
  const logEl = panel.querySelector("[data-log]");
  const followBox = panel.querySelector("[data-follow]");
  const artifactUrl = (task, path) => `/api/builds/${data.build}/artifacts/`
    + `${encodeURIComponent(task)}/${path.split("/").map(encodeURIComponent).join("/")}`;
  const artifactLink = (task, file) =>
    el("a", { href: artifactUrl(task.name, file.path) }, file.path);

  // Selecting a task: graph nodes (click, Enter, Space) and table buttons.
  dag.querySelectorAll("[data-task]").forEach((node) => {
    const pick = () => select(node.dataset.task, true);
    node.addEventListener("click", pick);
    node.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); }
    });
  });
  document.querySelectorAll("[data-select]").forEach((b) =>
    b.addEventListener("click", () => select(b.dataset.select, true)));
  followBox.addEventListener("change", () => {
    page.follow = followBox.checked;
    if (page.follow) logEl.scrollTop = logEl.scrollHeight;
  });
  logEl.addEventListener("scroll", () => {
    const atEnd = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 8;
    if (atEnd !== page.follow) { page.follow = atEnd; followBox.checked = atEnd; }
  });

  document.querySelectorAll("[data-action]").forEach((form) =>
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = document.querySelector("[data-action-result]");
      out.textContent = "…";
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      out.textContent = response.ok
        ? `${form.dataset.action === "cancel" ? "Cancel" : "Retry"} requested.`
        : body.detail || `Refused (${response.status}).`;
      if (response.ok && body.state) setBuildState(body.state);
    }));

  function select(name, byUser) {
    if (!tasks.has(name)) return;
    page.selected = name;
    if (byUser) page.userChose = true;
    dag.querySelectorAll("[data-task]").forEach((n) =>
      n.classList.toggle("selected", n.dataset.task === name));
    document.querySelectorAll("[data-task-row]").forEach((r) =>
      r.classList.toggle("selected", r.dataset.taskRow === name));
    page.follow = true;
    followBox.checked = true;
    renderPanel();
    loadLog(name);
  }

  async function loadLog(name) {
    const task = tasks.get(name);
    if (task.log !== null || task.loading) return;
    task.loading = true;
    try {
      const url = `${logUrl.replace("TASK", encodeURIComponent(name))}?upto=${data.after}`;
      const response = await fetch(url, { credentials: "same-origin" });
      const body = await response.json();
      task.log = (body.truncated ? "… (earlier output cut; see raw log)\n" : "") + body.text
        + stripAnsi(task.pending.join(""));
      task.pending = [];
    } catch {
      task.log = "(could not load the log)\n";
    } finally {
      task.loading = false;
    }
    if (page.selected === name) {
      logEl.dataset.shows = name;
      renderLog(true);
    }
  }

  function appendLog(name, text) {
    const task = tasks.get(name);
    if (!task) return;
    const clean = stripAnsi(text);
    if (task.log === null) { task.pending.push(text); return; }
    task.log += clean;
    if (task.log.length > 2_000_000) task.log = task.log.slice(-1_500_000);
    if (page.selected === name) {
      logEl.append(document.createTextNode(clean));
      if (page.follow) logEl.scrollTop = logEl.scrollHeight;
    }
  }

  function renderLog(full) {
    const task = tasks.get(page.selected);
    if (full) logEl.textContent = task.log ?? "loading…";
    if (page.follow) logEl.scrollTop = logEl.scrollHeight;
  }

  function renderPanel() {
    const task = tasks.get(page.selected);
    if (!task) return;
    const q = (s) => panel.querySelector(s);
    q("[data-panel-empty]").hidden = true;
    q("[data-panel-facts]").hidden = false;
    q("[data-panel-logbar]").hidden = false;
    logEl.hidden = false;
    q("[data-panel-name]").textContent = task.name;
    q("[data-panel-state]").replaceChildren(stateBadge(task.state));
    const retries = task.max_retries ? ` (up to ${task.max_retries + 1})` : "";
    q('[data-fact="attempts"]').textContent = `${task.attempts}${retries}`;
    q('[data-fact="started"]').textContent = fmtTime(task.started_at);
    q('[data-fact="finished"]').textContent = fmtTime(task.finished_at);
    q('[data-fact="took"]').textContent = fmtSeconds(seconds(task, Date.now()));
    q('[data-fact="needs"]').textContent = task.needs.length ? task.needs.join(", ") : "nothing";
    // A re-run's task that took over an earlier build's result says which build.
    q("[data-panel-reused]").hidden = !task.reused_from;
    if (task.reused_from) {
      q("[data-reused-link]").href = `/builds/${task.reused_from}/`;
      q("[data-reused-id]").textContent = task.reused_from;
    }
    // Editors only (the form is not rendered otherwise); a running build refuses re-runs.
    const rerun = q("[data-rerun]");
    if (rerun) {
      rerun.hidden = !TERMINAL.has(task.state) || ["queued", "running"].includes(page.state);
      rerun.querySelector("[data-rerun-from]").value = task.name;
    }
    const err = q("[data-panel-error]");
    err.hidden = !task.error;
    err.textContent = task.error || "";
    const outputs = Object.keys(task.outputs || {}).length ? task.outputs : null;
    q("[data-outputs-head]").hidden = !outputs;
    q("[data-outputs]").hidden = !outputs;
    q("[data-outputs]").textContent = outputs ? JSON.stringify(outputs, null, 2) : "";
    const files = task.artifacts || [];
    q("[data-artifacts-head]").hidden = !files.length;
    q("[data-artifacts-restored]").hidden = task.state !== "cached" || Boolean(task.reused_from);
    q("[data-task-artifacts]").hidden = !files.length;
    q("[data-task-artifacts]").replaceChildren(...files.map((f) => {
      const li = el("li");
      li.append(artifactLink(task, f), " ", el("span", { class: "muted" }, fmtBytes(f.size)));
      return li;
    }));
    q("[data-raw-log]").href = rawLogUrl.replace("TASK", encodeURIComponent(task.name));
    if (task.log !== null && logEl.dataset.shows !== task.name) renderLog(true);
    if (task.log === null) logEl.textContent = "loading…";
    logEl.dataset.shows = task.log === null ? "" : task.name;
  }

  function renderTask(name) {
    const task = tasks.get(name);
    const node = dag.querySelector(`[data-task="${CSS.escape(name)}"]`);
    if (node) {
      node.setAttribute("class", `node state-${task.state}${page.selected === name ? " selected" : ""}`);
      node.querySelector("[data-label]").textContent = task.state.replace("_", " ");
      node.querySelector("[data-icon]").textContent = ICONS[task.state] || "";
      node.setAttribute("aria-label", `${name}: ${task.state}`);
    }
    const row = document.querySelector(`[data-task-row="${CSS.escape(name)}"]`);
    if (row) {
      row.querySelector('[data-cell="state"]').replaceChildren(stateBadge(task.state));
      row.querySelector('[data-cell="attempts"]').textContent = task.attempts;
      row.querySelector('[data-cell="took"]').textContent = fmtSeconds(seconds(task, Date.now()));
    }
    if (page.selected === name) renderPanel();
  }

  function renderProgress() {
    const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
    for (const t of tasks.values()) counts[t.state] = (counts[t.state] || 0) + 1;
    const done = [...tasks.values()].filter((t) => TERMINAL.has(t.state)).length;
    const bar = document.querySelector("[data-progress]");
    bar.replaceChildren(...STATE_ORDER.filter((s) => counts[s]).map((s) => {
      const seg = el("span", { class: `seg state-${s}`, title: `${s}: ${counts[s]}` });
      seg.style.flexGrow = counts[s];
      return seg;
    }));
    bar.setAttribute("aria-label", `${done} of ${tasks.size} tasks done`);
    document.querySelector("[data-done]").textContent = done;
    const list = document.querySelector("[data-counts]");
    list.replaceChildren(...STATE_ORDER.filter((s) => counts[s]).flatMap((s) =>
      [stateBadge(s), ` ${counts[s]} `]));
  }

  // The page-level card: every task's files (the template draws the same on load).
  function renderArtifacts() {
    const rows = [...tasks.values()].flatMap((t) => (t.artifacts || []).map((f) => {
      const name = el("td", {}, t.name);
      if (t.reused_from) name.append(" ", el("small", { class: "muted" }, `reused from build #${t.reused_from}`));
      else if (t.state === "cached") name.append(" ", el("small", { class: "muted" }, "restored from the cache"));
      const file = el("td");
      file.append(artifactLink(t, f));
      const tr = el("tr");
      tr.append(name, file, el("td", {}, fmtBytes(f.size)));
      return tr;
    }));
    const none = el("tr", { "data-artifacts-none": "" });
    none.append(el("td", { colspan: 3, class: "muted" }, "No task has handed on files yet."));
    document.querySelector("[data-artifacts]").replaceChildren(...(rows.length ? rows : [none]));
  }

  let ganttQueued = false;
  function renderGantt() {
    if (ganttQueued) return;
    ganttQueued = true;
    requestAnimationFrame(() => { ganttQueued = false; drawGantt(); });
  }

  function drawGantt() {
    const box = document.querySelector("[data-gantt]");
    const now = Date.now();
    const started = [...tasks.values()].filter((t) => t.started_at);
    if (!started.length) {
      box.replaceChildren(el("p", { class: "muted" }, "No task has started yet."));
      return;
    }
    const t0 = Math.min(...started.map((t) => Date.parse(t.started_at)));
    const t1 = Math.max(...started.map((t) => (t.finished_at ? Date.parse(t.finished_at) : now)));
    const span = Math.max(1000, t1 - t0);
    const labelW = 150, barW = 560, rowH = 24, width = labelW + barW + 90;
    const rows = [...tasks.values()];
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${rows.length * rowH + 24}`,
      class: "gantt-svg",
      role: "img",
      "aria-label": `Task timing: the build has run ${fmtSeconds(span / 1000)} so far`,
    });
    rows.forEach((t, i) => {
      const y = i * rowH;
      svg.append(el("text", { x: 0, y: y + 16, class: "g-name" }, t.name));
      if (!t.started_at) {
        svg.append(el("text", { x: labelW, y: y + 16, class: "g-none" }, t.state));
        return;
      }
      const s = Date.parse(t.started_at) - t0;
      const e = (t.finished_at ? Date.parse(t.finished_at) : now) - t0;
      const x = labelW + (s / span) * barW;
      const w = Math.max(2, ((e - s) / span) * barW);
      const bar = el("rect", { x, y: y + 4, width: w, height: rowH - 8, rx: 3, class: `g-bar state-${t.state}` });
      bar.append(el("title", {}, `${t.name}: ${fmtSeconds((e - s) / 1000)} (${t.state})`));
      svg.append(bar, el("text", { x: x + w + 6, y: y + 16, class: "g-time" },
        `${fmtSeconds((e - s) / 1000)} ${ICONS[t.state] || ""}`));
    });
    const axisY = rows.length * rowH + 14;
    svg.append(
      el("line", { x1: labelW, y1: axisY - 8, x2: labelW + barW, y2: axisY - 8, class: "g-axis" }),
      el("text", { x: labelW, y: axisY + 6, class: "g-time" }, "0 s"),
      el("text", { x: labelW + barW, y: axisY + 6, class: "g-time", "text-anchor": "end" },
        fmtSeconds(span / 1000)),
    );
    box.replaceChildren(svg);
  }

  function setBuildState(state) {
    page.state = state;
    document.querySelector("[data-build-state]").replaceChildren(stateBadge(state));
    const cancel = document.querySelector('[data-action="cancel"]');
    const retry = document.querySelector('[data-action="retry"]');
    if (cancel) cancel.hidden = !["queued", "running"].includes(state);
    if (retry) retry.hidden = !["failed", "cancelled"].includes(state);
    if (page.selected) renderPanel(); // the re-run button follows the build's state
  }

  let refreshTimer = null;
  function refreshDetails() {
    // Events carry states and log text; outputs, artifacts and exact timings come from
    // the API.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      const response = await fetch(`/api/builds/${page.build}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      for (const fresh of body.tasks || []) {
        const task = tasks.get(fresh.name);
        if (!task) continue;
        Object.assign(task, {
          outputs: fresh.outputs, attempts: fresh.attempts, error: fresh.error,
          started_at: fresh.started_at, finished_at: fresh.finished_at,
          artifacts: fresh.artifacts || [], reused_from: fresh.reused_from ?? null,
        });
        renderTask(fresh.name);
      }
      renderArtifacts();
      renderGantt();
    }, 250);
  }

  let buildEventId = 0;

  function onEvent(event) {
    if (event.type === "log" && event.task) {
      appendLog(event.task, event.data?.text || "");
      return;
    }
    // With channels_redis, events written by different processes (a worker's claim, the
    // monitor's settling) can arrive out of id order: a state older than the one shown
    // is ignored, so a task never goes back from running to queued on the page.
    if (event.type === "build.state" && event.state) {
      if (event.id < buildEventId) return;
      buildEventId = event.id;
      setBuildState(event.state);
      return;
    }
    if (event.type !== "task.state" || !tasks.has(event.task)) return;
    const task = tasks.get(event.task);
    if (event.id < (task.eventId || 0)) return;
    task.eventId = event.id;
    task.state = event.state;
    if (event.state === "running") {
      task.started_at = event.time;
      task.finished_at = null;
      task.attempts += 1;
    } else if (event.state === "pending") {
      Object.assign(task, {
        started_at: null, finished_at: null, attempts: 0, error: "", outputs: {}, artifacts: [],
      });
      renderArtifacts();
    } else if (TERMINAL.has(event.state)) {
      task.finished_at = task.finished_at || event.time;
      if (event.data?.error) task.error = event.data.error;
      if (event.data?.reused_from) task.reused_from = event.data.reused_from;
      refreshDetails();
    }
    renderTask(event.task);
    renderProgress();
    renderGantt();
    if (event.state === "running" && !page.userChose) select(event.task, false);
  }

  for (const name of tasks.keys()) renderTask(name);
  renderProgress();
  drawGantt();
  setInterval(() => {
    if ([...tasks.values()].some((t) => t.state === "running")) {
      renderGantt();
      for (const t of tasks.values()) if (t.state === "running") renderTask(t.name);
    }
  }, 1000);
  const wanted = new URLSearchParams(location.search).get("task");
  const initial = (wanted && tasks.has(wanted) && wanted)
    || [...tasks.values()].find((t) => t.state === "running")?.name
    || [...tasks.values()].find((t) => t.state === "failed")?.name;
  if (initial) select(initial, Boolean(wanted));

  const socket = new LiveSocket(`/ws/builds/${data.build}/`, {
    after: data.after,
    onEvent,
    onStatus: statusReporter(),
  });
  socket.connect();
  window.buildsiteSocket = socket; // for the end-to-end tests and the curious
}

// --- the project dashboard ---------------------------------------------------------------
export function watchDashboard({ slug, after }) {
  const box = document.getElementById("live");
  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const response = await fetch(box.dataset.fragmentUrl, { credentials: "same-origin" });
      if (response.ok) box.innerHTML = await response.text();
    }, 300);
  };
  const socket = new LiveSocket(`/ws/projects/${slug}/`, {
    after,
    onEvent: (event) => { if (event.type !== "log") refresh(); },
    onStatus: statusReporter(),
  });
  socket.connect();
  window.buildsiteSocket = socket;
}

// --- the pipeline editor -----------------------------------------------------------------
export function setupEditor(root) {
  if (!root) return;
  const source = root.querySelector("[data-source]");
  const gutter = root.querySelector("[data-gutter]");
  const list = root.querySelector("[data-problems]");
  const result = root.querySelector("[data-check-result]");
  let bad = new Set(
    [...list.querySelectorAll("[data-line]")].map((li) => Number(li.dataset.line)).filter(Boolean));

  const drawGutter = () => {
    const count = source.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) => {
      const span = el("span", { class: bad.has(i + 1) ? "bad" : "" }, `${i + 1}\n`);
      return span;
    }));
    gutter.scrollTop = source.scrollTop;
  };
  const goto = (line) => {
    const lines = source.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    source.focus();
    source.setSelectionRange(start, start + (lines[line - 1] || "").length);
    const lineHeight = source.scrollHeight / Math.max(1, lines.length);
    source.scrollTop = Math.max(0, (line - 3) * lineHeight);
  };
  const show = (problems) => {
    bad = new Set(problems.map((p) => p.line).filter(Boolean));
    list.replaceChildren(...problems.map((p) => {
      const li = el("li", { "data-line": p.line || "" });
      if (p.line) {
        const b = el("button", { type: "button", class: "linkish", "data-goto": p.line }, `line ${p.line}`);
        li.append(b, ": ");
      }
      if (p.loc) li.append(el("code", {}, p.loc), " ");
      li.append(p.msg);
      return li;
    }));
    result.textContent = problems.length
      ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "✓ valid";
    result.dataset.ok = problems.length ? "no" : "yes";
    drawGutter();
  };
  const check = async () => {
    result.textContent = "checking…";
    const response = await fetch(root.dataset.checkUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ definition: source.value }),
    });
    const body = await response.json().catch(() => ({ problems: [{ msg: "check failed" }] }));
    show(body.problems || []);
  };
  let timer = null;
  source.addEventListener("input", () => {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(check, 700);
  });
  source.addEventListener("scroll", () => { gutter.scrollTop = source.scrollTop; });
  list.addEventListener("click", (e) => {
    const line = e.target.closest("[data-goto]")?.dataset.goto;
    if (line) goto(Number(line));
  });
  root.querySelector("[data-check]").addEventListener("click", check);
  drawGutter();
}
