"""Sampling backends and the keyed, append-only sample store they write to."""
