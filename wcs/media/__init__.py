"""The media pipeline: sources, MP4 sample reading, pacing, AAC→Opus, fan-out.

It hands encoded samples to whoever subscribes and knows nothing of
WebSocket, REST or peer connections.
"""
