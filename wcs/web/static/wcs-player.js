// The project's own player: plain JS speaking the same WCS WebSocket protocol
// as the Flashphoner Web SDK (docs: wcs-protocol.md), over WebRTC or MSE, or
// WHEP (RFC 9725: one HTTP POST of the offer to the web port, no WebSocket).
//
//   import {WcsPlayer, BitratePlot} from "./wcs-player.js";
//   const player = new WcsPlayer({video, onStatus(status, info) {}, onStats(stats) {}});
//   await player.play("ws://host:8080/", "vod://sample.mp4", "MSE");  // or "WebRTC", "WHEP"
//   player.stop();
//
// onStatus(status, info): CONNECTING, ESTABLISHED, PENDING, then the server's
// stream statuses (PLAYING, STOPPED, FAILED, ...), or DISCONNECTED when the
// signalling socket closes. `info` undefined means "unchanged" (as in the SDK,
// an empty info never clears an older one); "" clears it.
// onStats({provider, width, height, fps, bitrate, packetsLost, freezes,
// framesDecoded}) once a second while a stream plays; bitrate in bits/s.
//
// player.rtcConfig is what WebRTC plays' peer connections get (the ICE servers
// the server's /config.json hands out: a TURN server's, with a credential made
// for this load); player.transport "TCP" asks for WebRTC media over TCP only.
// player.whepBase is where WHEP plays POST (the page's own origin by default:
// the web port serves both the pages and /whep/).
//
// A personal vod:// play over WebRTC or MSE can be sought and paused:
// player.duration is the file's length (s) once PLAYING (null when it cannot be
// sought), player.position() where the picture is, player.seek(s),
// player.pause() (status PAUSED) and player.resume() (PLAYING again);
// onSeeked(position) says where a seek went (the keyframe before the asked time).

import {MsePlayback} from "./mse.js";

// The SDK's fixed MSE offer (media-source-media-provider.js): the server only
// reads which kinds its answer enables.
export const MSE_OFFER = [
  "v=0", "o=- 1988962254 1988962254 IN IP4 0.0.0.0", "c=IN IP4 0.0.0.0", "t=0 0",
  "a=sdplang:en",
  "m=video 0 RTP/AVP 112", "a=rtpmap:112 H264/90000",
  "a=fmtp:112 packetization-mode=1; profile-level-id=420020", "a=recvonly",
  "m=audio 0 RTP/AVP 108 96 97 98 99 100 102 103 104",
  "a=rtpmap:108 mpeg4-generic/48000/1", "a=rtpmap:96 mpeg4-generic/8000/1",
  "a=rtpmap:97 mpeg4-generic/11025/1", "a=rtpmap:98 mpeg4-generic/12000/1",
  "a=rtpmap:99 mpeg4-generic/16000/1", "a=rtpmap:100 mpeg4-generic/22050/1",
  "a=rtpmap:104 mpeg4-generic/24000/1", "a=rtpmap:102 mpeg4-generic/32000/1",
  "a=rtpmap:103 mpeg4-generic/44100/1", "a=recvonly", ""].join("\r\n");

export const PROVIDERS = ["WebRTC", "MSE", "WHEP"];
// What the WebSocket's connection message offers (WHEP needs no WebSocket).
const WS_PROVIDERS = ["WebRTC", "MSE"];
const GATHERING_MS = 3000; // the longest a WHEP offer waits for its candidates
const ENDED = ["STOPPED", "FAILED"];
const STOP_ANSWER_MS = 5000; // after this without STOPPED, the stream is let go locally

function uuid() {
  // crypto.randomUUID exists only in secure contexts (not a plain-HTTP LAN page)
  return crypto.randomUUID ? crypto.randomUUID() :
    "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx".replace(/x/g, () => (Math.random() * 16 | 0).toString(16));
}

// Which kinds an MSE answer enables: a media section with port 0 is rejected (§4).
export function answerKinds(sdp) {
  const kinds = {video: false, audio: false};
  for (const match of String(sdp).matchAll(/^m=(\w+) (\d+)/gm)) {
    if (match[1] in kinds) kinds[match[1]] = match[2] !== "0";
  }
  return kinds;
}

