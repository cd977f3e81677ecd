// The browser audio leg's sound, on the audio thread (AudioWorklet): the microphone down to
// 16 kHz PCM in 20 ms frames, and the call's 16 kHz PCM up to the speaker's rate behind a
// small jitter buffer. `sampleRate` is the AudioContext's (usually 48 kHz).

const RATE = 16000;
const FRAME = 320; // samples in 20 ms at 16 kHz
const TAPS = 31;

// A windowed-sinc low-pass below `cutoff` Hz at `rate`, normalised to unity gain.
function lowPass(cutoff, rate) {
  const taps = new Float32Array(TAPS);
  const fc = cutoff / rate;
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const n = i - mid;
    const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n);
    const window = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (TAPS - 1)); // Hamming
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum;
  return taps;
}

// Microphone -> 20 ms frames of 16 kHz 16-bit PCM (posted as transferable ArrayBuffers), and
// the input level (RMS, 0..1) about ten times a second.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE; // input samples per output sample
    this.taps = lowPass(7000, sampleRate);
    this.history = new Float32Array(TAPS);
    this.at = 0; // where the history's next sample goes
    this.phase = 0; // input samples until the next output sample
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.energy = 0;
    this.counted = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const x = channel[i];
      this.history[this.at] = x;
      this.at = (this.at + 1) % TAPS;
      this.energy += x * x;
      this.counted += 1;
      this.phase -= 1;
      if (this.phase > 0) continue;
      this.phase += this.step;
      let y = 0;
      for (let k = 0; k < TAPS; k++) y += this.taps[k] * this.history[(this.at + k) % TAPS];
      this.frame[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(y * 32767)));
      if (this.filled === FRAME) {
        const out = this.frame.buffer;
        this.port.postMessage({ frame: out }, [out]);
        this.frame = new Int16Array(FRAME);
        this.filled = 0;
      }
    }
    if (this.counted >= sampleRate / 10) {
      this.port.postMessage({ level: Math.sqrt(this.energy / this.counted) });
      this.energy = 0;
      this.counted = 0;
    }
    return true;
  }
}

// The call's 16 kHz PCM (Int16Array frames posted in) -> the speaker, through a jitter buffer:
// it starts playing once START samples are queued, plays silence (and fills again) when it
// runs dry, and drops the oldest audio beyond MOST so the delay never grows.
const START = 960; // 60 ms
const MOST = 4800; // 300 ms
const KEEP = 1600; // 100 ms, kept when it had grown too long

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = RATE / sampleRate; // 16 kHz samples per output sample
    this.ring = new Float32Array(RATE * 2);
    this.read = 0; // fractional position of the next sample (in the ring)
    this.write = 0;
    this.queued = 0;
    this.playing = false;
    this.underruns = 0;
    this.dropped = 0;
    this.port.onmessage = (event) => this.take(new Int16Array(event.data));
    this.reported = 0;
  }

  take(pcm) {
    const ring = this.ring;
    for (let i = 0; i < pcm.length; i++) {
      ring[this.write] = pcm[i] / 32768;
      this.write = (this.write + 1) % ring.length;
    }
    this.queued += pcm.length;
    if (this.queued > MOST) {
      const drop = this.queued - KEEP;
      this.read = (this.read + drop) % ring.length;
      this.queued -= drop;
      this.dropped += drop;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const ring = this.ring;
    if (!this.playing && this.queued >= START) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing || this.queued < 2) {
        if (this.playing) {
          this.playing = false;
          this.underruns += 1;
        }
        out[i] = 0;
        continue;
      }
      const whole = Math.floor(this.read);
      const frac = this.read - whole;
      const a = ring[whole % ring.length];
      const b = ring[(whole + 1) % ring.length];
      out[i] = a + (b - a) * frac;
      this.read += this.step;
      const used = Math.floor(this.read) - whole;
      this.queued -= used;
      if (this.read >= ring.length) this.read -= ring.length;
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.reported += out.length;
    if (this.reported >= sampleRate) {
      this.reported = 0;
      this.port.postMessage({ buffered_ms: (this.queued / RATE) * 1000, underruns: this.underruns, dropped_ms: (this.dropped / RATE) * 1000 });
    }
    return true;
  }
}

registerProcessor("parley-capture", Capture);
registerProcessor("parley-playback", Playback);
