"""tamiyo.replay_store."""
