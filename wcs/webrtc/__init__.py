"""The WebRTC layer: the only part of wcsvod that imports aiortc."""
