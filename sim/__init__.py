"""The tester's side of the simulated voice-card board: scripted callers and scenarios."""
