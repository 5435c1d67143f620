"""Who may connect, play, publish and download records: the operator's
backend asked over REST hooks, signed play tokens, or both (the gate)."""
