"""A run folder: the one place that knows its files (names, atomic writes, the manifest, settings and fingerprint, finished folds)."""
