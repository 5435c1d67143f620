"""Driving the SDK's unchanged demo pages (and our own) in Chromium."""

from __future__ import annotations

PLAYER = "/client2/examples/demo/streaming/player/player.html"
HLS_JS = "/client2/examples/demo/streaming/hls-js-player/hls-js-player.html"
VIDEO = "#remoteVideo video"


def open_player(page, server, stream_name: str, query: str = "", url: str = "") -> None:
    """The SDK's player page playing ``stream_name`` from ``server`` (through
    ``url`` if given: a :class:`testkit.workers.Steering` relay, say)."""
    page.goto(f"{server.http_url}{PLAYER}?streamName={stream_name}{query}")
    page.fill("#url", url or server.ws_url)
    page.click("#playBtn")


def open_hls_js(page, server, stream_name: str, query: str = "") -> dict:
    """The SDK's hls.js page playing ``stream_name`` from ``server``'s HLS port;
    returns the video's state once it shows a picture."""
    page.goto(server.http_url + HLS_JS + query)
    page.wait_for_selector("#urlServer")
    page.fill("#urlServer", server.hls_url)
    page.fill("#playStream", stream_name)
    page.click("#applyBtn")
    return wait_video(page, "#remoteVideo", timeout_ms=20000)


def wait_status(page, wanted: str, timeout_ms: int = 15000) -> list[str]:
    """Wait until #status has shown ``wanted`` (at any time), return all it showed."""
    try:
        page.wait_for_function(
            "wanted => window.__statuses.includes(wanted)", arg=wanted, timeout=timeout_ms)
    except Exception as error:
        statuses = page.evaluate("window.__statuses")
        info = page.inner_text("#info") if page.query_selector("#info") else ""
        raise AssertionError(f"status {wanted} not shown; saw {statuses}, info {info!r}") from error
    return page.evaluate("window.__statuses")


def video_state(page, selector: str = VIDEO) -> dict:
    return page.evaluate("""selector => {
        const v = document.querySelector(selector);
        if (!v) return null;
        const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
        if (v.__waits === undefined) {  // times it ran out of media, from the first look
            v.__waits = 0;
            v.addEventListener('waiting', () => { v.__waits += 1; });
        }
        let ahead = 0;  // media buffered past the playhead (MSE; none for WebRTC)
        for (let i = 0; i < v.buffered.length; i++) {
            if (v.buffered.start(i) <= v.currentTime && v.currentTime <= v.buffered.end(i)) {
                ahead = v.buffered.end(i) - v.currentTime;
            }
        }
        return {width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
                frames: q.totalVideoFrames || 0, paused: v.paused, ahead: ahead,
                waits: v.__waits};
    }""", selector)


def wait_video(page, selector: str = VIDEO, timeout_ms: int = 10000) -> dict:
    page.wait_for_function("""selector => {
        const v = document.querySelector(selector);
        return v && v.videoWidth > 0 && v.currentTime > 0;
    }""", arg=selector, timeout=timeout_ms)
    return video_state(page, selector)


def inbound_video_stats(page) -> dict:
    """Chromium's own receive figures for the page's last peer connection."""
    return page.evaluate("""async () => {
        const pc = window.__pcs[window.__pcs.length - 1];
        const report = await pc.getStats();
        for (const s of report.values()) {
            if (s.type === 'inbound-rtp' && s.kind === 'video') {
                return {framesDecoded: s.framesDecoded, framesReceived: s.framesReceived,
                        framesDropped: s.framesDropped, freezeCount: s.freezeCount,
                        totalFreezesDuration: s.totalFreezesDuration,
                        keyFramesDecoded: s.keyFramesDecoded, pliCount: s.pliCount,
                        decoder: s.decoderImplementation};
            }
        }
        return null;
    }""")


def inbound_stats(page) -> dict:
    """Chromium's receive figures for audio and video of the page's last peer connection."""
    return page.evaluate("""async () => {
        const pc = window.__pcs[window.__pcs.length - 1];
        const out = {};
        for (const s of (await pc.getStats()).values()) {
            if (s.type === 'inbound-rtp') {
                out[s.kind] = {packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,
                               jitterBufferDelay: s.jitterBufferDelay,
                               jitterBufferEmittedCount: s.jitterBufferEmittedCount,
                               framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
                               freezeCount: s.freezeCount,
                               totalSamplesReceived: s.totalSamplesReceived,
                               concealedSamples: s.concealedSamples};
            }
        }
        return out;
    }""")


def frame_number(page, selector: str = VIDEO) -> int:
    """The barcode frame number of the picture the page shows now."""
    return page.evaluate("""selector => {
        const v = document.querySelector(selector);
        const canvas = document.createElement('canvas');
        canvas.width = v.videoWidth;
        canvas.height = v.videoHeight;
        const g = canvas.getContext('2d');
        g.drawImage(v, 0, 0);
        // (tools/makemedia.py's BARCODE: a sixteenth of the width a block, scaled)
        const row = g.getImageData(0, Math.floor(canvas.height * 16 / 360), canvas.width, 1).data;
        let n = 0;
        for (let bit = 0; bit < 16; bit++) {
            if (row[Math.floor((2 * bit + 1) * canvas.width / 32) * 4] > 128) n |= 1 << bit;
        }
        return n;
    }""", selector)


def jitter_buffer(page) -> tuple[float, int]:
    """Chromium's running sums for the page's last peer connection's video: the
    seconds its frames spent in the jitter buffer, and how many came out."""
    video = inbound_stats(page).get("video") or {}
    return video.get("jitterBufferDelay") or 0.0, video.get("jitterBufferEmittedCount") or 0


def frame_differences(first, second, readings: int = 7, fps: float = 30.0,
                      as_received: bool = False) -> list[int]:
    """How many frames apart two pages' pictures are, read every 0.2 s.

    Each reading takes a round trip to the browser (more on a loaded machine),
    so the first page is read before and after the second and the second is
    compared with the mean of the two: the time the reading itself took is
    not counted as the pages' difference. ``as_received`` (WebRTC pages) adds to
    each page's picture the frames its jitter buffer holds back (its mean delay
    over the readings): how far apart the frames are that each page receives,
    which is what the servers decide (a page that joined with a burst, or on a
    loaded machine, buffers more, and each browser chooses its own delay)."""
    import time

    held = [jitter_buffer(page) for page in (first, second)] if as_received else []
    shown = []
    for _ in range(readings):
        before = frame_number(first)
        middle = frame_number(second)
        after = frame_number(first)
        shown.append(middle - (before + after) / 2)
        time.sleep(0.2)
    correction = 0.0
    if as_received:
        delays = []
        for page, (delay0, count0) in zip((first, second), held, strict=True):
            delay1, count1 = jitter_buffer(page)
            delays.append((delay1 - delay0) / (count1 - count0) if count1 > count0 else 0.0)
        correction = (delays[1] - delays[0]) * fps
    return [round(abs(difference + correction)) for difference in shown]
