// The browser as a supervisor's phone: the microphone and the speaker join a call over the
// WebSocket /calls/{id}/audio (16 kHz 16-bit PCM), with the sound work on the audio thread
// (pcm-worklet.js). One leg at a time per tab.

import * as api from "./api.js";

// What the leg is doing, for the page and the tests: state idle | joining | on | ended;
// heard: the last seconds the supervisor heard (16 kHz samples, a ring), for the test hook.
const HEARD_SECONDS = 30;
export const leg = {
  state: "idle",
  callId: null,
  micRefused: null, // why the microphone is not in use, when it is not
  soundBlocked: null, // why nothing is heard: the browser has not started its audio
  level: 0,
  framesIn: 0,
  framesOut: 0,
  buffer: null, // the speaker's jitter buffer: buffered_ms, underruns, dropped_ms
  buffered: [], // its buffered_ms, once a second (the last ten minutes)
  soundCard: null, // the AudioContext's rate and latencies (ms), as the browser reports them
  heard: new Int16Array(16000 * HEARD_SECONDS),
  heardAt: 0, // samples written into `heard` in all
};

let current = null; // {callId, socket, context, stream, nodes}
const listeners = new Set();

export function onChange(listener) {
  listeners.add(listener);
}

function changed() {
  for (const listener of listeners) listener(leg);
}

// Joins `callId` with this browser: rings a browser leg for this user (unless one already
// rings: an offer the escalation service made), then connects the microphone and speaker.
export async function join(callId, { ringing = false } = {}) {
  if (current) await hangUp();
  Object.assign(leg, { state: "joining", callId, micRefused: null, soundBlocked: null, level: 0, framesIn: 0, framesOut: 0, buffer: null, buffered: [] });
  changed();
  const here = { callId, socket: null, context: null, stream: null, nodes: [] };
  current = here;
  try {
    here.context = new AudioContext({ latencyHint: "interactive" });
    await here.context.audioWorklet.addModule("/static/pcm-worklet.js");
    here.stream = await microphone();
    if (!ringing) await api.call("POST", `/calls/${callId}/supervise`, { phone: "browser" });
    here.socket = await open(callId);
  } catch (error) {
    close(here);
    Object.assign(leg, { state: "idle" });
    changed();
    throw error;
  }
  if (current !== here) return;
  wire(here);
  // A browser with no sound device (or one that blocks audio until a click) keeps the context
  // suspended: the leg is on, and the page says why nothing is heard.
  const started = await Promise.race([
    here.context.resume().then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), 3000)),
  ]);
  leg.soundBlocked = started ? null : "This browser has not started its sound: check the speaker or headset, or click anywhere on the page.";
  if (!started) document.addEventListener("click", () => here.context.resume().catch(() => {}), { once: true });
  here.context.onstatechange = () => {
    if (here.context.state === "running" && leg.soundBlocked) {
      leg.soundBlocked = null;
      changed();
    }
  };
  leg.state = "on";
  changed();
}

// Leaves the call (the supervisor's leg ends; the call goes on).
export async function hangUp() {
  const here = current;
  if (!here) return;
  if (here.socket && here.socket.readyState === WebSocket.OPEN) here.socket.send(JSON.stringify({ type: "bye" }));
  close(here);
}

async function microphone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    leg.micRefused = "This page cannot use a microphone (it needs https, or http on localhost): you can listen, not speak.";
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
  } catch (error) {
    leg.micRefused = error && error.name === "NotFoundError"
      ? "No microphone was found: you can listen, not speak. Plug one in and join again."
      : "The microphone was refused: you can listen, not speak. Allow it for this site (the icon in the address bar) and join again.";
    return null;
  }
}

function open(callId) {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/calls/${callId}/audio`);
    socket.binaryType = "arraybuffer";
    let joined = false;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "hello", token: api.token() })));
    socket.addEventListener("message", (event) => {
      if (joined || typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      if (message.type === "joined") {
        joined = true;
        resolve(socket);
      } else if (message.type === "error") {
        reject(new api.ApiError(message.status || 0, message.message));
      }
    });
    socket.addEventListener("close", () => {
      if (!joined) reject(new api.ApiError(0, "the call's audio could not be joined"));
    });
  });
}

function wire(here) {
  const { context, socket, stream } = here;
  const playback = new AudioWorkletNode(context, "parley-playback", { numberOfInputs: 0, outputChannelCount: [1] });
  playback.connect(context.destination);
  playback.port.onmessage = (event) => {
    leg.buffer = event.data;
    leg.buffered.push(event.data.buffered_ms);
    if (leg.buffered.length > 600) leg.buffered.shift();
  };
  leg.soundCard = {
    rate: context.sampleRate,
    base_ms: (context.baseLatency || 0) * 1000,
    output_ms: (context.outputLatency || 0) * 1000,
  };
  here.nodes.push(playback);
  if (stream) {
    const source = context.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(context, "parley-capture", { numberOfOutputs: 1 });
    const mute = context.createGain();
    mute.gain.value = 0; // pulled by the graph, never heard
    source.connect(capture).connect(mute).connect(context.destination);
    capture.port.onmessage = (event) => {
      const { frame, level } = event.data;
      if (frame && socket.readyState === WebSocket.OPEN) {
        socket.send(frame);
        leg.framesOut += 1;
      }
      if (level !== undefined) {
        leg.level = level;
        changed();
      }
    };
    here.nodes.push(source, capture, mute);
  }
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "error") leg.error = message.message;
      return;
    }
    keep(new Int16Array(event.data));
    leg.framesIn += 1;
    playback.port.postMessage(event.data, [event.data]);
  });
  socket.addEventListener("close", () => {
    if (current === here) close(here);
  });
}

function keep(pcm) {
  const ring = leg.heard;
  let at = leg.heardAt % ring.length;
  for (let i = 0; i < pcm.length; i++) {
    ring[at] = pcm[i];
    at = (at + 1) % ring.length;
  }
  leg.heardAt += pcm.length;
}

function close(here) {
  if (here.socket) here.socket.close(1000);
  if (here.stream) for (const track of here.stream.getTracks()) track.stop();
  for (const node of here.nodes) node.disconnect();
  if (here.context) here.context.close().catch(() => {});
  if (current === here) {
    current = null;
    leg.state = "ended";
    leg.level = 0;
    changed();
  }
}

// The last `seconds` the supervisor heard, oldest first (for the tests' hook).
export function heard(seconds) {
  const ring = leg.heard;
  const count = Math.min(leg.heardAt, ring.length, Math.round(seconds * 16000));
  const out = new Array(count);
  const start = leg.heardAt - count;
  for (let i = 0; i < count; i++) out[i] = ring[(start + i) % ring.length];
  return out;
}
