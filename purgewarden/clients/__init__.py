"""Typed async clients for the three vendor APIs; every failure is an `ApiError`."""
