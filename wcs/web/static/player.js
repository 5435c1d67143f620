// The project's own small player: plain JS speaking the same WCS protocol as
// the Flashphoner Web SDK (connection, playStream, setRemoteSDP, statuses).
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let pc = null;
let current = null;

function setStatus(status, info) {
  $("status").textContent = status;
  $("status").className = status;
  if (info !== undefined) $("info").textContent = info || "";
}

function uuid() {
  return crypto.randomUUID ? crypto.randomUUID() :
    "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx".replace(/x/g, () => (Math.random() * 16 | 0).toString(16));
}

function send(message, data) {
  socket.send(JSON.stringify({message: message, data: [data]}));
}

function closePeer() {
  if (pc) pc.close();
  pc = null;
}

function idle() {
  $("playBtn").textContent = "Start";
  $("playBtn").disabled = false;
  current = null;
  closePeer();
}

async function play(name) {
  pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("audio", {direction: "recvonly"});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.ontrack = (event) => {
    const video = $("video");
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(event.track);
  };
  $("video").srcObject = null;
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  current = {mediaSessionId: uuid(), name: name, published: false, hasVideo: true,
             hasAudio: true, status: "PENDING", record: false, mediaProvider: "WebRTC"};
  send("playStream", Object.assign({sdp: offer.sdp}, current));
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  const data = message.data || [];
  switch (message.message) {
    case "ping":
      send("pong", null);
      break;
    case "getUserData":
      setStatus("ESTABLISHED", "");
      play($("streamName").value.trim()).catch((error) => { setStatus("FAILED", String(error)); idle(); });
      break;
    case "setRemoteSDP":
      if (pc && current && data[0] === current.mediaSessionId) {
        pc.setRemoteDescription({type: "answer", sdp: data[1]})
          .catch((error) => setStatus("FAILED", String(error)));
      }
      break;
    case "notifyStreamStatusEvent": {
      const event = data[0] || {};
      if (!current || event.mediaSessionId !== current.mediaSessionId) break;
      current.status = event.status;
      setStatus(event.status, event.info);
      if (event.status === "PLAYING") {
        $("playBtn").textContent = "Stop";
        $("playBtn").disabled = false;
      } else if (["STOPPED", "FAILED"].includes(event.status)) {
        idle();
      }
      break;
    }
    case "fail":
      $("info").textContent = (data[0] && data[0].info) || "";
      break;
  }
}

function start() {
  $("playBtn").disabled = true;
  setStatus("CONNECTING", "");
  if (socket && socket.readyState === WebSocket.OPEN && socket.url === new URL($("url").value).href) {
    play($("streamName").value.trim());
    return;
  }
  if (socket) socket.close();
  socket = new WebSocket($("url").value);
  socket.onopen = () => send("connection", {appKey: "defaultApp", mediaProviders: ["WebRTC"],
                                            clientVersion: "2.0"});
  socket.onmessage = onMessage;
  socket.onclose = () => { setStatus("DISCONNECTED"); idle(); socket = null; };
}

function stop() {
  $("playBtn").disabled = true;
  if (current) send("stopStream", current);
  closePeer();
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (current) stop(); else start();
});

fetch("config.json").then((r) => r.json()).then((config) => {
  const secure = location.protocol === "https:";
  const port = secure ? config.wssPort : config.wsPort;
  $("url").value = (secure ? "wss://" : "ws://") + location.hostname + ":" + port + "/";
  const name = new URLSearchParams(location.search).get("streamName");
  if (name) $("streamName").value = name;
});
