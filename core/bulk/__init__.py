"""Bulk jobs: CSV and folder input, job folders (spec, state, results), the streaming pipeline
that fetches, encodes and writes rows in order, the background runner, review and corrections,
and retrying failed rows.

May import: core's top-level modules, labels, engine and fetch. Never training or cli.
"""
