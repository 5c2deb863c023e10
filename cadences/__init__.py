"""Cadences: the conversations Cadence holds with reps, and the grammar they type."""
