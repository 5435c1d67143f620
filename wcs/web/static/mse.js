// MSE playback of the WCS media socket's records (wcs-protocol.md §4).
//
// The server does not send fMP4: each binary message holds records
// `type u8 (9 video, 8 audio) | timestamp i32 ms | size u32 | payload`, the
// video payload being an FLV AVC tag body (sequence header with the avcC
// before every keyframe, then length-prefixed NAL units) and the audio one a
// 1-byte header (0: AudioSpecificConfig follows, else one raw AAC frame).
// FlvRemuxer turns them into init segments and moof+mdat fragments;
// MsePlayback feeds those to one SourceBuffer per kind of a MediaSource.
//
// One SourceBuffer per kind, because a video-only (or audio-only) stream must
// play without waiting for a track that never comes, and because a new avcC
// (a resolution change) is then just a new init segment on the video buffer.

export const RECORD_AUDIO = 8;
export const RECORD_VIDEO = 9;

const VIDEO_TRACK = 1;
const AUDIO_TRACK = 2;
const VIDEO_TIMESCALE = 90000; // ms timestamps * 90, the usual video clock
const FRAGMENT_MS = 100;       // a fragment per keyframe or per this much media (as the SDK)
const JUMP_MS = 5000;          // a timestamp jump beyond this is a discontinuity
const DEFAULT_FRAME_MS = 33;
// Before the first AudioSpecificConfig the SDK assumes AAC-LC 48 kHz stereo: so do we.
const DEFAULT_ASC = Uint8Array.of(0x11, 0x90);

// ---- bytes and boxes ----------------------------------------------------------

