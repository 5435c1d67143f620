"""Stream lifecycles: names, ids, statuses, viewers, timeouts.

Knows nothing of JSON, HTTP or SDP; front doors ask it for streams and
subscribe whatever transports they own.
"""
