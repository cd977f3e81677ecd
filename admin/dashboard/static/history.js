// History and audit: search past calls, open one with its transcript, metrics, escalation
// timeline and audit trail. Everything comes from the admin API's stored records.

import * as api from "./api.js";
import { h, clear, toast, reasonText } from "./ui.js";

const OUTCOMES = ["", "contained", "escalated", "abandoned", "failed", "transferred"];

export function renderHistory(view, state) {
  clear(view);
  const filters = state.historyFilters || (state.historyFilters = { from: "", to: "", outcome: "", escalated: "", caller: "" });
  const results = h("div", { class: "results", "aria-live": "polite" });
  const form = h("form", { class: "filters", "aria-label": "Search calls", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    for (const key of Object.keys(filters)) filters[key] = String(data.get(key) || "");
    search(results, filters, null);
  } },
    h("label", {}, "From ", h("input", { type: "date", name: "from", value: filters.from })),
    h("label", {}, "To ", h("input", { type: "date", name: "to", value: filters.to })),
    h("label", {}, "Outcome ", h("select", { name: "outcome" },
      ...OUTCOMES.map((o) => h("option", { value: o, selected: o === filters.outcome }, o || "any")))),
    h("label", {}, "Escalated ", h("select", { name: "escalated" },
      ...[["", "any"], ["true", "yes"], ["false", "no"]].map(([v, t]) => h("option", { value: v, selected: v === filters.escalated }, t)))),
    h("label", {}, "Caller number ", h("input", { type: "tel", name: "caller", value: filters.caller, maxlength: "64", placeholder: "+1 555 123 4567" })),
    h("button", { type: "submit" }, "Search"));
  view.append(h("h1", {}, "Call history"), form, results);
  search(results, filters, null);
}

async function search(results, filters, cursor) {
  const query = new URLSearchParams({ limit: "50" });
  if (filters.from) query.set("from", new Date(`${filters.from}T00:00:00`).toISOString());
  if (filters.to) query.set("to", new Date(`${filters.to}T23:59:59`).toISOString());
  for (const key of ["outcome", "escalated", "caller"]) if (filters[key]) query.set(key, filters[key]);
  if (cursor) query.set("cursor", cursor);
  let page;
  try {
    page = await api.call("GET", `/calls?${query}`);
  } catch (error) {
    results.replaceChildren(h("p", { class: "error" }, error.message));
    return;
  }
  let body = results.querySelector("tbody");
  if (!cursor || !body) {
    body = h("tbody", {});
    results.replaceChildren(
      h("table", { class: "history", "aria-label": "Calls" },
        h("thead", {}, h("tr", {}, ...["Started", "Line", "Caller", "Duration", "Outcome", "Escalated"].map((t) => h("th", { scope: "col" }, t)))),
        body));
  }
  for (const call of page.items) {
    body.append(h("tr", { "data-call": call.id },
      h("td", {}, h("a", { href: `#/history/${call.id}` }, new Date(call.started_at).toLocaleString())),
      h("td", {}, call.line || "—"),
      h("td", { class: "mono" }, call.caller || "unknown"),
      h("td", { class: "num" }, call.duration_ms == null ? (call.ended_at ? "—" : "live") : seconds(call.duration_ms)),
      h("td", {}, call.outcome ? h("span", { class: `badge outcome-${call.outcome}` }, call.outcome) : "—"),
      h("td", {}, call.escalated ? "yes" : "no")));
  }
  results.querySelector(".more")?.remove();
  if (!body.children.length) results.replaceChildren(h("p", { class: "empty" }, "No calls match."));
  if (page.next_cursor) {
    results.append(h("button", { type: "button", class: "more quiet", onclick: () => search(results, filters, page.next_cursor) }, "Load more"));
  }
}

