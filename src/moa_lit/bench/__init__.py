"""Benchmark scripts (not tests): they print numbers measured on this machine."""
