"""WHEP and WHIP: WebRTC playback and ingest over plain HTTP (RFC 9725), a
front door beside the WebSocket that reaches the same stream requests."""
