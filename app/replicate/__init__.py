"""Replicate (a shared layer): the HTTP client, model input schemas as form fields, the presets
Tessera ships with, and the model catalog every area picks models from.

`client`, `schema` and `presets` are plain modules with no Flask in them, so jobs, the CLI and
tests use them directly; `catalog` (with its table in `models`) reads the app config and database.
Where to add things: a model Tessera ships → `presets`; how a schema becomes form fields →
`schema`; which models an area offers, or a model's kind → `catalog`.
"""