export class WcsPlayer {
  constructor({video, onStatus = () => {}, onStats = () => {}, onSeeked = () => {}} = {}) {
    if (!video) throw new Error("WcsPlayer needs a <video> element");
    this.video = video;
    this.rtcConfig = {iceServers: []};
    this.transport = "UDP";
    this.whepBase = location.origin;
    this.onStatus = onStatus;
    this.onStats = onStats;
    this.onSeeked = onSeeked;
    this.socket = null;      // the signalling socket, kept for later plays
    this.socketUrl = null;
    this.ready = null;       // resolves once getUserData has come
    this.authToken = null;
    this.stream = null;      // the playStream fields of the current play
    this.pc = null;          // WebRTC
    this.media = null;       // MSE: the media socket and its playback
    this.mse = null;
    this.mediaBytes = 0;
    this.freezes = 0;
    this.sawPlaying = false;
    this.statsTimer = null;
    this.lastStats = null;
    this.lastStatus = null;
    // MSE freezes: a `waiting` once the picture has moved means it stalled
    // (one during a seek, such as the jump to where the media begins, does not).
    video.addEventListener("playing", () => { this.sawPlaying = true; });
    video.addEventListener("waiting", () => {
      if (this.sawPlaying && !video.seeking) this.freezes++;
    });
  }

  // True from play() until the stream is stopped (or failed).
  get active() { return !!this.stream && !this.stream.stopping; }

  get provider() { return this.stream ? this.stream.mediaProvider : null; }

  // Plays `name` from the server at `wsUrl` with "WebRTC" or "MSE" (or at
  // `whepBase` with "WHEP"). Resolves once playStream (the WHEP offer) is sent;
  // statuses come through onStatus. Rejects if the session cannot be
  // established (onStatus has said FAILED or DISCONNECTED).
  async play(wsUrl, name, provider = "WebRTC") {
    if (!PROVIDERS.includes(provider)) throw new Error(`unknown provider ${provider}`);
    const url = new URL(wsUrl).href; // throws on a bad URL before anything changes
    if (this.stream) this._forget(true);
    const stream = {mediaSessionId: uuid(), name, published: false, hasVideo: true,
                    hasAudio: true, status: "PENDING", record: false, mediaProvider: provider,
                    transport: this.transport};
    this.stream = stream;
    if (provider === "WHEP") return this._playWhep(stream);
    await this._connect(url);
    if (this.stream !== stream) return; // stopped or replaced meanwhile
    let sdp = MSE_OFFER;
    if (provider === "WebRTC") {
      sdp = await this._offer();
      if (this.stream !== stream) return;
    }
    this._status("PENDING", "");
    this._send("playStream", Object.assign({sdp}, stream));
    this._startStats();
  }

