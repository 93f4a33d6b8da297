"""Models the controller learns from what it observes: pure, with their state as plain data.

Each learner has the same shape: `observe(state, now, observation) -> state` folds one tick's
readings into the model, and `recommend(state, ...)` answers with a value, how confident the
model is, and the reason in plain words. The state is a named tuple of numbers, saved and
restored with the engine state, so a restarted controller knows what it had learned.
"""
