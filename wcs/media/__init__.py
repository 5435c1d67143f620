"""The media pipeline: MP4 reading, H.264 and AAC handling, pacing.

It turns an opened file into encoded samples on time, and knows nothing of
where the file came from, of streams and their subscribers, of WebSocket,
REST or peer connections.
"""
