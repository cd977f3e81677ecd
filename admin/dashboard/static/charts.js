// Charts from GET /metrics/summary, drawn as SVG: calls per hour, containment, escalations by
// reason, voice-to-voice p50/p95, and service level and abandonment per queue. Each chart
// carries a text alternative (role="img" with a label that states its figures).

import * as api from "./api.js";
import { h, clear, reasonText } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 560;
const H = 220;
const PAD = { left: 48, right: 12, top: 14, bottom: 34 };
const COLORS = ["#0b5cad", "#c2410c", "#1d6b3a", "#7c3aed", "#a4161a", "#0e7490"];

function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const RANGES = { "24h": { hours: 24, bucket: "hour" }, "7d": { hours: 24 * 7, bucket: "day" }, "30d": { hours: 24 * 30, bucket: "day" } };

export async function renderCharts(view, state) {
  clear(view);
  const range = state.chartRange || "24h";
  const picker = h("div", { class: "range", role: "group", "aria-label": "Range" },
    ...Object.keys(RANGES).map((key) => h("button", {
      type: "button", class: "quiet", "aria-pressed": String(key === range),
      onclick: () => { state.chartRange = key; renderCharts(view, state); },
    }, key === "24h" ? "Last 24 hours" : key === "7d" ? "Last 7 days" : "Last 30 days")));
  const grid = h("div", { class: "charts" }, h("p", { class: "muted" }, "Loading…"));
  view.append(h("h1", {}, "Charts"), picker, grid);
  const { hours, bucket } = RANGES[range];
  const end = new Date(Math.ceil(Date.now() / 3600e3) * 3600e3);
  const start = new Date(end.getTime() - hours * 3600e3);
  let summary;
  try {
    summary = await api.call("GET", `/metrics/summary?${new URLSearchParams({ from: start.toISOString(), to: end.toISOString(), bucket })}`);
  } catch (error) {
    grid.replaceChildren(h("p", { class: "error" }, error.message));
    return;
  }
  const labels = summary.buckets.map((b) => bucketLabel(b.start, bucket));
  const total = summary.total;
  const reasons = Object.entries(total.escalation_rate_by_reason).map(([reason, rate]) => ({ label: reasonText(reason), value: Math.round(rate * total.calls) }));
  grid.replaceChildren(
    figure("calls", `Calls per ${bucket}`, `${total.calls} calls in all`,
      bars(labels, summary.buckets.map((b) => b.calls), (v) => String(v))),
    figure("containment", "Containment", total.containment_rate == null ? "no finished calls" : `${pct(total.containment_rate)} of finished calls stayed with the AI`,
      lines(labels, [{ name: "containment", values: summary.buckets.map((b) => b.containment_rate) }], pct, 1)),
    figure("reasons", "Escalations by reason", reasons.length ? reasons.map((r) => `${r.label}: ${r.value}`).join(", ") : "no escalations",
      hbars(reasons, (v) => String(v))),
    figure("latency", "Voice-to-voice p50 / p95", total.voice_to_voice_p50_ms == null ? "no turns measured" : `p50 ${total.voice_to_voice_p50_ms} ms, p95 ${total.voice_to_voice_p95_ms} ms`,
      lines(labels, [
        { name: "p50", values: summary.buckets.map((b) => b.voice_to_voice_p50_ms) },
        { name: "p95", values: summary.buckets.map((b) => b.voice_to_voice_p95_ms) },
      ], (v) => `${Math.round(v)} ms`)),
    figure("models", "Voice-to-voice p50 per model",
      summary.models.length ? summary.models.map((m) => `${m.model}: ${m.turns} turns, p50 ${m.voice_to_voice_p50_ms ?? "n/a"} ms, p95 ${m.voice_to_voice_p95_ms ?? "n/a"} ms`).join("; ") : "no turns measured",
      hbars(summary.models.filter((m) => m.voice_to_voice_p50_ms != null).map((m) => ({ label: m.model, value: m.voice_to_voice_p50_ms })), (v) => `${Math.round(v)} ms`)),
    figure("queues", "Service level and abandonment per queue",
      summary.queues.length ? summary.queues.map((q) => `${q.name}: service level ${q.service_level == null ? "n/a" : pct(q.service_level)} within ${q.service_level_target_s} s, abandoned ${q.abandonment_rate == null ? "n/a" : pct(q.abandonment_rate)}`).join("; ") : "no escalations",
      grouped(summary.queues)),
  );
}

