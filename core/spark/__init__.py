"""Apache Spark front ends over the same core functions: bulk labelling as a Spark job (each
executor's Python worker loads the model once and runs the bulk job's own RowStream over its
partitions) and fine-tuning under TorchDistributor. pyspark is optional
(requirements-spark.txt): without it, asking for Spark gives one sentence saying how to add it.

May import: core's top-level modules, labels, engine, fetch, embeddings, bulk and training.
Never api or cli.
"""
