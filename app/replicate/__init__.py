"""Replicate: the HTTP client, model input schemas as form fields, and the models Tessera ships with.

Plain modules with no Flask in them, so jobs, the CLI and tests use them directly.
"""
