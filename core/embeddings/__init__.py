"""Stored image embeddings: every labelled row's L2-normalised CLIP image embedding kept beside
a bulk job's results, aligned with the row index, with the identity of the model that made
them, so anything that needs only embeddings (re-labelling, search, duplicates, export) runs
without fetching or encoding an image again.

May import: core's top-level modules and core.engine. Never fetch, bulk, training or cli.
"""