  // Asks the server to stop; the stream ends when it answers STOPPED.
  stop() {
    const stream = this.stream;
    if (!stream || stream.stopping) return;
    stream.stopping = true;
    if (stream.mediaProvider === "WHEP") {
      this._deleteWhep(stream);
      this.stream = null;
      this._closeMedia(false);
      this._status("STOPPED", "");
      return;
    }
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this._send("stopStream", stream);
      // The picture stops now, but the connection closes on STOPPED: closed
      // first, the server could see a lost viewer (FAILED) before the stop.
      this._stopStats();
      if (this.media) this.media.onmessage = null;
      if (this.mse) { this.mse.close(); this.mse = null; }
      // The SDK waits for STOPPED for ever; a console should not.
      setTimeout(() => {
        if (this.stream === stream) {
          this.stream = null;
          this._closeMedia(false);
          this._status("STOPPED", "No answer to stopStream");
        }
      }, STOP_ANSWER_MS);
    } else {
      this.stream = null;
      this._closeMedia(false);
      this._status("STOPPED");
    }
  }

  // Stops and closes the signalling socket too.
  close() {
    this._forget(true);
    this._dropSocket();
  }

  // ---- signalling --------------------------------------------------------------

  _connect(url) {
    if (this.socket && this.socketUrl === url && this.socket.readyState <= WebSocket.OPEN) {
      return this.ready; // the same server: reuse the session
    }
    this._dropSocket();
    const socket = new WebSocket(url);
    this.socket = socket;
    this.socketUrl = url;
    this._status("CONNECTING", "");
    this.ready = new Promise((resolve, reject) => {
      let established = false;
      socket.onopen = () => this._send("connection", {
        appKey: "defaultApp", mediaProviders: WS_PROVIDERS, clientVersion: "2.0",
        clientOSVersion: navigator.appVersion, clientBrowserVersion: navigator.userAgent,
        msePacketizationVersion: 2});
      socket.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        const message = JSON.parse(event.data);
        if (message.message === "getUserData") {
          this.authToken = (message.data && message.data[0] || {}).authToken;
          established = true;
          this._status("ESTABLISHED");
          resolve();
        }
        this._onMessage(message);
      };
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.socket = null;
        this._forget(false);
        this._status(established ? "DISCONNECTED" : "FAILED",
                     established ? undefined : "Could not connect to " + url);
        reject(new Error(established ? "disconnected" : "could not connect"));
      };
    });
    this.ready.catch(() => {}); // a later play() sees the rejection; no unhandled warning
    return this.ready;
  }

  _dropSocket() {
    if (!this.socket) return;
    const socket = this.socket;
    this.socket = null; // its onclose now does nothing
    socket.close();
  }

  _send(message, data) {
    this.socket.send(JSON.stringify({message, data: [data]}));
  }

  _status(status, info) {
    this.lastStatus = status;
    this.onStatus(status, info);
  }

  _onMessage(message) {
    const data = message.data || [];
    const stream = this.stream;
    switch (message.message) {
      case "ping":
        this._send("pong", null);
        break;
      case "setRemoteSDP":
        if (stream && !stream.stopping && data[0] === stream.mediaSessionId) {
          this._answer(data[1]);
        }
        break;
      case "notifyStreamStatusEvent":
        this._streamStatus(data[0] || {});
        break;
      case "notifyStreamEvent":
        this._streamEvent(data[0] || {});
        break;
      case "fail": {
        const body = data[0] || {};
        if (body.apiMethod === "StreamStatusEvent") {
          this._streamStatus(Object.assign({}, body, {mediaSessionId: body.id}));
        } else if (body.info) {
          this._status(this.lastStatus || "ESTABLISHED", body.info);
        }
        break;
      }
    }
  }

  _streamStatus(event) {
    const stream = this.stream;
    if (!stream || event.mediaSessionId !== stream.mediaSessionId) return;
    if (typeof event.duration === "number") stream.duration = event.duration;
    if (event.status === "PAUSED" && stream.status !== "PAUSED") {
      stream.base = this.position();
      if (this.mse) this.video.pause(); // keep what is buffered for the resume
    } else if (event.status === "PLAYING") {
      if (stream.status === "PAUSED" && this.mse) this.video.play().catch(() => {});
      if (stream.status !== "PLAYING") stream.anchor = performance.now();
    }
    stream.status = event.status;
    if (ENDED.includes(event.status)) {
      this.stream = null;
      this._closeMedia(!stream.stopping); // an end the server chose: play out the buffer
    }
    this._status(event.status, event.info);
  }

  // ---- seek and pause (a personal vod:// play over WebRTC or MSE) ---------------

  // The file's length (s) when the play can be sought, else null.
  get duration() {
    const stream = this.stream;
    return stream && stream.duration && stream.mediaProvider !== "WHEP" ? stream.duration : null;
  }

  get paused() { return !!this.stream && this.stream.status === "PAUSED"; }

  // Where in the file (s) the picture is now.
  position() {
    const stream = this.stream;
    if (!stream || !stream.duration) return 0;
    let at;
    if (stream.status === "PAUSED" || stream.anchor === undefined) {
      at = stream.base || 0;
    } else if (this.mse) {
      at = (stream.base || 0) + this.video.currentTime - (stream.mediaAt || 0);
    } else {
      at = (stream.base || 0) + (performance.now() - stream.anchor) / 1000;
    }
    return Math.min(stream.duration, Math.max(0, at));
  }

  // Play from the keyframe at or before `seconds`; the server answers with
  // the stream event `seeked` (or `seekFailed`, shown as the info).
  seek(seconds) { this._control("seekStream", {position: Number(seconds)}); }

  pause() { this._control("pauseStream", {}); }

  resume() { this._control("resumeStream", {}); }

  _control(message, fields) {
    const stream = this.stream;
    if (!stream || stream.stopping || !this.duration || !this.socket) return;
    this._send(message, Object.assign({mediaSessionId: stream.mediaSessionId}, fields));
  }

  _streamEvent(event) {
    const stream = this.stream;
    if (!stream || event.mediaSessionId !== stream.mediaSessionId) return;
    const payload = event.payload || {};
    if (event.type === "seeked") {
      stream.base = payload.position;
      stream.anchor = performance.now();
      if (this.mse) {
        stream.mediaAt = this.mse.remuxer.mediaTime(payload.timestamp);
        this.mse.seekTo(stream.mediaAt);
      }
      this.onSeeked(payload.position);
    } else if (/^(seek|pause|resume)Failed$/.test(event.type)) {
      this._status(this.lastStatus, payload.info);
    }
  }

  // ---- media -------------------------------------------------------------------

  async _offer(pc = new RTCPeerConnection(this.rtcConfig)) {
    this.pc = pc;
    pc.addTransceiver("audio", {direction: "recvonly"});
    pc.addTransceiver("video", {direction: "recvonly"});
    const media = new MediaStream();
    pc.ontrack = (event) => media.addTrack(event.track);
    this._resetVideo();
    this.video.srcObject = media;
    this.video.play().catch(() => {});
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    return offer.sdp;
  }

  // WHEP: the offer with its candidates POSTed, the answer in the reply; the
  // peer connection's own state says PLAYING, and the end (RFC 9725 has no
  // statuses: a failed or closed connection is the stream's end).
  async _playWhep(stream) {
    this._status("PENDING", "");
    const pc = new RTCPeerConnection(this.rtcConfig);
    let sdp = await this._offer(pc);
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, GATHERING_MS);
    });
    if (this.stream !== stream) return;
    sdp = pc.localDescription.sdp;
    const endpoint = `${this.whepBase}/whep/${encodeURIComponent(stream.name)}`;
    let response;
    try {
      response = await fetch(endpoint, {method: "POST", body: sdp,
                                        headers: {"Content-Type": "application/sdp"}});
    } catch (error) {
      return this._whepEnded(stream, "FAILED", `Could not reach ${endpoint}`);
    }
    if (this.stream !== stream) return;
    if (response.status !== 201) {
      const body = await response.json().catch(() => ({}));
      return this._whepEnded(stream, "FAILED", body.message || `HTTP ${response.status}`);
    }
    stream.resource = new URL(response.headers.get("Location"), endpoint).href;
    pc.onconnectionstatechange = () => {
      if (this.stream !== stream) return;
      if (pc.connectionState === "connected" && stream.status !== "PLAYING") {
        stream.status = "PLAYING";
        this._status("PLAYING", "");
      } else if (["failed", "closed"].includes(pc.connectionState)) {
        const played = stream.status === "PLAYING";
        this._whepEnded(stream, played ? "STOPPED" : "FAILED",
                        played ? "The connection ended" : "Failed by ICE timeout");
      }
    };
    await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
    this._startStats();
  }

  _whepEnded(stream, status, info) {
    if (this.stream !== stream) return;
    this._deleteWhep(stream);
    this.stream = null;
    this._closeMedia(status === "STOPPED");
    this._status(status, info);
  }

  _deleteWhep(stream) {
    if (stream.resource) fetch(stream.resource, {method: "DELETE"}).catch(() => {});
    stream.resource = null;
  }

  _answer(sdp) {
    if (this.stream.mediaProvider === "WebRTC") {
      if (this.pc) {
        this.pc.setRemoteDescription({type: "answer", sdp})
          .catch((error) => this._status(this.lastStatus, "Answer refused: " + error.message));
      }
      return;
    }
    // MSE: the kinds the answer enables, then the media socket (§4)
    this._resetVideo();
    const mse = new MsePlayback(this.video, answerKinds(sdp),
                                (error) => console.warn("mse:", error));
    this.mse = mse;
    const media = new WebSocket(this.socketUrl);
    media.binaryType = "arraybuffer";
    this.media = media;
    media.onopen = () => media.send(JSON.stringify(
      {message: "connectMediaTransport", data: [{authToken: this.authToken}]}));
    media.onmessage = (event) => {
      if (typeof event.data === "string") {
        const message = JSON.parse(event.data);
        if (message.message === "ping") media.send(JSON.stringify({message: "pong"}));
        return;
      }
      this.mediaBytes += event.data.byteLength;
      mse.feed(event.data);
    };
  }

  _resetVideo() {
    this.mediaBytes = 0;
    this.freezes = 0;
    this.sawPlaying = false;
    this.lastStats = null;
    if (this.mse) { this.mse.close(); this.mse = null; }
    this.video.srcObject = null;
  }

  // Lets go of the peer connection or media socket; `playOut` keeps what MSE
  // has buffered playing (the server ended the stream) instead of clearing it.
  _closeMedia(playOut) {
    this._stopStats();
    if (this.pc) { this.pc.close(); this.pc = null; }
    if (this.media) {
      this.media.onmessage = null;
      this.media.close();
      this.media = null;
    }
    if (this.mse) {
      if (playOut) this.mse.end(); else this.mse.close();
      if (!playOut) this.mse = null;
    }
  }

  // Drops the current stream at once (a new play, the socket closed);
  // `tell` sends stopStream if the server can still hear it.
  _forget(tell) {
    const stream = this.stream;
    if (!stream) return;
    this.stream = null;
    if (stream.mediaProvider === "WHEP") this._deleteWhep(stream);
    this._closeMedia(false);
    if (tell && !stream.stopping && this.socket && this.socket.readyState === WebSocket.OPEN) {
      this._send("stopStream", stream);
    }
  }

  // ---- stats -------------------------------------------------------------------

  _startStats() {
    this._stopStats();
    this.statsTimer = setInterval(() => {
      this._collect().then((stats) => { if (stats) this.onStats(stats); })
        .catch((error) => console.warn("stats:", error));
    }, 1000);
  }

  _stopStats() {
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.statsTimer = null;
  }

  async _collect() {
    const stream = this.stream;
    if (!stream) return null;
    const now = performance.now();
    let bytes = 0, frames = 0, fps = null, lost = 0, freezes = 0;
    let width = this.video.videoWidth, height = this.video.videoHeight;
    if (stream.mediaProvider !== "MSE") {
      if (!this.pc) return null;
      const report = await this.pc.getStats();
      for (const s of report.values()) {
        if (s.type !== "inbound-rtp") continue;
        bytes += s.bytesReceived || 0;
        lost += Math.max(0, s.packetsLost || 0); // both kinds
        if (s.kind === "video") {
          frames = s.framesDecoded || 0;
          freezes = s.freezeCount || 0;
          if (typeof s.framesPerSecond === "number") fps = s.framesPerSecond;
          width = width || s.frameWidth || 0;
          height = height || s.frameHeight || 0;
        }
      }
    } else {
      bytes = this.mediaBytes;
      const quality = this.video.getVideoPlaybackQuality ?
        this.video.getVideoPlaybackQuality() : {totalVideoFrames: 0};
      frames = quality.totalVideoFrames || 0;
      freezes = this.freezes;
    }
    if (this.stream !== stream) return null;
    const last = this.lastStats;
    this.lastStats = {time: now, bytes, frames};
    const seconds = last ? (now - last.time) / 1000 : 1;
    const bitrate = Math.max(0, Math.round((bytes - (last ? last.bytes : 0)) * 8 / seconds));
    if (fps === null) fps = last ? Math.max(0, (frames - last.frames) / seconds) : 0;
    return {provider: stream.mediaProvider, width, height, fps: Math.round(fps * 10) / 10,
            bitrate, packetsLost: lost, freezes, framesDecoded: frames};
  }
}