function figure(id, title, description, chart) {
  chart.setAttribute("role", "img");
  chart.setAttribute("aria-label", `${title}: ${description}`);
  return h("figure", { class: "chart", id: `chart-${id}` }, h("figcaption", {}, h("strong", {}, title), h("span", { class: "muted" }, ` — ${description}`)), chart);
}

function frame(maxValue, format, ticks = 4) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot" });
  const inner = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= ticks; i += 1) {
    const value = (maxValue * i) / ticks;
    const y = PAD.top + inner - (inner * i) / ticks;
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }),
      s("text", { x: PAD.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, format(value)));
  }
  return svg;
}

function xLabels(svg, labels, xOf) {
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % every === 0) svg.append(s("text", { x: xOf(i), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, label));
  });
}

function niceMax(values, floor = 1) {
  const max = Math.max(floor, ...values.filter((v) => v != null));
  const step = 10 ** Math.floor(Math.log10(max));
  return Math.ceil(max / step) * step;
}

function bars(labels, values, format) {
  const max = niceMax(values);
  const svg = frame(max, format);
  const inner = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / Math.max(1, values.length);
  values.forEach((value, i) => {
    const height = (inner * value) / max;
    svg.append(s("rect", { x: PAD.left + i * slot + slot * 0.15, y: PAD.top + inner - height, width: slot * 0.7, height, fill: COLORS[0] },
      s("title", {}, `${labels[i]}: ${format(value)}`)));
  });
  xLabels(svg, labels, (i) => PAD.left + (i + 0.5) * slot);
  return svg;
}

function lines(labels, series, format, fixedMax) {
  const max = fixedMax || niceMax(series.flatMap((x) => x.values));
  const svg = frame(max, format);
  const inner = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / Math.max(1, labels.length);
  const x = (i) => PAD.left + (i + 0.5) * slot;
  const y = (v) => PAD.top + inner - (inner * v) / max;
  series.forEach((line, n) => {
    const color = COLORS[n % COLORS.length];
    let path = "";
    line.values.forEach((value, i) => {
      if (value == null) return;
      path += `${path && line.values[i - 1] != null ? "L" : "M"}${x(i).toFixed(1)},${y(value).toFixed(1)}`;
      svg.append(s("circle", { cx: x(i), cy: y(value), r: 3, fill: color }, s("title", {}, `${labels[i]} ${line.name}: ${format(value)}`)));
    });
    if (path) svg.append(s("path", { d: path, fill: "none", stroke: color, "stroke-width": 2 }));
    svg.append(s("text", { x: W - PAD.right - 4, y: PAD.top + 12 + 14 * n, class: "legend", fill: color, "text-anchor": "end" }, line.name));
  });
  xLabels(svg, labels, x);
  return svg;
}

function hbars(items, format) {
  const height = Math.max(60, 28 * items.length + 20);
  const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, class: "plot" });
  if (!items.length) {
    svg.append(s("text", { x: W / 2, y: height / 2, class: "tick", "text-anchor": "middle" }, "nothing to show"));
    return svg;
  }
  const max = niceMax(items.map((i) => i.value));
  const left = 150;
  items.forEach((item, i) => {
    const width = ((W - left - 60) * item.value) / max;
    const y = 10 + i * 28;
    svg.append(
      s("text", { x: left - 8, y: y + 15, class: "tick", "text-anchor": "end" }, item.label),
      s("rect", { x: left, y, width, height: 20, fill: COLORS[(i + 1) % COLORS.length] }),
      s("text", { x: left + width + 6, y: y + 15, class: "tick" }, format(item.value)));
  });
  return svg;
}

function grouped(queues) {
  const items = [];
  for (const q of queues) {
    items.push({ label: `${q.name} · service level`, value: q.service_level == null ? 0 : q.service_level * 100 });
    items.push({ label: `${q.name} · abandoned`, value: q.abandonment_rate == null ? 0 : q.abandonment_rate * 100 });
  }
  return hbars(items, (v) => `${Math.round(v)} %`);
}

function pct(value) {
  return `${Math.round(value * 100)} %`;
}

function bucketLabel(iso, bucket) {
  const at = new Date(iso);
  return bucket === "hour"
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleDateString([], { month: "short", day: "numeric" });
}
