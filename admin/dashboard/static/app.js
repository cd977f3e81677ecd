// The supervisor dashboard: log in, watch the live board, open a call, work the queue.
// Everything shown arrives over /board (pushed from the live event fan-out); actions go to
// the admin API. Text from calls is attacker-controlled: it is only ever set as text.

import * as api from "./api.js";
import { h, clear, duration, ago, toast, stateLabel, moodMeter, reasonText } from "./ui.js";
import { renderCall, fillBrowserLeg } from "./call.js";
import * as phone from "./browserphone.js";
import { renderHistory, renderPastCall } from "./history.js";
import { renderCharts } from "./charts.js";

const state = {
  me: null, // the hello: user, role, queues, may_command, commands_all, phone
  calls: new Map(), // call id -> card
  open: null, // {call, transcript, timeline} of the call on screen
  socket: null,
  retry: 0,
  queues: null, // GET /queues, for the queue view
};

// Event -> board latency as this page sees it (seconds), for the benchmark and the tests.
// firstSeen: when each call first reached this page (seconds, wall clock).
// audio: the browser leg (browserphone.js); heard(seconds): what it heard, as 16 kHz samples.
window.parley = { latencies: [], messages: 0, firstSeen: {}, state, audio: phone.leg, heard: phone.heard };

function seen(callId) {
  if (!(callId in window.parley.firstSeen)) window.parley.firstSeen[callId] = Date.now() / 1000;
}

const $ = (id) => document.getElementById(id);

// The browser leg's meter and state follow it without redrawing the call view.
phone.onChange(() => {
  const view = $("view");
  const card = state.calls.get(view.dataset.call || "");
  if (card && state.me) fillBrowserLeg(view, card, state.me);
  const badge = $("on-call");
  const leg = phone.leg;
  badge.hidden = leg.state !== "on";
  badge.querySelector("a").href = `#/call/${leg.callId}`;
  updateRinging();
});
$("leave-browser").addEventListener("click", () => phone.hangUp());

// --- logging in and out ------------------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  try {
    await api.login(form.username.value, form.password.value);
    form.password.value = "";
    start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

$("logout").addEventListener("click", () => logout("Logged out."));

function logout(message) {
  phone.hangUp();
  $("ringing").hidden = true;
  api.forget();
  if (state.socket) state.socket.close(1000);
  state.socket = null;
  state.me = null;
  state.calls.clear();
  showLogin(message);
}

function showLogin(message) {
  document.querySelector("header.top").hidden = true;
  clear($("view"));
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  document.querySelector("#login input[name=username]").focus();
}

function start() {
  if (!api.token()) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  connect();
}

// --- the live socket ---------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/board`);
  state.socket = socket;
  setConnection("connecting…", "pending");
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "hello", token: api.token() }));
  });
  socket.addEventListener("message", (event) => receive(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return; // replaced or logged out
    if (event.code === 4401) {
      logout("Your session has ended; log in again.");
      return;
    }
    if (event.code === 4403) {
      logout("Your role may not watch the live board.");
      return;
    }
    const wait = Math.min(5000, 250 * 2 ** state.retry++);
    setConnection(`reconnecting in ${Math.round(wait / 1000)} s…`, "down");
    setTimeout(() => state.socket === socket && connect(), wait);
  });
}

function setConnection(text, level) {
  const box = $("connection");
  box.textContent = text;
  box.dataset.level = level;
}

const CAUSED_BY_EVENTS = new Set(["call", "ended", "lines", "timeline"]);

// A call ringing this browser (offered to a supervisor whose phone is the browser): a banner,
// whatever view is open, to answer it here or decline it.
function updateRinging() {
  const banner = $("ringing");
  const me = state.me;
  const leg = phone.leg;
  const card = me && [...state.calls.values()].find((c) =>
    c.browser === me.user && !c.browser_joined && c.state !== "ended"
    && !(leg.callId === c.call_id && leg.state === "joining"));
  banner.hidden = !card;
  if (!card) return;
  banner.dataset.call = card.call_id;
  const why = card.escalation ? ` · ${reasonText(card.escalation.reason)}` : "";
  banner.querySelector(".what").textContent = `${card.line || "a call"} · ${card.caller}${why}`;
}

