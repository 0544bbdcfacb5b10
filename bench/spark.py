"""Bulk labelling on Spark in local mode against the single-machine pipeline, on one machine.

The same loopback images (served by bench/bulk.py's image server in its own process) and a CLIP
with the real ViT-B/32 shapes and tokenizer (random weights), 196 categories. For each variant:
  single   core.bulk.pipeline in this process (torch on every core), the label embeddings on disk;
  local[N] a Spark session with N Python workers, one torch thread each: the session's start-up,
           a first job (the workers import torch and transformers and load the model: a fixed
           cost) and a second job of new URLs on the same session (the workers are warm).
Images/s count the images labelled over the job's wall time, including writing its Parquet
output. Variants run in alternating rounds (the machine's speed drifts); ratios are against the
single-machine pipeline of the same round.

    python bench/spark.py [--images 1000] [--rounds 1] [--masters local[1] local[2]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bulk import ImageServerProcess, build_model, categories, run_pipeline  # noqa: E402
from bench.random_clip import add_config_dir_argument, temporary_folder  # noqa: E402
from core.bulk.jobs import JobSpec, default_batch_size  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engine.loading import quiet_library_logging  # noqa: E402
from core.labels.label_set import LabelSet  # noqa: E402
from core.spark.bulk_job import SparkBulkJob  # noqa: E402
from core.spark.input_frame import read_input  # noqa: E402
from core.spark.outputs import OutputPaths  # noqa: E402
from core.spark.session import start_session, stop_session  # noqa: E402


def worker_rss_mb() -> dict[int, float]:
    """Resident memory (MB) of each Spark Python worker process on this machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"pyspark.daemon" not in command and b"pyspark.worker" not in command:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[int(entry.name)] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return found


class WorkerMemory:
    """The largest resident memory of any one Spark Python worker while active."""

    def __enter__(self) -> WorkerMemory:
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max([self.peak, *worker_rss_mb().values()])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def spark_variant(master: str, args, classifier, folder: Path, server, labels, work: Path) -> dict:
    """Session start-up, first job and warm second job on `master`: seconds and images/s."""
    scratch = work / f"spark-{master.strip('[]*').replace('[', '-')}-{time.monotonic_ns()}"
    settings = Settings(
        model=str(folder), device="cpu", data_dir=scratch / "data", allow_private_urls=True
    )
    started = time.perf_counter()
    spark = start_session(master, scratch)
    spark.range(1).count()  # the session is usable
    figures = {"session_s": time.perf_counter() - started}
    try:
        for job_name, offset in (("first", 10_000_000), ("second", 20_000_000)):
            urls = server.urls(args.images, offset + time.monotonic_ns() % 1_000_000)
            source = scratch / f"{job_name}.csv"
            pd.DataFrame({"sku": range(len(urls)), "image_url": urls}).to_csv(source, index=False)
            spec = JobSpec(
                str(source), "image_url", (LabelSet("category", tuple(labels)),), str(folder),
                batch_size=args.batch_size, workers=args.workers,
            )
            began = time.perf_counter()
            with WorkerMemory() as memory:
                data = read_input(spark, str(source))
                job = SparkBulkJob(spark, spec, settings, classifier, args.partitions)
                run = job.run(data.frame, tuple(data.info.columns), data.info.rows,
                              OutputPaths(str(scratch / f"{job_name}.parquet")))
            assert run.failed == 0, run
            figures[f"{job_name}_s"] = time.perf_counter() - began
            figures["worker_mb"] = max(figures.get("worker_mb", 0.0), memory.peak)
    finally:
        stop_session(spark)
    figures["rate"] = args.images / figures["second_s"]
    figures["first_fixed_s"] = figures["first_s"] - figures["second_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    parser.add_argument("--partitions", type=int, default=8, help="Spark partitions per job")
    parser.add_argument("--batch-size", type=int, default=default_batch_size("cpu"))
    parser.add_argument("--workers", type=int, default=16, help="download threads per worker")
    add_config_dir_argument(parser)
    args = parser.parse_args()
    quiet_library_logging()
    work = temporary_folder("bench-spark-")
    classifier, folder = build_model(args.config_dir, work)
    labels = categories(196)
    classifier.encode_labels(labels)  # on disk for the single-machine job, as for a later job
    server = ImageServerProcess(0)
    results: dict[str, list[dict]] = {"single": [], **{m: [] for m in args.masters}}
    for round_number in range(args.rounds):
        offset = 1_000_000 * (round_number + 1)
        rate = run_pipeline(
            classifier, server.urls(args.images, offset), labels, work, args.batch_size,
            args.workers, labels_on_disk=True,
        )[0]
        results["single"].append({"rate": rate})
        print(f"round {round_number + 1}: single {rate:.1f} img/s", flush=True)
        for master in args.masters:
            figures = spark_variant(master, args, classifier, folder, server, labels, work)
            figures["ratio"] = figures["rate"] / rate
            results[master].append(figures)
            print(f"round {round_number + 1}: {master} {figures}", flush=True)
    server.stop()
    print_table(results, args)


def print_table(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    """Medians over the rounds, as a Markdown table."""
    single = statistics.median(r["rate"] for r in results["single"])
    print(
        f"\n{args.images} images, 196 categories, batch {args.batch_size}, {args.partitions} "
        f"partitions, {args.rounds} round(s), medians\n"
        "| variant | session start s | first job s | first-job fixed cost s | warm img/s "
        "| / single | peak MB per worker |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"| single machine | - | - | - | {single:.1f} | 1.00 | - |"
    )
    for master, rows in results.items():
        if master == "single":
            continue
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"| Spark {master} | {med['session_s']:.1f} | {med['first_s']:.1f} "
            f"| {med['first_fixed_s']:.1f} | {med['rate']:.1f} | {med['ratio']:.2f} "
            f"| {med['worker_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