export async function renderPastCall(view, state, id) {
  clear(view);
  view.append(h("p", { class: "back" }, h("a", { href: "#/history" }, "← Call history")), h("p", { class: "muted" }, "Loading…"));
  let call;
  try {
    call = await api.call("GET", `/calls/${id}`);
  } catch (error) {
    view.lastChild.replaceWith(h("p", { class: "error" }, error.message));
    return;
  }
  let audit = null;
  if (state.me.role !== "supervisor") {
    try {
      audit = await api.call("GET", `/audit?target=${encodeURIComponent(`call:${id}`)}&limit=200`);
    } catch (error) {
      toast(error.message);
    }
  }
  view.lastChild.remove();
  const metrics = call.metrics;
  view.append(
    h("h1", {}, `${call.line || "—"} · ${call.caller || "unknown caller"}`),
    h("p", { class: "muted" }, `${new Date(call.started_at).toLocaleString()} · ${call.outcome || "no outcome"}${call.end_reason ? ` (${call.end_reason.replaceAll("_", " ")})` : ""}`),
    h("div", { class: "call-grid" },
      h("section", { class: "transcript", "aria-label": "Transcript" }, h("h2", {}, "Transcript"),
        h("ol", {}, ...(call.transcript.length ? call.transcript.map(segment) : [h("li", { class: "muted" }, "No transcript stored.")]))),
      h("div", { class: "side" },
        h("section", { class: "status", "aria-label": "Metrics" }, h("h2", {}, "Metrics"),
          metrics ? h("dl", {},
            h("dt", {}, "Duration"), h("dd", {}, seconds(metrics.duration_ms)),
            h("dt", {}, "Turns"), h("dd", {}, String(metrics.turns)),
            h("dt", {}, "Barge-ins"), h("dd", {}, String(metrics.barge_ins)),
            h("dt", {}, "Voice-to-voice p50"), h("dd", {}, ms(metrics.voice_to_voice_p50_ms)),
            h("dt", {}, "Voice-to-voice p95"), h("dd", {}, ms(metrics.voice_to_voice_p95_ms)))
            : h("p", { class: "muted" }, "Not computed yet (the rollup runs after the call).")),
        h("section", { class: "timeline", "aria-label": "Escalations" }, h("h2", {}, "Escalations"),
          call.escalations.length ? h("ol", {}, ...call.escalations.flatMap((esc) => [
            h("li", { class: "item" }, h("strong", {}, `${reasonText(esc.reason)} · queue ${esc.queue || "—"}`), esc.summary ? h("p", { class: "summary" }, esc.summary) : null),
            ...esc.transitions.map((t) => h("li", { class: "item" }, h("time", {}, time(t.at)), ` ${t.event.replaceAll("_", " ")} → ${t.to_state.replaceAll("_", " ")} (${t.actor})`)),
          ])) : h("p", { class: "muted" }, "None.")),
        h("section", { class: "timeline", "aria-label": "Events" }, h("h2", {}, "Events"),
          h("ol", {}, ...call.events.map((e) => h("li", { class: "item" }, h("time", {}, time(e.occurred_at)), ` ${eventText(e)}`)))),
        audit ? h("section", { class: "timeline audit", "aria-label": "Audit trail" }, h("h2", {}, "Audit trail"),
          audit.items.length ? h("ol", {}, ...audit.items.slice().reverse().map((a) => h("li", { class: "item" }, h("time", {}, time(a.at)), ` ${a.action} by ${a.actor}${a.details.outcome ? ` — ${a.details.outcome}` : ""}`)))
            : h("p", { class: "muted" }, "Nobody has acted on this call.")) : null)),
  );
}

function segment(s) {
  const cut = s.interrupted;
  return h("li", { class: `line ${s.speaker}${cut ? " cut" : ""}` },
    h("span", { class: "speaker" }, s.speaker === "caller" ? "Caller" : s.speaker === "agent" ? "Agent" : s.speaker),
    h("time", {}, seconds(s.start_ms)),
    cut && s.heard_text
      ? h("p", {}, h("span", { class: "heard" }, s.heard_text), " ", h("s", { class: "unheard" }, s.text.slice(s.heard_text.length).trim() || "…"))
      : h("p", {}, s.text),
    cut ? h("span", { class: "cut-mark" }, s.heard_ms != null ? `cut after ${(s.heard_ms / 1000).toFixed(1)} s` : "cut short") : null);
}

function eventText(event) {
  const data = event.data || {};
  const detail = data.event || data.phase || data.reason || data.command || "";
  return `${event.kind}${detail ? `: ${String(detail).replaceAll("_", " ")}` : ""}`;
}

function seconds(value) {
  return `${(value / 1000).toFixed(1)} s`;
}

function ms(value) {
  return value == null ? "—" : `${value} ms`;
}

function time(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
