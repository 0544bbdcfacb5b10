"""HTTP API latency and throughput under concurrent clients, with and without micro-batching,
against the model alone.

Serves generated ~800x800 JPEGs from bench/bulk.py's loopback image server (its own process, at
idle priority), builds a CLIP with the ViT-B/32 shapes and tokenizer (random weights), and runs
the API under uvicorn in a process of its own on 127.0.0.1. Clients are threads of this
process, one keep-alive connection each, in a closed loop (each sends its next request when the
last is answered): POST /v1/predict with the same 64 image URLs (in the server's image cache
after a warm-up round) and the same labels (encoded once, then cached). Printed for each
variant and number of clients: latency p50 and p95, requests/s, their ratio to the model-alone
rate (c) of bench/bulk.py (measured in this run before and after the API rounds, averaged),
and the mean images per forward pass.

Variants of the server:
  batched    as it runs: micro-batches of up to 16 images, waiting at most 5 ms, each run at
             its own size (not padded: a padded pass of 4 images cost as much as 16, and 8
             clients then reached only 0.23 of (c))
  unbatched  max_batch=1: one image per forward pass

    python bench/api.py [--clients 1 8 32] [--requests 48] [--categories 196]
                        [--variants batched unbatched] [--max-wait 0.005]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
from fastapi import Request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bulk import ImageServerProcess, build_model, categories, run_model_only  # noqa: E402
from bench.random_clip import add_config_dir_argument, temporary_folder  # noqa: E402
from core.engine.loading import quiet_library_logging  # noqa: E402

DISTINCT_URLS = 64
BATCHER_PATH = "/bench/batcher"
VARIANTS = ["batched", "unbatched"]


# ---------------------------------------------------------------- the server process


def serve_api(
    model: str, data_dir: Path, variant: str, max_wait: float, ports: multiprocessing.Queue
) -> None:
    """Runs in its own process: the API on the model in `model`, as `variant` says."""
    import uvicorn

    from core.api.app import create_app
    from core.api.model import MAX_BATCH, MAX_WAIT_SECONDS, MicroBatcher, ModelService
    from core.config import Settings

    quiet_library_logging()
    settings = Settings(model=model, device="cpu", data_dir=data_dir, allow_private_urls=True)
    service = ModelService(settings, max_batch=1 if variant == "unbatched" else MAX_BATCH)
    service.start()
    classifier = service.ready(600)
    if max_wait != MAX_WAIT_SECONDS:
        service.batcher.close()  # type: ignore[union-attr]
        service.batcher = MicroBatcher(classifier, service.max_batch, max_wait)
    app = create_app(settings, service)

    @app.get(BATCHER_PATH)
    def batcher_counts(request: Request) -> dict:
        batcher = request.app.state.service.batcher
        return {"passes": batcher.forward_passes, "images": batcher.images_encoded}

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


class ApiServerProcess:
    """The API in a process of its own (spawned: a fork would copy torch's thread pools)."""

    def __init__(self, model: Path, data_dir: Path, variant: str, max_wait: float) -> None:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        self.process = context.Process(
            target=serve_api, args=(str(model), data_dir, variant, max_wait, ports), daemon=True
        )
        self.process.start()
        self.base = f"http://127.0.0.1:{ports.get(timeout=600)}"
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        for _ in range(600):
            try:
                if httpx.get(f"{self.base}/v1/health").json().get("loaded"):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API server did not start")

    def batcher_counts(self) -> tuple[int, int]:
        found = httpx.get(self.base + BATCHER_PATH).json()
        return found["passes"], found["images"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()


# ---------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Round:
    clients: int
    p50: float  # seconds
    p95: float
    per_second: float
    images_per_pass: float


def run_clients(
    server: ApiServerProcess, urls: list[str], labels: list[str], clients: int, requests: int
) -> Round:
    """`requests` predicts (rounded to whole rounds) from `clients` closed-loop clients."""
    per_client = max(1, round(requests / clients))
    start = threading.Barrier(clients)
    spans: list[tuple[float, float]] = []
    failures: list[str] = []

    def client(number: int) -> None:
        with httpx.Client(base_url=server.base, timeout=120) as http:
            start.wait()
            for step in range(per_client):
                url = urls[(number * per_client + step) % len(urls)]
                began = time.perf_counter()
                response = http.post("/v1/predict", json={"image_url": url, "labels": labels})
                spans.append((began, time.perf_counter()))
                if response.status_code != 200:
                    failures.append(response.text)

    passes, images = server.batcher_counts()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    passes_after, images_after = server.batcher_counts()
    assert not failures, failures[:3]
    latencies = sorted(end - began for began, end in spans)
    wall = max(end for _, end in spans) - min(began for began, _ in spans)
    return Round(
        clients,
        statistics.median(latencies),
        latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        len(spans) / wall,
        (images_after - images) / max(1, passes_after - passes),
    )


# ---------------------------------------------------------------- main


def measure_variant(
    model: Path, work: Path, variant: str, urls: list[str], labels: list[str], args
) -> list[Round]:
    """Every number of clients on one server variant, after a warm-up round that fills the
    image cache, encodes the labels (or reads them from the disk cache) and warms the model."""
    server = ApiServerProcess(model, work / "data", variant, args.max_wait)
    try:
        run_clients(server, urls, labels, 8, len(urls))
        return [
            run_clients(server, urls, labels, clients, max(args.requests, 6 * clients))
            for clients in args.clients
        ]
    finally:
        server.stop()


def print_variant(variant: str, rounds: list[Round], ceiling: float) -> None:
    for found in rounds:
        print(
            f"| {variant} | {found.clients} | {found.p50 * 1000:.0f} | {found.p95 * 1000:.0f} "
            f"| {found.per_second:.1f} | {found.per_second / ceiling:.2f} "
            f"| {found.images_per_pass:.1f} |",
            flush=True,
        )


def print_targets(variant: str, rounds: list[Round], ceiling: float) -> None:
    by_clients = {found.clients: found for found in rounds}
    parts = [
        f"throughput at {n} clients / (c) = {by_clients[n].per_second / ceiling:.2f}"
        for n in by_clients
        if n >= 8
    ]
    if 1 in by_clients and 8 in by_clients:
        ratio = by_clients[8].p95 / by_clients[1].p50
        parts.append(f"p95 at 8 clients / p50 at 1 client = {ratio:.2f}")
    print(f"{variant}: " + "; ".join(parts) + " (targets: >= 0.8; <= 4)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=48, help="per round (at least 6/client)")
    parser.add_argument("--categories", type=int, default=196)
    parser.add_argument("--ceiling-images", type=int, default=256)
    parser.add_argument(
        "--max-wait", type=float, default=0.005, help="the batcher's wait, s (served: 0.005)"
    )
    parser.add_argument(
        "--variants", nargs="+", default=VARIANTS, choices=VARIANTS,
    )  # fmt: skip
    add_config_dir_argument(parser)
    args = parser.parse_args()
    quiet_library_logging()
    images = ImageServerProcess(0)  # forked before torch starts its threads
    work = temporary_folder("bench-api-")
    classifier, model = build_model(args.config_dir, work)
    labels = categories(args.categories)
    urls = images.urls(DISTINCT_URLS)
    ceiling_urls = images.urls(args.ceiling_images)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; ViT-B/32 shapes, random "
        f"weights; {args.categories} categories; {DISTINCT_URLS} distinct ~800x800 JPEGs",
        flush=True,
    )
    before = run_model_only(classifier, ceiling_urls, labels, 16)
    print(f"(c) model alone, batches of 16: {before:.1f} img/s", flush=True)
    results = {v: measure_variant(model, work, v, urls, labels, args) for v in args.variants}
    after = run_model_only(classifier, ceiling_urls, labels, 16)
    ceiling = (before + after) / 2
    print(f"(c) after: {after:.1f} img/s; mean {ceiling:.1f} img/s\n", flush=True)
    print("| variant | clients | p50 ms | p95 ms | requests/s | / (c) | images per pass |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant, rounds in results.items():
        print_variant(variant, rounds, ceiling)
    print()
    for variant, rounds in results.items():
        print_targets(variant, rounds, ceiling)
    images.stop()


if __name__ == "__main__":
    main()
