"""Reading, validating and caching the lish-moa input files."""
