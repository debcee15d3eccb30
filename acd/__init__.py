"""Automatic call distribution: queues, agents, routing strategies and the queue event log."""
