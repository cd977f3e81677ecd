// The call view: the live transcript of both sides, the call's status and timeline, and the
// controls a supervisor works it with. Built once per call, then updated in place, so what a
// supervisor is typing (a whisper, a note) survives every update.

import { h, clear, duration, timeOfDay, stateLabel, moodMeter, reasonText, toast } from "./ui.js";
import * as phone from "./browserphone.js";

const BROWSER = "browser"; // the phone that is this tab: its microphone and speaker

export function renderCall(view, state, id, act) {
  if (view.dataset.call !== id) build(view, state, id, act);
  const open = state.open;
  const card = (open && open.call) || state.calls.get(id);
  if (open && open.missing && !card) {
    view.querySelector(".status").replaceChildren(
      h("p", { class: "empty" }, "This call is not live on the board: it ended before this page opened it, or it was never here."));
    return;
  }
  if (!card) return;
  fillStatus(view.querySelector(".status"), card);
  fillControls(view, state, card);
  fillBrowserLeg(view, card, state.me);
  if (open && open.transcript) {
    fillTranscript(view.querySelector(".transcript ol"), open.transcript);
    fillTimeline(view.querySelector(".timeline ol"), open.timeline);
  }
}

function build(view, state, id, act) {
  clear(view);
  view.dataset.call = id;
  const whisperText = h("input", { type: "text", id: "whisper-text", maxlength: "2000", placeholder: "Say to the agent, e.g. offer a refund" });
  const noteText = h("input", { type: "text", id: "handback-note", maxlength: "2000", placeholder: "What was agreed (optional)" });
  const phoneChoice = h("select", { id: "join-phone", "aria-label": "Phone to join with" });
  const controls = h("section", { class: "controls", "aria-label": "Call controls" },
    h("h2", {}, "Controls"),
    h("p", { class: "current-mode", role: "status", "aria-live": "polite" }),
    h("div", { class: "join" },
      h("label", {}, "Join with ", phoneChoice),
      h("button", { type: "button", "data-action": "listen", onclick: () => {
        if (phoneChoice.value === BROWSER) joinHere(id);
        else if (phoneChoice.value) act(id, "supervise", { phone: phoneChoice.value }, "Your phone rings into the call: answer it to listen.");
      } }, "Join")),
    h("div", { class: "browser-leg", hidden: true },
      h("p", { class: "leg-state", role: "status", "aria-live": "polite" }),
      h("label", { class: "level" }, "Microphone ", h("meter", { id: "mic-level", min: "0", max: "1", low: "0.05", high: "0.5", value: "0" })),
      h("p", { class: "mic-refused error", role: "alert" }),
      h("button", { type: "button", "data-action": "answer-here", hidden: true, onclick: () => joinHere(id, { ringing: true }) }, "Answer in this browser")),
    h("div", { class: "modes", role: "group", "aria-label": "Supervisor mode" },
      ...[["monitor", "Listen only"], ["whisper", "Whisper"], ["barge", "Barge in"], ["takeover", "Take over"]].map(([mode, label]) =>
        h("button", { type: "button", "data-mode": mode, "aria-pressed": "false", onclick: () => act(id, "mode", { mode }) }, label))),
    h("form", { class: "whisper", onsubmit: (event) => {
      event.preventDefault();
      const text = whisperText.value.trim();
      if (!text) return;
      act(id, "whisper", { text }, "Whispered to the agent.");
      whisperText.value = "";
    } }, h("label", { for: "whisper-text" }, "Whisper to the agent"), whisperText, h("button", { type: "submit", "data-action": "whisper" }, "Send")),
    h("form", { class: "handback", onsubmit: (event) => {
      event.preventDefault();
      const note = noteText.value.trim();
      act(id, "hand-back", note ? { note } : {}, "Handed back to the AI agent.");
      noteText.value = "";
    } }, h("label", { for: "handback-note" }, "Hand back to the AI"), noteText, h("button", { type: "submit", "data-action": "hand-back" }, "Hand back")),
    h("div", { class: "other" },
      h("button", { type: "button", "data-action": "hold", onclick: () => act(id, "hold", undefined, "On hold.") }, "Hold"),
      h("button", { type: "button", "data-action": "unhold", onclick: () => act(id, "unhold", undefined, "Back with the agent.") }, "Resume"),
      h("button", { type: "button", "data-action": "dismiss", onclick: () => act(id, "dismiss", undefined, "Supervisor leg ended.") }, "Leave call"),
      h("button", { type: "button", class: "danger", "data-action": "hangup", onclick: () => {
        if (window.confirm("Hang up on the caller?")) act(id, "hangup", undefined, "Hung up.");
      } }, "Hang up")),
    h("p", { class: "not-yours muted" }),
  );
  view.append(
    h("p", { class: "back" }, h("a", { href: "#/board" }, "← Live calls")),
    h("h1", { class: "call-title" }),
    h("div", { class: "call-grid" },
      h("section", { class: "transcript", "aria-label": "Transcript" }, h("h2", {}, "Transcript"),
        h("ol", { "aria-live": "polite", "aria-relevant": "additions" })),
      h("div", { class: "side" },
        h("section", { class: "status", "aria-label": "Status" }),
        controls,
        h("section", { class: "timeline", "aria-label": "Timeline" }, h("h2", {}, "Timeline"), h("ol", {})))),
  );
  const me = state.me;
  const phones = [...new Set(me.phone ? [me.phone, BROWSER] : [BROWSER, ...(me.phones || [])])];
  phoneChoice.replaceChildren(...phones.map((p) => h("option", { value: p }, p === BROWSER ? "this browser (microphone)" : `phone ${p}`)));
}

