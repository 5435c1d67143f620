"""Headless Debian Chromium as the tests and benchmarks start it, and a script
that records what the SDK's pages show."""

from __future__ import annotations

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]

# Records every text the page's #status shows, so transient states can be asserted.
STATUS_RECORDER = """
window.__statuses = [];
window.__statusTimes = [];
window.__firstFrameAt = null;
window.__playSent = null;
window.__pcs = [];
(() => {
  // when the page asked for a stream, by the page's own clock
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.includes('"playStream"')) {
      window.__playSent = performance.now();
      // the socket and id of the last play, for a test to send what a page could
      window.__playSocket = this;
      try { window.__playId = JSON.parse(data).data[0].mediaSessionId; } catch (e) { /* */ }
    }
    return send.apply(this, arguments);
  };
})();
(() => {
  // when the first video frame is presented, by the page's own clock
  const hook = () => {
    const video = document.querySelector('#remoteVideo video, video');
    if (video && video.requestVideoFrameCallback && !video.__hooked) {
      video.__hooked = true;
      video.requestVideoFrameCallback((now) => { window.__firstFrameAt = now; });
    }
    if (window.__firstFrameAt === null) setTimeout(hook, 5);
  };
  document.addEventListener('DOMContentLoaded', hook);
})();
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  const Wrapped = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  Wrapped.prototype = Native.prototype;
  const setRemote = Native.prototype.setRemoteDescription;
  window.__remoteSdps = [];
  Native.prototype.setRemoteDescription = function (description) {
    window.__remoteSdps.push(description && description.sdp);
    return setRemote.apply(this, arguments);
  };
  Object.setPrototypeOf(Wrapped, Native);
  window.RTCPeerConnection = Wrapped;
})();
document.addEventListener('DOMContentLoaded', () => {
  const status = document.getElementById('status');
  if (!status) return;
  new MutationObserver(() => {
    const text = status.textContent.trim();
    if (text && window.__statuses[window.__statuses.length - 1] !== text) {
      window.__statuses.push(text);
      window.__statusTimes.push(performance.now());
    }
  }).observe(status, {childList: true, characterData: true, subtree: true});
});
"""


def recorded_page(browser):  # type: ignore[no-untyped-def]
    """A page in a browser context of its own that records its statuses (as
    the tests' ``page`` does): ``page.context`` is closed by whoever asked."""
    context = browser.new_context()
    context.add_init_script(STATUS_RECORDER)
    return context.new_page()
