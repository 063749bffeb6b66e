"""Engines: each a translator of the criteria IR (`circuits`) to one MPC framework."""