$("answer-ringing").addEventListener("click", async () => {
  const callId = $("ringing").dataset.call;
  location.hash = `#/call/${callId}`;
  try {
    await phone.join(callId, { ringing: true });
  } catch (error) {
    toast(`Could not answer from this browser: ${error.message}`);
  }
  updateRinging();
});

$("decline-ringing").addEventListener("click", async () => {
  const card = state.calls.get($("ringing").dataset.call);
  if (!card) return;
  try {
    if (card.escalation) await api.call("POST", `/escalations/${card.escalation.ref}/decline`);
    else await api.call("POST", `/calls/${card.call_id}/dismiss`);
    toast("Declined.", "info");
  } catch (error) {
    toast(error.message);
  }
});

function receive(message) {
  window.parley.messages += 1;
  // Snapshots (board, detail) are stamped when sent, not by an event: left out.
  if (typeof message.t_event === "number" && CAUSED_BY_EVENTS.has(message.type)) {
    const seen = window.parley.latencies;
    seen.push(Date.now() / 1000 - message.t_event);
    if (seen.length > 5000) seen.shift();
  }
  switch (message.type) {
    case "hello":
      state.me = message;
      state.retry = 0;
      setConnection("live", "up");
      showChrome();
      route();
      break;
    case "board":
      state.calls = new Map(message.calls.map((card) => [card.call_id, card]));
      message.calls.forEach((card) => seen(card.call_id));
      refresh();
      updateRinging();
      break;
    case "call":
      seen(message.call.call_id);
      state.calls.set(message.call.call_id, message.call);
      if (state.open && state.open.call.call_id === message.call.call_id) {
        state.open.call = message.call;
      }
      refresh(message.call.call_id);
      updateRinging();
      break;
    case "ended": {
      const card = state.calls.get(message.call_id);
      state.calls.delete(message.call_id);
      if (card && card.escalation) refreshQueues();
      refresh(message.call_id);
      updateRinging();
      break;
    }
    case "detail":
      if (openId() === message.call_id) {
        state.open = message;
        refresh(message.call_id);
      }
      break;
    case "unknown":
      if (openId() === message.call_id) {
        state.open = { missing: true, call_id: message.call_id };
        refresh(message.call_id);
      }
      break;
    case "lines":
      if (state.open && state.open.call && state.open.call.call_id === message.call_id) {
        for (const line of message.lines) {
          const at = state.open.transcript.findIndex((l) => l.id === line.id);
          if (at >= 0) state.open.transcript[at] = line;
          else state.open.transcript.push(line);
        }
        refresh(message.call_id);
      }
      break;
    case "timeline":
      if (state.open && state.open.call && state.open.call.call_id === message.call_id) {
        state.open.timeline.push(...message.items);
        refresh(message.call_id);
      }
      break;
    case "error":
      toast(message.message);
      break;
    default:
      break;
  }
}

// --- views ---------------------------------------------------------------------------------

function showChrome() {
  document.querySelector("header.top").hidden = false;
  const me = state.me;
  $("who").textContent = `${me.user} (${me.role})`;
  $("presence-box").hidden = !me.is_supervisor;
}

$("presence").addEventListener("change", async (event) => {
  try {
    await api.call("PUT", `/supervisors/${encodeURIComponent(state.me.user)}/presence`, {
      state: event.target.value,
    });
    toast(`You are ${event.target.selectedOptions[0].textContent.toLowerCase()}.`, "info");
    refreshQueues();
  } catch (error) {
    toast(error.message);
  }
});

window.addEventListener("hashchange", route);

