"""The CLIP model: loading a checkpoint, the image side (preprocessing, encoding) and the text side
(prompts, tokenizing, label embeddings and their disk cache), scoring, CPU kernels, probe heads and
the folders trained models live in.

May import: core's top-level modules and core.labels. Never fetch, bulk, training or cli.
"""
