// Small DOM helpers. Strings become text nodes, never markup: call data is attacker-controlled.

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  const hours = Math.floor(m / 60);
  const mm = String(m % 60).padStart(hours ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function duration(since) {
  return clock(Date.now() / 1000 - since);
}

export function ago(since) {
  return `waiting ${clock(Date.now() / 1000 - since)}`;
}

export function timeOfDay(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

const STATES = {
  ai: "AI agent",
  queued: "Queued",
  ringing: "Ringing supervisor",
  on_hold: "On hold",
  fallback: "Fallback",
  answering: "Answering",
  ended: "Ended",
};

export function stateLabel(card) {
  if (card.state === "supervisor") {
    const who = card.supervisor || "supervisor";
    return `${who} · ${card.mode || "joined"}`;
  }
  return STATES[card.state] || card.state;
}

export function reasonText(reason) {
  return (reason || "unknown").replaceAll("_", " ");
}

export function moodMeter(level) {
  const value = Math.max(0, Math.min(1, level || 0));
  const word = value >= 1 ? "high" : value >= 0.5 ? "rising" : "calm";
  return h("span", { class: `mood ${word}`, title: `frustration at ${Math.round(value * 100)} % of the escalation threshold` },
    h("meter", { min: "0", max: "1", low: "0.5", high: "0.99", optimum: "0", value: String(value), "aria-label": `frustration ${word}` }),
    h("span", {}, word));
}

let toastTimer = null;
export function toast(text, level = "error") {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.dataset.level = level;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, level === "error" ? 8000 : 4000);
}
