"""Wiring: settings, the CLI, the process supervisor, the API and persistence."""
