"""wcsvod: Flashphoner WCS-compatible VOD over WebRTC, on Twisted."""

__version__ = "0.1.0"
