"""Data: reading the lish-moa layout and generating a synthetic stand-in for it."""
