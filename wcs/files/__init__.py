"""The media folder's files for the operator: what the server would do with
each (``inspect``) and a copy that plays without re-encoding (``prepare``)."""
