"""omnijet method package."""