function openId() {
  const match = location.hash.match(/^#\/call\/([0-9a-f]{32})$/);
  return match ? match[1] : null;
}

function route() {
  if (!state.me) return;
  const id = openId();
  if (id === null && state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "watch", call_id: null }));
  }
  state.open = null;
  if (id !== null) {
    state.socket.send(JSON.stringify({ type: "watch", call_id: id }));
  }
  const view = viewName();
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.dataset.view === view || (view === "call" && link.dataset.view === "board")
      || (view === "past" && link.dataset.view === "history");
    link.setAttribute("aria-current", current ? "page" : "false");
  }
  delete $("view").dataset.call;
  if (view === "queue") refreshQueues();
  if (view === "history") renderHistory($("view"), state);
  else if (view === "past") renderPastCall($("view"), state, location.hash.slice("#/history/".length));
  else if (view === "charts") renderCharts($("view"), state);
  else refresh();
  $("main").focus({ preventScroll: true });
}

// The view the address names: the live ones redraw as events come; the others on opening.
function viewName() {
  if (openId() !== null) return "call";
  if (/^#\/history\/[0-9a-f]{32}$/.test(location.hash)) return "past";
  const name = location.hash.slice(2);
  return ["queue", "history", "charts"].includes(name) ? name : "board";
}

function refresh(changed) {
  if (!state.me) return;
  const id = openId();
  if (id !== null) {
    if (changed === undefined || changed === id) {
      renderCall($("view"), state, id, act);
    }
    return;
  }
  const view = viewName();
  if (view === "queue") renderQueue($("view"));
  else if (view === "board") renderBoard($("view"));
}

// The board: one row per live call.
function renderBoard(view) {
  const calls = [...state.calls.values()];
  clear(view);
  view.append(
    h("h1", {}, "Live calls"),
    h("p", { class: "count", id: "board-count" }, `${calls.length} live ${calls.length === 1 ? "call" : "calls"}`),
  );
  if (calls.length === 0) {
    view.append(h("p", { class: "empty" }, "No calls right now. Calls appear here the moment they are answered."));
    return;
  }
  const rows = calls.map((card) =>
    h("tr", { "data-call": card.call_id, class: `state-${card.state}` },
      h("td", {}, h("a", { href: `#/call/${card.call_id}` }, card.line || "—")),
      h("td", { class: "mono" }, card.caller),
      h("td", { class: "mono", "data-since": String(card.answered_at || card.started_at) },
        duration(card.answered_at || card.started_at)),
      h("td", {}, h("span", { class: `badge ${card.state}` }, stateLabel(card))),
      h("td", { class: "utterance" }, card.last_text
        ? [h("span", { class: `who ${card.last_speaker}` }, card.last_speaker === "caller" ? "Caller: " : "Agent: "), card.last_text]
        : h("span", { class: "muted" }, "…")),
      h("td", { class: "num" }, card.latency_ms == null ? "—" : `${(card.latency_ms / 1000).toFixed(2)} s`),
      h("td", {}, moodMeter(card.frustration)),
    ));
  view.append(
    h("table", { class: "board", "aria-label": "Live calls" },
      h("thead", {}, h("tr", {},
        ...["Line", "Caller", "Duration", "State", "Last words", "Voice-to-voice", "Frustration"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...rows)),
  );
}

// The queue: calls waiting for a person, and who is there to take them.
function renderQueue(view) {
  const waiting = [...state.calls.values()].filter((c) => c.state === "queued" || c.state === "ringing");
  clear(view);
  view.append(h("h1", {}, "Queue"));
  if (waiting.length === 0) {
    view.append(h("p", { class: "empty" }, "Nobody is waiting for a person."));
  }
  for (const card of waiting) {
    const esc = card.escalation;
    const mine = state.me.commands_all || (state.me.is_supervisor && state.me.queues.includes(card.queue));
    const offeredTo = esc.supervisor && card.state === "ringing" ? ` — ringing ${esc.supervisor}` : "";
    view.append(
      h("article", { class: "waiting", "data-call": card.call_id, "aria-label": `Waiting call on ${card.line}` },
        h("header", {},
          h("a", { href: `#/call/${card.call_id}` }, `${card.line || "—"} · ${card.caller}`),
          h("span", { class: `badge ${card.state}` }, stateLabel(card)),
          h("span", { class: "wait", "data-since": String(esc.requested_at) }, ago(esc.requested_at)),
        ),
        h("p", {}, h("strong", {}, "Reason: "), reasonText(esc.reason), ` · queue ${esc.queue || card.queue || "default"}${offeredTo}`),
        esc.summary ? h("p", { class: "summary" }, esc.summary) : h("p", { class: "muted" }, "The briefing comes with the offer."),
        mine && state.me.may_command
          ? h("div", { class: "actions" },
            h("button", { type: "button", onclick: () => offer(esc.ref, "accept") }, "Accept"),
            h("button", { type: "button", class: "quiet", onclick: () => offer(esc.ref, "decline") }, "Decline"))
          : null,
      ),
    );
  }
  view.append(h("h2", {}, "Supervisors"));
  const queues = state.queues;
  if (!queues) {
    view.append(h("p", { class: "muted" }, "Asking the escalation service…"));
    return;
  }
  if (queues.error) {
    view.append(h("p", { class: "error" }, queues.error));
    return;
  }
  view.append(
    h("table", { class: "supervisors", "aria-label": "Supervisors" },
      h("thead", {}, h("tr", {}, ...["Name", "State", "Queues", "On call"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...queues.supervisors.map((s) =>
        h("tr", {},
          h("td", {}, s.name),
          h("td", {}, h("span", { class: `badge presence-${s.state}` }, s.state.replace("_", " "))),
          h("td", {}, s.queues.join(", ")),
          h("td", {}, s.call_id ? h("a", { href: `#/call/${s.call_id}` }, "open call") : "—"))))),
    h("h2", {}, "Queues"),
    h("ul", { class: "queues" }, ...queues.queues.map((q) =>
      h("li", {}, `${q.name}: ${q.waiting} waiting`, q.service_level == null ? "" : ` · service level ${Math.round(q.service_level * 100)} %`))),
  );
}

let queuesPending = null;
function refreshQueues() {
  if (queuesPending) return;
  queuesPending = setTimeout(async () => {
    queuesPending = null;
    try {
      state.queues = await api.call("GET", "/queues");
    } catch (error) {
      state.queues = { error: error.message };
    }
    if (location.hash === "#/queue") refresh();
  }, 200);
}

async function offer(ref, answer) {
  try {
    const result = await api.call("POST", `/escalations/${ref}/${answer}`);
    const here = answer === "accept" && state.me.phone === "browser";
    toast(answer === "accept" ? (here ? "Accepted: joining from this browser." : "Accepted: your phone rings into the call.") : "Declined.", "info");
    refreshQueues();
    if (answer === "accept") location.hash = `#/call/${result.call_id}`;
    if (here) await phone.join(result.call_id, { ringing: true });
  } catch (error) {
    toast(error.message);
  }
}

// An action on a call from the call view; the result shows when its events arrive.
async function act(callId, path, body, done) {
  try {
    await api.call("POST", `/calls/${callId}/${path}`, body);
    if (done) toast(done, "info");
  } catch (error) {
    toast(error.message);
  }
}

// The queue view's supervisors (their presence) come from the escalation service's snapshot,
// not from call events: while it is open, it is asked again every 5 s.
setInterval(() => {
  if (location.hash === "#/queue" && state.me) refreshQueues();
}, 5000);

// Durations and waits tick every second without redrawing anything else.
setInterval(() => {
  for (const cell of document.querySelectorAll("[data-since]")) {
    const since = Number(cell.dataset.since);
    cell.textContent = cell.classList.contains("wait") ? ago(since) : duration(since);
  }
}, 1000);

start();