function concat(parts) {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

const u8 = (...bytes) => Uint8Array.from(bytes);
const u16 = (n) => u8((n >>> 8) & 255, n & 255);
const u32 = (n) => u8((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
const u64 = (n) => concat([u32(Math.floor(n / 2 ** 32)), u32(n % 2 ** 32)]);
const zeros = (n) => new Uint8Array(n);
const ascii = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0));

function box(type, ...parts) {
  const body = concat(parts);
  return concat([u32(body.length + 8), ascii(type), body]);
}

function fullBox(type, version, flags, ...parts) {
  return box(type, u8(version, (flags >>> 16) & 255, (flags >>> 8) & 255, flags & 255), ...parts);
}

const MATRIX = concat([u32(0x10000), u32(0), u32(0), u32(0), u32(0x10000), u32(0),
                       u32(0), u32(0), u32(0x40000000)]);

function equalBytes(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---- codec configuration ------------------------------------------------------

// Exp-Golomb reader over an RBSP (emulation prevention bytes already removed).
class Bits {
  constructor(bytes) { this.bytes = bytes; this.at = 0; }
  bit() {
    if (this.at >= this.bytes.length * 8) throw new Error("SPS ends early");
    const bit = (this.bytes[this.at >> 3] >> (7 - (this.at & 7))) & 1;
    this.at++;
    return bit;
  }
  bits(n) { let v = 0; for (let i = 0; i < n; i++) v = v * 2 + this.bit(); return v; }
  ue() {
    let zeros = 0;
    while (this.bit() === 0) if (++zeros > 31) throw new Error("bad Exp-Golomb code");
    return (2 ** zeros - 1) + this.bits(zeros);
  }
  se() { const v = this.ue(); return v & 1 ? (v + 1) / 2 : -v / 2; }
}

function unescapeRbsp(nal) {
  const out = [];
  for (let i = 0; i < nal.length; i++) {
    const n = out.length;
    if (nal[i] === 3 && n >= 2 && out[n - 1] === 0 && out[n - 2] === 0) continue; // 00 00 03
    out.push(nal[i]);
  }
  return Uint8Array.from(out);
}

// The picture size an SPS (a whole NAL unit, header byte first) describes,
// so that tkhd and avc1 say what the decoder will output.
export function spsPictureSize(sps) {
  const r = new Bits(unescapeRbsp(sps.subarray(1)));
  const profile = r.bits(8);
  r.bits(16); // constraint flags, level
  r.ue(); // seq_parameter_set_id
  let chroma = 1;
  if ([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].includes(profile)) {
    chroma = r.ue();
    if (chroma === 3) r.bit(); // separate_colour_plane_flag
    r.ue(); r.ue(); r.bit(); // bit depths, qpprime_y_zero_transform_bypass_flag
    if (r.bit()) { // seq_scaling_matrix_present_flag
      for (let i = 0; i < (chroma === 3 ? 12 : 8); i++) {
        if (!r.bit()) continue;
        let last = 8, next = 8;
        for (let j = 0; j < (i < 6 ? 16 : 64); j++) {
          if (next !== 0) next = (last + r.se() + 256) % 256;
          last = next === 0 ? last : next;
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) {
    r.ue();
  } else if (pocType === 1) {
    r.bit(); r.se(); r.se();
    for (let n = r.ue(), i = 0; i < n; i++) r.se();
  }
  r.ue(); r.bit(); // max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1;
  const heightUnits = r.ue() + 1;
  const frameMbsOnly = r.bit();
  if (!frameMbsOnly) r.bit(); // mb_adaptive_frame_field_flag
  r.bit(); // direct_8x8_inference_flag
  let left = 0, right = 0, top = 0, bottom = 0;
  if (r.bit()) { left = r.ue(); right = r.ue(); top = r.ue(); bottom = r.ue(); }
  const cropX = chroma === 1 || chroma === 2 ? 2 : 1;
  const cropY = (chroma === 1 ? 2 : 1) * (2 - frameMbsOnly);
  return {width: widthMbs * 16 - cropX * (left + right),
          height: (2 - frameMbsOnly) * heightUnits * 16 - cropY * (top + bottom)};
}

// What an AVCDecoderConfigurationRecord says: codec string and picture size.
export function parseAvcC(avcc) {
  if (avcc.length < 7 || avcc[0] !== 1) throw new Error("not an AVCDecoderConfigurationRecord");
  const hex = (n) => n.toString(16).padStart(2, "0");
  const codec = "avc1." + hex(avcc[1]) + hex(avcc[2]) + hex(avcc[3]);
  let size = {width: 0, height: 0};
  if ((avcc[5] & 0x1f) > 0) {
    const length = (avcc[6] << 8) | avcc[7];
    try { size = spsPictureSize(avcc.subarray(8, 8 + length)); } catch (error) { /* size 0 */ }
  }
  return {codec, ...size};
}

const AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                   11025, 8000, 7350];

// What an AudioSpecificConfig says: object type, sampling rate, channels.
export function parseAsc(asc) {
  const r = new Bits(asc);
  let objectType = r.bits(5);
  if (objectType === 31) objectType = 32 + r.bits(6);
  const index = r.bits(4);
  const rate = index === 15 ? r.bits(24) : AAC_RATES[index] || 48000;
  const channels = r.bits(4) || 2;
  return {objectType, rate, channels, codec: "mp4a.40." + objectType};
}

// ---- init segments and fragments ----------------------------------------------

function initSegment(trackId, timescale, sampleEntry, handler, width = 0, height = 0) {
  const ftyp = box("ftyp", ascii("isom"), u32(0x200), ascii("isomiso5iso6mp41"));
  const mvhd = fullBox("mvhd", 0, 0, u32(0), u32(0), u32(1000), u32(0), u32(0x10000),
                       u16(0x100), zeros(10), MATRIX, zeros(24), u32(trackId + 1));
  const tkhd = fullBox("tkhd", 0, 3, u32(0), u32(0), u32(trackId), u32(0), u32(0), zeros(8),
                       u16(0), u16(0), u16(handler === "soun" ? 0x100 : 0), u16(0), MATRIX,
                       u32(width * 0x10000), u32(height * 0x10000));
  const mdhd = fullBox("mdhd", 0, 0, u32(0), u32(0), u32(timescale), u32(0),
                       u16(0x55c4), u16(0)); // language "und"
  const hdlr = fullBox("hdlr", 0, 0, u32(0), ascii(handler), zeros(12),
                       ascii(handler === "vide" ? "VideoHandler\0" : "SoundHandler\0"));
  const header = handler === "vide" ? fullBox("vmhd", 0, 1, zeros(8))
                                    : fullBox("smhd", 0, 0, zeros(4));
  const dinf = box("dinf", fullBox("dref", 0, 0, u32(1), fullBox("url ", 0, 1)));
  const stbl = box("stbl", fullBox("stsd", 0, 0, u32(1), sampleEntry),
                   fullBox("stts", 0, 0, u32(0)), fullBox("stsc", 0, 0, u32(0)),
                   fullBox("stsz", 0, 0, u32(0), u32(0)), fullBox("stco", 0, 0, u32(0)));
  const trak = box("trak", tkhd, box("mdia", mdhd, hdlr, box("minf", header, dinf, stbl)));
  const mvex = box("mvex", fullBox("trex", 0, 0, u32(trackId), u32(1), u32(0), u32(0), u32(0)));
  return concat([ftyp, box("moov", mvhd, trak, mvex)]);
}

function videoInit(avcc, width, height) {
  const avc1 = box("avc1", zeros(6), u16(1), zeros(16), u16(width), u16(height),
                   u32(0x480000), u32(0x480000), u32(0), u16(1), zeros(32), u16(0x18),
                   u16(0xffff), box("avcC", avcc));
  return initSegment(VIDEO_TRACK, VIDEO_TIMESCALE, avc1, "vide", width, height);
}

function descriptor(tag, ...parts) {
  const body = concat(parts);
  return concat([u8(tag, body.length), body]); // every length here is under 128
}

function audioInit(asc, {rate, channels}) {
  const esds = fullBox("esds", 0, 0, descriptor(3, u16(AUDIO_TRACK), u8(0),
    descriptor(4, u8(0x40, 0x15), zeros(3), u32(0), u32(0), descriptor(5, asc)),
    descriptor(6, u8(2))));
  const mp4a = box("mp4a", zeros(6), u16(1), zeros(8), u16(channels), u16(16), u16(0), u16(0),
                   u32(rate * 0x10000 >>> 0), esds);
  return initSegment(AUDIO_TRACK, rate, mp4a, "soun");
}

const SYNC = 0x02000000;     // sample_depends_on = 2: an IDR
const NOT_SYNC = 0x01010000; // depends on others, sample_is_non_sync_sample

// One moof+mdat; samples are {data, duration, flags} in the track's timescale.
function fragment(sequence, trackId, baseTime, samples) {
  const trunSize = 20 + 12 * samples.length;
  const moofSize = 8 + 16 + 8 + 16 + 20 + trunSize;
  const entries = samples.map((s) => concat([u32(s.duration), u32(s.data.length), u32(s.flags)]));
  const trun = fullBox("trun", 0, 0x000701, u32(samples.length), u32(moofSize + 8), ...entries);
  const traf = box("traf", fullBox("tfhd", 0, 0x020000, u32(trackId)),
                   fullBox("tfdt", 1, 0, u64(baseTime)), trun);
  const moof = box("moof", fullBox("mfhd", 0, 0, u32(sequence)), traf);
  return concat([moof, box("mdat", ...samples.map((s) => s.data))]);
}

// ---- the remuxer --------------------------------------------------------------

// Splits one binary message into records; throws on a framing error (the
// records carry exact sizes and nothing re-synchronises after a bad one).
export function parseRecords(buffer, onRecord) {
  const view = new DataView(buffer);
  let at = 0;
  while (at < buffer.byteLength) {
    if (at + 9 > buffer.byteLength) throw new Error("truncated record header");
    const type = view.getUint8(at);
    const timestamp = view.getInt32(at + 1);
    const size = view.getUint32(at + 5);
    if (at + 9 + size > buffer.byteLength) throw new Error("record runs past its message");
    onRecord(type, timestamp, new Uint8Array(buffer, at + 9, size));
    at += 9 + size;
  }
}

// Records in, segments out: emit({kind: "video"|"audio", init, mime, data, ms}).
// pts = dts = the record's timestamp (the server sends no B-frames); a sample's
// duration is the gap to the next one, so a fragment is cut when the sample
// after it arrives. Timestamps are rebased to start at 0, and a jump of more
// than 5 s either way keeps the timeline continuous.
export class FlvRemuxer {
  constructor(emit, fragmentMs = FRAGMENT_MS) {
    this.emit = emit;
    this.fragmentMs = fragmentMs;
    this.sequence = 0;
    this.base = null; // the first record's timestamp
    this.video = {config: null, nextConfig: null, info: null, samples: [], needKey: true,
                  needInit: true, frameMs: DEFAULT_FRAME_MS, lastTime: null};
    this.audio = {config: null, info: null, samples: [], needInit: true, nextTime: null};
  }

  push(type, timestamp, payload) {
    if (this.base === null) this.base = timestamp;
    if (type === RECORD_VIDEO) this._video(timestamp, payload);
    else if (type === RECORD_AUDIO) this._audio(timestamp, payload);
  }

  // The stream ended: send what waits (its last sample keeps the duration before it).
  flush() {
    this._flushVideo();
    this._flushAudio();
  }

  // Start again from the next keyframe, init segments first (after the
  // caller dropped queued segments, which may have held an init).
  restart() {
    Object.assign(this.video, {samples: [], needKey: true, needInit: true});
    Object.assign(this.audio, {samples: [], needInit: true, nextTime: null});
  }

  // Media time (s) a record's timestamp (ms) has, or will have: where a seek's
  // first picture lands.
  mediaTime(timestamp) {
    if (this.base === null) return 0;
    let time = (((timestamp - this.base) % 2 ** 31) + 2 ** 31) % 2 ** 31;
    if (time >= 2 ** 30) time -= 2 ** 31;
    return time / 1000;
  }

  // Media time (ms from the start) of a record, shifting the base on a jump
  // so that it lands right after `expected` (the track's own next time).
  _time(timestamp, expected) {
    // The server sends ms modulo 2^31 (a negative time, AAC priming, comes as
    // 2^31 - 23): read the difference from the base in that ring.
    let time = (((timestamp - this.base) % 2 ** 31) + 2 ** 31) % 2 ** 31;
    if (time >= 2 ** 30) time -= 2 ** 31;
    if (expected !== null && Math.abs(time - expected) > JUMP_MS) {
      this.base += Math.round(time - expected);
      time = expected;
    }
    return time;
  }

  _video(timestamp, payload) {
    const v = this.video;
    if (payload.length < 5 || (payload[0] & 0x0f) !== 7) return; // AVC only
    const keyframe = payload[0] >> 4 === 1;
    if (payload[1] === 0) { // sequence header: the avcC for the keyframe that follows
      v.nextConfig = payload.slice(5);
      return;
    }
    if (payload[1] !== 1) return; // end of sequence
    if (keyframe && v.nextConfig) {
      if (!equalBytes(v.nextConfig, v.config)) {
        try {
          v.info = parseAvcC(v.nextConfig);
          v.config = v.nextConfig;
          v.needInit = true;
        } catch (error) { console.warn("mse: bad avcC", error); }
      }
      v.nextConfig = null;
    }
    if (v.needKey && !(keyframe && v.config)) return; // undecodable until a keyframe
    const expected = v.lastTime === null ? null : v.lastTime + v.frameMs;
    const time = this._time(timestamp, expected);
    const pending = v.samples;
    if (pending.length) {
      const last = pending[pending.length - 1];
      let duration = time - last.time;
      if (duration <= 0 || duration > 1000) duration = v.frameMs; else v.frameMs = duration;
      last.duration = duration;
      if (keyframe || last.time + duration - pending[0].time >= this.fragmentMs) {
        this._flushVideo();
      }
    }
    if (keyframe && v.needInit) {
      this.emit({kind: "video", init: true, mime: `video/mp4; codecs="${v.info.codec}"`,
                 data: videoInit(v.config, v.info.width, v.info.height),
                 width: v.info.width, height: v.info.height});
      v.needInit = false;
    }
    v.needKey = false;
    v.lastTime = time;
    v.samples.push({time, data: payload.subarray(5), keyframe, duration: v.frameMs});
  }

  _flushVideo() {
    const samples = this.video.samples;
    if (!samples.length) return;
    const ms = samples.reduce((sum, s) => sum + s.duration, 0);
    this.emit({kind: "video", init: false, ms, keyframe: samples[0].keyframe,
               data: fragment(++this.sequence, VIDEO_TRACK, samples[0].time * 90,
                              samples.map((s) => ({data: s.data, duration: s.duration * 90,
                                                   flags: s.keyframe ? SYNC : NOT_SYNC})))});
    this.video.samples = [];
  }

  _audio(timestamp, payload) {
    const a = this.audio;
    if (payload.length < 2) return;
    if (payload[0] === 0) { // AudioSpecificConfig
      const config = payload.slice(1);
      if (!equalBytes(config, a.config)) {
        try {
          a.info = parseAsc(config);
          this._flushAudio();
          a.config = config;
          a.needInit = true;
        } catch (error) { console.warn("mse: bad AudioSpecificConfig", error); }
      }
      return;
    }
    if (!a.config) { a.config = DEFAULT_ASC; a.info = parseAsc(DEFAULT_ASC); }
    const rate = a.info.rate;
    // AAC frames are 1024 samples: count them, so the audio has no gaps or
    // overlaps from millisecond rounding; follow the timestamps when they drift.
    const expected = a.nextTime === null ? null : a.nextTime * 1000 / rate;
    const time = this._time(timestamp, expected);
    if (time < 0) return; // sound from before the first keyframe: nothing to play it with
    const fromStamp = Math.round(time * rate / 1000);
    if (a.nextTime === null || Math.abs(fromStamp - a.nextTime) > rate / 10) {
      this._flushAudio();
      a.nextTime = fromStamp;
    }
    if (a.needInit) {
      this.emit({kind: "audio", init: true, mime: `audio/mp4; codecs="${a.info.codec}"`,
                 data: audioInit(a.config, a.info)});
      a.needInit = false;
    }
    a.samples.push({time: a.nextTime, data: payload.subarray(1)});
    a.nextTime += 1024;
    if ((a.nextTime - a.samples[0].time) * 1000 / rate >= this.fragmentMs) this._flushAudio();
  }

  _flushAudio() {
    const a = this.audio;
    if (!a.samples.length) return;
    this.emit({kind: "audio", init: false, ms: a.samples.length * 1024 * 1000 / a.info.rate,
               data: fragment(++this.sequence, AUDIO_TRACK, a.samples[0].time,
                              a.samples.map((s) => ({data: s.data, duration: 1024,
                                                     flags: SYNC})))});
    a.samples = [];
  }
}

// ---- the MediaSource side -----------------------------------------------------

const MAX_QUEUED_BYTES = 8 * 1024 * 1024; // per kind: beyond it, restart at a keyframe
const MAX_QUEUED_SEGMENTS = 400;
const DECIDE_MS = 1500;  // a promised kind that sent nothing in this much of the other is off
const KEEP_BEHIND_S = 20;  // trim the buffer behind currentTime down to this
const TRIM_AT_S = 30;      // once it holds more than this
const MAX_LAG_S = 8;       // further behind the newest media than this: jump ahead
const CATCH_UP_S = 3;      // to this far behind it (the server sends ~2.5 s ahead)
// Playing starts with this much buffered: a new broadcast comes in real time, and
// playing its first fragment at once stalls on the next one.
const START_BUFFER_S = 0.5;

// Plays one MSE stream in a <video>: feed(message) each binary message of the
// media socket; close() to let go of the element. kinds = which tracks the
// server's answer enabled ({video, audio}).
export class MsePlayback {
  constructor(video, kinds, onError = (error) => console.warn("mse:", error)) {
    this.video = video;
    this.onError = onError;
    this.closed = false;
    this.expected = {video: !!kinds.video, audio: !!kinds.audio};
    // per kind: segments waiting for their SourceBuffer, the mime of the last init
    this.tracks = {video: this._track(), audio: this._track()};
    this.buffers = null; // {kind: SourceBuffer} once created
    this.started = false;
    this.lastTrim = 0;
    this.remuxer = new FlvRemuxer((segment) => this._segment(segment));
    this.source = new MediaSource();
    this.url = URL.createObjectURL(this.source);
    // We say when to play (START_BUFFER_S); autoplay would start on the first frame.
    this.autoplay = video.autoplay;
    video.autoplay = false;
    video.srcObject = null;
    video.src = this.url;
    this.source.addEventListener("sourceopen", () => this._maybeCreate(), {once: true});
    this.timer = setInterval(() => this._watch(), 500);
  }

  _track() { return {queue: [], bytes: 0, mime: null, ms: 0}; }

  feed(buffer) {
    if (this.closed) return;
    try {
      parseRecords(buffer, (type, timestamp, payload) =>
        this.remuxer.push(type, timestamp, payload));
    } catch (error) {
      this.onError(error);
    }
  }

  // The stream ended: play out what is buffered.
  end() {
    if (this.closed) return;
    this.ending = true; // also: make the SourceBuffers with what came, if not yet made
    this.remuxer.flush();
    this._maybeCreate();
    this._maybeEnd();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.video.autoplay = this.autoplay;
    this.video.removeAttribute("src");
    this.video.load();
    URL.revokeObjectURL(this.url);
  }

  _segment(segment) {
    const track = this.tracks[segment.kind];
    if (!this.expected[segment.kind]) {
      if (this.buffers) return; // a kind the answer turned off, or given up on
      this.expected[segment.kind] = true; // the answer was wrong: take what comes
    }
    if (segment.init) track.mime = segment.mime;
    else track.ms += segment.ms;
    track.queue.push(segment);
    track.bytes += segment.data.length;
    if (track.bytes > MAX_QUEUED_BYTES || track.queue.length > MAX_QUEUED_SEGMENTS) {
      // The buffer does not keep up (a hidden tab, a slow decoder): drop what
      // waits and start again from a keyframe rather than grow without bound.
      console.warn(`mse: ${segment.kind} queue over its bound, restarting at a keyframe`);
      for (const t of Object.values(this.tracks)) { t.queue = []; t.bytes = 0; }
      this.remuxer.restart();
      return;
    }
    if (this.buffers) this._pump(segment.kind);
    else this._maybeCreate();
  }

  // SourceBuffers are made once, for every kind that has its init segment, and
  // Chromium takes no more after the first init: so wait for each promised kind,
  // or give one up once the other has DECIDE_MS queued without it.
  _maybeCreate() {
    if (this.buffers || this.closed || this.source.readyState !== "open") return;
    const kinds = Object.keys(this.tracks).filter((kind) => this.expected[kind]);
    const ready = kinds.filter((kind) => this.tracks[kind].mime);
    if (!ready.length) return;
    if (ready.length < kinds.length) {
      if (!this.ending && !ready.some((kind) => this.tracks[kind].ms >= DECIDE_MS)) return;
      for (const kind of kinds) if (!ready.includes(kind)) this.expected[kind] = false;
    }
    this.buffers = {};
    try {
      for (const kind of ready) {
        const buffer = this.source.addSourceBuffer(this.tracks[kind].mime);
        buffer.mime = this.tracks[kind].mime;
        buffer.addEventListener("updateend", () => this._pump(kind));
        buffer.addEventListener("error", () => this.onError(new Error(`${kind} append failed`)));
        this.buffers[kind] = buffer;
      }
    } catch (error) {
      this.onError(error);
      return;
    }
    for (const kind of ready) this._pump(kind);
  }

  // Show media time `seconds` as soon as it is buffered (a seek's new
  // picture, which the server sends after what is already buffered).
  seekTo(seconds) {
    this.target = seconds;
    this._jump();
  }

  _jump() {
    const target = this.target;
    if (target === null || target === undefined || this.closed) return;
    const ranges = this.video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= target + 0.1 && ranges.end(i) > target + 0.1) {
        this.target = null;
        this.video.currentTime = Math.max(target, ranges.start(i));
        return;
      }
    }
  }

  _pump(kind) {
    this._jump();
    const buffer = this.buffers && this.buffers[kind];
    const track = this.tracks[kind];
    if (!buffer || buffer.updating || this.closed || this.source.readyState !== "open") return;
    if (!track.queue.length) {
      if (!this._trim(kind)) this._maybeEnd();
      this._start();
      return;
    }
    const segment = track.queue[0];
    try {
      if (segment.init && segment.mime !== buffer.mime && buffer.changeType) {
        buffer.changeType(segment.mime); // another H.264 profile after a new avcC
        buffer.mime = segment.mime;
      }
      buffer.appendBuffer(segment.data);
      track.queue.shift();
      track.bytes -= segment.data.length;
    } catch (error) {
      if (error.name === "QuotaExceededError") {
        // Full: free what was played (if anything) and try again on updateend.
        if (!this._trim(kind, 1)) {
          for (const t of Object.values(this.tracks)) { t.queue = []; t.bytes = 0; }
          this.remuxer.restart();
        }
      } else {
        this.onError(error);
      }
    }
  }

  // Remove media more than `keep` s behind the playhead; true if a remove began.
  _trim(kind, keep = KEEP_BEHIND_S) {
    const buffer = this.buffers[kind];
    const now = this.video.currentTime;
    if (buffer.updating || !buffer.buffered.length) return false;
    const start = buffer.buffered.start(0);
    if (keep === KEEP_BEHIND_S && (now - start < TRIM_AT_S || performance.now() - this.lastTrim < 1000)) {
      return false;
    }
    if (now - keep <= start) return false;
    this.lastTrim = performance.now();
    buffer.remove(start, now - keep);
    return true;
  }

  _maybeEnd() {
    if (!this.ending || this.closed || this.source.readyState !== "open" || !this.buffers) return;
    for (const [kind, buffer] of Object.entries(this.buffers)) {
      if (buffer.updating || this.tracks[kind].queue.length) return;
    }
    try { this.source.endOfStream(); } catch (error) { /* already ended */ }
  }

  // Start where the media begins (it need not begin at 0), once enough is there.
  _start() {
    const ranges = this.video.buffered;
    if (this.started || !ranges.length) return;
    if (ranges.end(ranges.length - 1) - ranges.start(0) < START_BUFFER_S && !this.ending) return;
    this.started = true;
    if (this.video.currentTime < ranges.start(0)) this.video.currentTime = ranges.start(0);
    this.video.play().catch(() => { /* autoplay refused: the user presses play */ });
  }

  // Twice a second: step over gaps and stay near the newest media.
  _watch() {
    const video = this.video;
    if (!this.started) this._start();
    const ranges = video.buffered;
    if (this.closed || !this.started || !ranges.length || video.paused || video.seeking) return;
    const now = video.currentTime;
    const end = ranges.end(ranges.length - 1);
    if (end - now > MAX_LAG_S) {
      video.currentTime = end - CATCH_UP_S;
      return;
    }
    for (let i = 0; i < ranges.length; i++) {
      if (now >= ranges.start(i) && now < ranges.end(i)) return; // playing inside a range
      if (ranges.start(i) > now && video.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) {
        video.currentTime = ranges.start(i); // stuck before a gap: jump it
        return;
      }
    }
  }
}