async function joinHere(id, options) {
  try {
    await phone.join(id, options);
    toast(phone.leg.micRefused || "Joined from this browser: you hear the call.", phone.leg.micRefused ? "error" : "info");
  } catch (error) {
    toast(`Could not join from this browser: ${error.message}`);
  }
}

// The browser leg's panel: what it is doing, the microphone's level, why it is silent.
export function fillBrowserLeg(view, card, me) {
  const panel = view.querySelector(".browser-leg");
  if (!panel || view.dataset.call !== card.call_id) return;
  const leg = phone.leg;
  const here = leg.callId === card.call_id && (leg.state === "on" || leg.state === "joining");
  const ringingHere = card.browser === me.user && !card.browser_joined && card.state !== "ended";
  panel.hidden = !here && !ringingHere;
  panel.querySelector("[data-action=answer-here]").hidden = here || !ringingHere;
  panel.querySelector(".leg-state").textContent = here
    ? leg.state === "joining" ? "Joining from this browser…" : "This browser is on the call."
    : ringingHere ? "The call is ringing this browser." : "";
  panel.querySelector("#mic-level").value = here ? Math.min(1, leg.level * 4) : 0;
  panel.querySelector(".mic-refused").textContent = here ? [leg.micRefused, leg.soundBlocked].filter(Boolean).join(" ") : "";
}

function fillStatus(box, card) {
  const title = box.closest("#view").querySelector(".call-title");
  title.textContent = `${card.line || "—"} · ${card.caller}`;
  const esc = card.escalation;
  box.replaceChildren(...[
    h("h2", {}, "Status"),
    h("dl", {},
      h("dt", {}, "State"), h("dd", {}, h("span", { class: `badge ${card.state}`, id: "call-state" }, stateLabel(card))),
      h("dt", {}, "Duration"), h("dd", { class: "mono", "data-since": String(card.answered_at || card.started_at) }, duration(card.answered_at || card.started_at)),
      h("dt", {}, "Voice-to-voice"), h("dd", {}, card.latency_ms == null ? "—" : `${(card.latency_ms / 1000).toFixed(2)} s (last turn)`),
      h("dt", {}, "Frustration"), h("dd", {}, moodMeter(card.frustration)),
      h("dt", {}, "Disclosure"), h("dd", {}, card.disclosure || "none played"),
      h("dt", {}, "Consent"), h("dd", {}, card.consent ? card.consent.replaceAll("_", " ") : "—"),
      esc ? [h("dt", {}, "Escalation"), h("dd", {}, `${reasonText(esc.reason)} · ${esc.state.replaceAll("_", " ")}${esc.queue ? ` · queue ${esc.queue}` : ""}`)] : null,
    ),
    esc && esc.summary ? h("details", { class: "summary", open: true }, h("summary", {}, "Briefing"), h("p", {}, esc.summary)) : null,
  ].filter(Boolean));
}

function fillControls(view, state, card) {
  const me = state.me;
  const controls = view.querySelector(".controls");
  const mine = me.may_command && (me.commands_all || me.queues.includes(card.queue));
  const live = card.state !== "ended";
  controls.hidden = !me.may_command;
  const notYours = controls.querySelector(".not-yours");
  notYours.textContent = !mine && me.may_command ? `This call is in queue ${card.queue || "default"}, not one of yours: you can watch it.` : "";
  const withHuman = card.supervisor_on;
  const mode = view.querySelector(".current-mode");
  mode.textContent = !live ? "The call has ended." : withHuman
    ? card.mode
      ? `Mode: ${card.mode} — ${card.supervisor || "a supervisor"} is on the call.`
      : `${card.supervisor || "A supervisor"} is on the call, heard by nobody: choose a mode.`
    : card.phase === "queued" ? "Mode: on hold, waiting for a person." : "Mode: the AI agent is handling the call.";
  const enable = (selector, on) => {
    for (const node of controls.querySelectorAll(selector)) node.disabled = !(mine && live && on);
  };
  enable(".join button, .join select", !withHuman && card.state !== "ringing");
  controls.querySelector(".join").hidden = withHuman;
  for (const button of controls.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(withHuman && card.mode === button.dataset.mode));
  }
  enable("[data-mode]", withHuman);
  enable(".whisper input, .whisper button", card.phase === "with_human" && card.agent === "attached");
  enable(".handback input, .handback button", withHuman);
  enable("[data-action=hold]", card.phase === "with_agent");
  enable("[data-action=unhold]", card.phase === "queued");
  enable("[data-action=dismiss]", withHuman);
  enable("[data-action=hangup]", true);
}

function fillTranscript(list, transcript) {
  const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...transcript.map((line) =>
    h("li", { class: `line ${line.speaker}${line.cut ? " cut" : ""}`, "data-line": line.id },
      h("span", { class: "speaker" }, line.speaker === "caller" ? "Caller" : "Agent"),
      h("time", {}, timeOfDay(line.at)),
      line.cut && line.heard_text
        ? h("p", {}, h("span", { class: "heard" }, line.heard_text), " ", h("s", { class: "unheard", title: "not heard: the caller cut in" }, line.text.slice(line.heard_text.length).trim() || "…"))
        : h("p", {}, line.text),
      line.cut ? h("span", { class: "cut-mark" }, line.heard_ms != null ? `cut after ${(line.heard_ms / 1000).toFixed(1)} s` : "cut short") : null)));
  if (transcript.length === 0) list.append(h("li", { class: "muted" }, "Nothing said yet."));
  if (follow) list.scrollTop = list.scrollHeight;
}

function fillTimeline(list, timeline) {
  const follow = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...timeline.map((item) =>
    h("li", { class: `item ${item.kind}` }, h("time", {}, timeOfDay(item.at)), " ", item.text)));
  if (follow) list.scrollTop = list.scrollHeight;
}
