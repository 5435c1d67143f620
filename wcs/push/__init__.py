"""Streams sent on to RTMP servers: WCS's ``/push/*`` and ``rtmpUrl``."""
