// The operator's console: the media library, the live streams and a player,
// all through the server's own REST API and WebSocket (nothing else: when the
// REST API wants its key, the console asks for it and sends it, no way around).
"use strict";

import {BitratePlot, WcsPlayer} from "./wcs-player.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100; // library rows shown at once
const LIVE_EVERY = 2000; // ms between refreshes of the live list
const LIBRARY_EVERY = 15000; // and of the library (every 2 s while files are being checked)

let apiKey = sessionStorage.getItem("wcsvod.restKey") || "";
let wsUrl = "";
let hlsBase = ""; // http(s)://host:port of the HLS port this page's scheme reaches ("": off)
let sdkServed = false;
const HLS_DEMO = "client2/examples/demo/streaming/hls-js-player/hls-js-player.html";
let libraryOffset = 0;
let libraryTimer = null;

class KeyNeeded extends Error {}

// --- REST

async function rest(path, body) {
  const headers = {"Content-Type": "application/json"};
  if (apiKey) headers.Authorization = "Bearer " + apiKey;
  const response = await fetch("rest-api/" + path, {
    method: "POST", headers: headers, body: JSON.stringify(body || {}),
  });
  if (response.status === 401) {
    askForKey(apiKey ? "That key was refused." : "");
    throw new KeyNeeded("the REST API wants its key");
  }
  let data = null;
  try { data = await response.json(); } catch (error) { /* an empty body */ }
  return {status: response.status, data: data};
}

function askForKey(problem) {
  $("keyForm").hidden = false;
  $("keyError").textContent = problem || "";
  $("keyState").textContent = "REST API key needed";
}

$("keyForm").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("keyInput").value;
  sessionStorage.setItem("wcsvod.restKey", apiKey);
  $("keyForm").hidden = true;
  $("keyState").textContent = "";
  refreshAll();
});

