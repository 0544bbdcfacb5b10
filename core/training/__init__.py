"""Training: labelled data (one or more attributes, optional product text), linear probes and
contrastive CLIP fine-tuning, the fine-tune job folder and its background run, and the metrics
that judge a model against zero-shot.

May import: core's top-level modules, labels, engine, fetch and bulk (CSV input). Never cli.
"""
