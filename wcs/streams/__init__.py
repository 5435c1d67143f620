"""Stream lifecycles: names, ids, statuses, subscribers, timeouts.

Knows nothing of JSON, HTTP or SDP; front doors ask the registry for a
stream and attach the subscribers a transport factory makes for them.
"""