// --- formatting

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function clock(seconds) {
  seconds = Math.max(0, Math.round(seconds || 0));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor(seconds / 60) % 60;
  const s = String(seconds % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function bits(perSecond) {
  if (!perSecond) return "—";
  if (perSecond >= 1e6) return (perSecond / 1e6).toFixed(2) + " Mbps";
  return Math.round(perSecond / 1e3) + " kbps";
}

function bytes(size) {
  if (size >= 1 << 30) return (size / (1 << 30)).toFixed(2) + " GiB";
  if (size >= 1 << 20) return (size / (1 << 20)).toFixed(1) + " MiB";
  return Math.ceil(size / 1024) + " KiB";
}

function verdictClass(verdict) {
  return {"plays as is": "ok", "plays with re-encode": "warn", "will not play": "bad"}[verdict] ||
    "pending";
}

// --- library

async function refreshLibrary() {
  clearTimeout(libraryTimer);
  let answer;
  try {
    answer = await rest("vod/library", {offset: libraryOffset, limit: PAGE,
                                        contains: $("libraryFilter").value.trim()});
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("librarySummary").textContent = String(error);
    return;
  }
  if (answer.status !== 200) {
    $("librarySummary").textContent = (answer.data && answer.data.message) || `HTTP ${answer.status}`;
    return;
  }
  const page = answer.data;
  const rows = page.items.map(libraryRow);
  $("libraryTable").tBodies[0].replaceChildren(...rows);
  const checking = page.checking ? `, ${page.checking} being checked` : "";
  const cut = page.truncated ? " (the folder holds more: not all are listed)" : "";
  $("librarySummary").textContent = `${page.files} files${checking}${cut}`;
  const last = Math.min(page.offset + page.items.length, page.total);
  $("libraryPage").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "none";
  $("libraryPrev").disabled = page.offset === 0;
  $("libraryNext").disabled = last >= page.total;
  $("fileNames").replaceChildren(...page.items
    .filter((item) => item.verdict !== "will not play")
    .map((item) => Object.assign(document.createElement("option"),
                                 {value: "vod-live://" + item.name})));
  libraryTimer = setTimeout(refreshLibrary, page.checking ? 2000 : LIBRARY_EVERY);
}

function libraryRow(item) {
  const tr = document.createElement("tr");
  tr.dataset.name = item.name;
  const verdict = cell(item.verdict, "verdict " + verdictClass(item.verdict));
  const why = [item.reason, ...(item.notes || [])].filter(Boolean).join("; ");
  if (why) verdict.title = why;
  const checked = item.verdict !== "checking" && item.verdict !== "will not play";
  tr.append(
    cell(item.name, "name"),
    verdict,
    cell(checked ? clock(item.duration) : ""),
    cell(checked && item.width ? `${item.width}×${item.height} ${item.fps ? item.fps + " fps" : ""}` : ""),
    cell(item.video || (checked ? "none" : "")),
    cell(item.audio || (checked ? "none" : "")),
    cell(bytes(item.size)),
    cell(checked ? (item.faststart ? "yes" : "no") : ""),
    cell(checked ? (item.b_frames ? "yes" : "no") : ""),
  );
  const actions = document.createElement("td");
  if (checked) {
    actions.append(
      button("Play", "play", () => startPlay(item.uri)),
      button("Broadcast", "broadcast", () => {
        $("startUri").value = "vod-live://" + item.name;
        $("startName").focus();
      }));
  } else if (why) {
    actions.textContent = why;
    actions.className = "muted";
  }
  tr.append(actions);
  return tr;
}

$("libraryFilter").addEventListener("input", () => {
  libraryOffset = 0;
  clearTimeout(libraryTimer);
  libraryTimer = setTimeout(refreshLibrary, 250);
});
$("libraryPrev").addEventListener("click", () => {
  libraryOffset = Math.max(0, libraryOffset - PAGE);
  refreshLibrary();
});
$("libraryNext").addEventListener("click", () => {
  libraryOffset += PAGE;
  refreshLibrary();
});

// --- live streams

async function listed(path) {
  const answer = await rest(path, {});
  if (answer.status === 404) return []; // none
  if (answer.status !== 200) throw new Error((answer.data && answer.data.message) || path);
  return answer.data;
}

function viewersOf(plays, names) {
  const counts = {WebRTC: 0, MSE: 0, WHEP: 0, steps: {}};
  for (const play of plays) {
    if (!names.includes(play.name)) continue;
    counts[play.mediaProvider] = (counts[play.mediaProvider] || 0) + 1;
    if (play.rendition) counts.steps[play.rendition] = (counts.steps[play.rendition] || 0) + 1;
  }
  return counts;
}

/** The WebRTC viewers by the step they get now: "source 1 · 180p 1" ("" if none adapts). */
function stepsText(steps) {
  return Object.entries(steps)
    .sort(([a], [b]) => (a === "source" ? -1 : b === "source" ? 1 : parseInt(b) - parseInt(a)))
    .map(([step, count]) => `${step} ${count}`)
    .join(" · ");
}

async function refreshLive() {
  let streams, media;
  try {
    [streams, media] = await Promise.all([listed("vod/find_all"), listed("stream/find_all")]);
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("liveSummary").textContent = String(error);
    return;
  }
  const plays = media.filter((m) => !m.published);
  const rows = [];
  const personal = new Map(); // uri -> the plays' own streams, shown as one row
  for (const stream of streams) {
    if (stream.uri.startsWith("vod://")) {
      const group = personal.get(stream.uri) || [];
      group.push(stream);
      personal.set(stream.uri, group);
      continue;
    }
    const names = [stream.localStreamName, stream.uri];
    rows.push(liveRow(stream.localStreamName, "vod-live" + (stream.loop ? " (loop)" : ""),
                      stream.uri, viewersOf(plays, names), stream.hlsViewers, stream.uptime,
                      stream.bitrate, {localStreamName: stream.localStreamName}, "vod/terminate",
                      true));
  }
  for (const [uri, group] of personal) {
    const hls = group.reduce((sum, s) => sum + s.hlsViewers, 0);
    rows.push(liveRow(uri, `vod (${group.length} personal)`, uri, viewersOf(plays, [uri]), hls,
                      Math.max(...group.map((s) => s.uptime)), group[0].bitrate, {uri: uri},
                      "vod/terminate"));
  }
  for (const publication of media.filter((m) => m.published)) {
    rows.push(liveRow(publication.name, `published (${publication.mediaProvider})`, "",
                      viewersOf(plays, [publication.name]), 0,
                      (Date.now() - publication.createDate) / 1000, 0,
                      {mediaSessionId: publication.mediaSessionId}, "stream/terminate", true));
  }
  $("liveTable").tBodies[0].replaceChildren(...rows);
  $("liveEmpty").hidden = rows.length > 0;
  $("liveSummary").textContent = rows.length ? `${rows.length} streams, ${plays.length} plays` : "";
}

/** The stream's HLS playlist on this server, as WCS names it ("" with HLS off). */
function hlsUrl(name) {
  if (!hlsBase) return "";
  const quoted = encodeURIComponent(name);
  return `${hlsBase}/${quoted}/${quoted}.m3u8`;
}

function link(label, className, href) {
  const a = document.createElement("a");
  a.textContent = label;
  a.className = className;
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener";
  return a;
}

function liveRow(name, kind, uri, viewers, hls, uptime, bitrate, selector, terminate,
                 offersHls = false) {
  const tr = document.createElement("tr");
  tr.dataset.name = name;
  tr.append(cell(name, "name"), cell(kind), cell(uri, "uri"), cell(viewers.WebRTC, "webrtc"),
            cell(stepsText(viewers.steps), "steps"), cell(viewers.MSE, "mse"), cell(viewers.WHEP, "whep"), cell(hls || 0, "hls"),
            cell(clock(uptime)),
            cell(bits(bitrate)));
  const actions = document.createElement("td");
  actions.append(
    button("Play", "play", () => startPlay(name)),
    button("Terminate", "terminate", async () => {
      await rest(terminate, selector).catch(() => null);
      refreshLive();
    }));
  const playlist = offersHls ? hlsUrl(name) : ""; // (personal vod:// plays have none)
  if (playlist) {
    actions.append(link("HLS", "hls-link", playlist));
    if (sdkServed) { // the SDK's hls.js demo, in its low-latency mode, playing at once
      // (the demo decodes src twice: once in getUrlParam, once more itself)
      const src = encodeURIComponent(encodeURIComponent(playlist));
      actions.append(link("Play HLS", "hls-play",
                          `${HLS_DEMO}?llhls=true&autoplay=true&src=${src}`));
    }
  }
  tr.append(actions);
  return tr;
}

$("startForm").addEventListener("submit", async (event) => {
  event.preventDefault();
  let uri = $("startUri").value.trim();
  if (!uri.includes("://")) uri = "vod-live://" + uri;
  const body = {uri: uri, localStreamName: $("startName").value.trim() || uri,
                loop: $("startLoop").checked};
  $("startError").textContent = "";
  try {
    const answer = await rest("vod/startup", body);
    if (answer.status !== 200) {
      $("startError").textContent = (answer.data && answer.data.message) || `HTTP ${answer.status}`;
    }
  } catch (error) {
    if (!(error instanceof KeyNeeded)) $("startError").textContent = String(error);
  }
  refreshLive();
});

// --- player

const plot = new BitratePlot($("bitratePlot"), 60);
const player = new WcsPlayer({
  video: $("consoleVideo"),
  onStatus: (status, info) => {
    $("playStatus").textContent = status;
    $("playStatus").className = status;
    if (info !== undefined) $("playInfo").textContent = info || ""; // undefined: unchanged
    $("playBtn").textContent = ["CONNECTING", "ESTABLISHED", "PENDING", "PLAYING"]
      .includes(status) ? "Stop" : "Play";
  },
  onStats: (stats) => {
    $("statResolution").textContent = stats.width ? `${stats.width}×${stats.height}` : "—";
    $("statFps").textContent = stats.fps ? Math.round(stats.fps) + " fps" : "—";
    $("statBitrate").textContent = bits(stats.bitrate);
    $("statLost").textContent = String(stats.packetsLost || 0);
    $("statFreezes").textContent = String(stats.freezes || 0);
    plot.add(stats.bitrate || 0);
  },
});
function startPlay(name) {
  $("playName").value = name;
  player.stop();
  $("playerPanel").scrollIntoView({block: "nearest"});
  player.play(wsUrl, name, $("playProvider").value).catch((error) => {
    $("playStatus").textContent = "FAILED";
    $("playInfo").textContent = String(error);
  });
}

$("playForm").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("playBtn").textContent === "Stop") {
    player.stop();
  } else {
    startPlay($("playName").value.trim());
  }
});

// --- start

function refreshAll() {
  refreshLibrary();
  refreshLive();
}

fetch("config.json").then((r) => r.json()).then((config) => {
  player.rtcConfig = {iceServers: config.iceServers || []};
  const secure = location.protocol === "https:";
  wsUrl = (secure ? "wss://" : "ws://") + location.hostname + ":" +
    (secure ? config.wssPort : config.wsPort) + "/";
  const hlsPort = secure ? config.hlsSslPort : config.hlsPort;
  hlsBase = hlsPort ? `${location.protocol}//${location.hostname}:${hlsPort}` : "";
  sdkServed = Boolean(config.sdk);
  refreshAll();
  setInterval(refreshLive, LIVE_EVERY);
});
