"""S3 source figures: time to first frame and the server's peak RSS for a 10 MB
and a 500 MB object on a real S3-compatible server on loopback (moto).

Run with ``scripts/bench.sh bench/s3_source.py`` (``--smoke``: a 2 MB and a 4 MB object,
2 s of play each, for the suite).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testkit.harness import ServerProcess, require_loopback_only, run
from testkit.procfs import peak_rss
from testkit.rtc_client import play
from testkit.s3 import (
    S3Server,
    s3_settings,
)
from tools.makemedia import concat, make_mp4


def main() -> None:
    smoke = "--smoke" in sys.argv[1:]
    require_loopback_only()
    folder = Path(tempfile.mkdtemp(prefix="wcsvod-s3-"))
    part = make_mp4(folder / "part.mp4", seconds=8 if smoke else 40, bitrate="2000k")
    if smoke:
        objects = {"2MB.mp4": part, "4MB.mp4": concat(part, 2, folder / "4MB.mp4")}
    else:
        objects = {"10MB.mp4": part, "500MB.mp4": concat(part, 50, folder / "500MB.mp4")}
    seconds = 2 if smoke else 10
    s3 = S3Server()
    try:
        s3.upload(objects)
        client = s3.client()
        for key in objects:
            started = time.monotonic()
            client.get_object(Bucket="media", Key=key, Range="bytes=1048576-2097151")["Body"].read()
            print(
                f"{key:>10}: moto itself answers a 1 MiB ranged GET in "
                f"{(time.monotonic() - started) * 1000:.0f} ms"
            )
        for key, path in objects.items():
            server = ServerProcess(
                Path(tempfile.mkdtemp()), {"media_dir": str(folder), **s3_settings(s3.url)}
            ).start()
            try:
                got = run(play(server.ws_url, f"vod://s3/media/{key}", stop_after=seconds))
                first = got.video[0][0] - got.play_sent
                log = server.log()
                at_start = int(re.search(r"playing after (\d+) bytes", log).group(1))
                time.sleep(0.5)
                total = re.search(r"closed after downloading (\d+) of", server.log())
                print(
                    f"{key:>10} ({path.stat().st_size / 1e6:.0f} MB): first frame "
                    f"{first * 1000:.0f} ms after playStream, header fetch "
                    f"{at_start / 2**20:.1f} MiB, {total and int(total.group(1)) / 2**20:.0f} "
                    f"MiB fetched in {seconds} s of play, peak RSS "
                    f"{peak_rss(server.process.pid) / 2**20:.0f} MiB"
                )
            finally:
                server.stop()
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
