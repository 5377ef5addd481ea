"""mpm method package."""
