"""tamiyo.consumers."""
