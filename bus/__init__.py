"""tamiyo.bus."""
