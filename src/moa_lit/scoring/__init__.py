"""Scoring: the competition metric and a run's score report."""
