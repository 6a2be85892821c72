"""tamiyo.learner."""
