"""Developer scripts: not part of the shipped package."""
