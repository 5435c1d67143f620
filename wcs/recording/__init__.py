"""Recording: a subscriber that writes a stream to an MP4 in the media folder."""