// "523 kb/s", "1.25 Mb/s"
export function formatBitrate(bitsPerSecond) {
  if (bitsPerSecond >= 1e6) return (bitsPerSecond / 1e6).toFixed(2) + " Mb/s";
  return Math.round(bitsPerSecond / 1e3) + " kb/s";
}

// A small line plot of the last `seconds` bitrates (one add() a second).
export class BitratePlot {
  constructor(canvas, seconds = 60) {
    this.canvas = canvas;
    this.seconds = seconds;
    this.values = [];
    this.draw();
  }

  add(bitsPerSecond) {
    this.values.push(Math.max(0, Number(bitsPerSecond) || 0));
    if (this.values.length > this.seconds) this.values.splice(0, this.values.length - this.seconds);
    this.draw();
  }

  clear() {
    this.values = [];
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const g = canvas.getContext("2d");
    const {width, height} = canvas;
    g.clearRect(0, 0, width, height);
    g.fillStyle = "#111";
    g.fillRect(0, 0, width, height);
    // the scale: the next 1, 2 or 5 step above the largest value
    const top = Math.max(...this.values, 100e3);
    const step = 10 ** Math.floor(Math.log10(top));
    const scale = [1, 2, 5, 10].map((m) => m * step).find((s) => s >= top);
    g.strokeStyle = "#333";
    g.lineWidth = 1;
    for (const part of [0.25, 0.5, 0.75]) {
      const y = Math.round(height * part) + 0.5;
      g.beginPath(); g.moveTo(0, y); g.lineTo(width, y); g.stroke();
    }
    g.fillStyle = "#999";
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "top";
    g.fillText(formatBitrate(scale), 4, 3);
    if (!this.values.length) return;
    const dx = width / Math.max(1, this.seconds - 1);
    const x0 = width - (this.values.length - 1) * dx;
    g.strokeStyle = "#4caf50";
    g.lineWidth = 1.5;
    g.beginPath();
    this.values.forEach((value, i) => {
      const x = x0 + i * dx;
      const y = height - 2 - (height - 16) * value / scale;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}
