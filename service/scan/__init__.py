"""Scanning: walker, probers, scan job handler, library store."""
