"""HLS: streams cut into MPEG-TS segments for players that fetch them over HTTP."""
