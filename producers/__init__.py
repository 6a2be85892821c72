"""tamiyo.producers."""
