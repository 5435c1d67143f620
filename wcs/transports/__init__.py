"""Transports: how streams reach pages and disks. ``interfaces`` is what front
doors program against; ``factory`` makes the real ones (WebRTC, MSE, recording)."""
