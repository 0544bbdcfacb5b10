"""The HTTP API: the same engine, label sets and bulk jobs as the pages and the command line,
for other programs (FastAPI under uvicorn, `python -m core serve`).

May import: top, labels, engine, fetch, embeddings, bulk, training (and api itself).

- app: the FastAPI application (routers, error handling, limits, the loaded model);
- security: bearer keys (CLIPLAB_API_KEYS) and where the server may listen;
- limits: bounded request bodies and a bounded number of requests in flight;
- model: the model, loaded once in the background, and the micro-batcher that runs it;
- one module per group of endpoints.
"""
