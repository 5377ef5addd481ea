"""hepjepa method package."""
