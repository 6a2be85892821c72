"""tamiyo.cli."""
