"""Cold start of `python -m core predict` against a minimal transformers script doing the same job.

Both are timed as whole new processes (interpreter start, imports, model load, one image scored
against ~10 labels, top 5 printed), so everything the command line adds on top of transformers
shows up: its own imports, settings, label-set parsing, extra load-time work and the disk cache
of label embeddings. The model is a CLIP with random weights and the real ViT-B/32 shapes and
tokenizer (bench/random_clip.py), saved to a temporary folder; the image is an 800x800 JPEG.

Each round runs, in this order (the order rotates from round to round so that neither side always
goes first):

  minimal      the transformers script (CLIPModel/CLIPProcessor.from_pretrained, one forward
               pass of the image and all prompts, softmax, top 5), under torch.inference_mode
  cold cache   python -m core predict IMG --labels LABELS.txt --model FOLDER, with a fresh
               CLIPLAB_DATA_DIR (no label embeddings on disk: the text tower runs)
  warm cache   the same command with a CLIPLAB_DATA_DIR kept across runs (label embeddings read
               from the disk cache; primed once before timing)

All runs get HF_HUB_OFFLINE=1 and their CLIPLAB_DATA_DIR; the product runs with cwd at the
project root. The machine may be shared, so the figures to trust are the medians of the per-round
ratios product/minimal, taken between runs seconds apart.

    python bench/startup.py [--rounds 10] [--no-warm] [--model-dir DIR] [--baseline DIR]
                            [--config-dir ../shared/data/clip-vit-b32-tokenizer]

--baseline DIR adds the same two product variants run from another checkout of the project
(e.g. `git worktree add /tmp/before <commit>`), so a before/after comparison is made in the same
rounds, seconds apart.

--model-dir keeps (or reuses) the saved model there instead of building it in a folder removed
at exit, so repeated runs skip the ~20 s build.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_clip import (  # noqa: E402
    add_config_dir_argument,
    save_random_clip,
    temporary_folder,
)

PROJECT = Path(__file__).resolve().parent.parent
LABELS = (
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
TOP_K = 5

MINIMAL_SCRIPT = '''\
"""Minimal transformers zero-shot CLIP: python minimal.py MODEL_FOLDER IMAGE LABELS.txt"""
import sys

import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

folder, image_path, labels_path = sys.argv[1:4]
labels = [line.strip() for line in open(labels_path, encoding="utf-8") if line.strip()]
model = CLIPModel.from_pretrained(folder).eval()
processor = CLIPProcessor.from_pretrained(folder)
image = Image.open(image_path).convert("RGB")
inputs = processor(
    text=[f"a photo of a {label}." for label in labels],
    images=image,
    return_tensors="pt",
    padding=True,
)
with torch.inference_mode():
    probs = model(**inputs).logits_per_image.softmax(-1)[0]
    for score, index in zip(*probs.topk(TOP_K)):
        print(f"{labels[index]}\\t{score.item():.4f}")
'''.replace("TOP_K", str(TOP_K))


def build_model(config_dir: Path, model_dir: Path | None) -> Path:
    """The saved random ViT-B/32: reused from `model_dir` when it holds one, else built there
    (or in a temporary folder removed at exit when `model_dir` is None)."""
    if model_dir is not None and (model_dir / "config.json").is_file():
        return model_dir
    folder = model_dir or temporary_folder("bench-startup-model-") / "model"
    print(f"building the random ViT-B/32 in {folder} ...", flush=True)
    return save_random_clip(config_dir, folder)


def write_inputs(work: Path) -> tuple[Path, Path, Path]:
    """An 800x800 JPEG, a labels .txt and the minimal script, written into `work`."""
    from PIL import Image

    image_path = work / "product.jpg"
    gradient = Image.linear_gradient("L").resize((800, 800))
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180))).save(
        image_path, quality=90
    )
    labels_path = work / "labels.txt"
    labels_path.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    script_path = work / "minimal.py"
    script_path.write_text(MINIMAL_SCRIPT, encoding="utf-8")
    return image_path, labels_path, script_path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(
    command: list[str], cwd: Path, data_dir: Path, bytecode: bool = False
) -> tuple[float, float, str]:
    """Run `command` as a new process; its wall seconds (monotonic clock), its CPU seconds
    (user + system, all threads: steadier than wall time on a busy machine) and stdout. With
    `bytecode`, PYTHONDONTWRITEBYTECODE is dropped, so the project's modules are compiled once
    and cached, as a normal Python does (site-packages are compiled at install either way)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLIPLAB_DATA_DIR": str(data_dir)}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    cpu, started = _children_cpu(), time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds, cpu = time.monotonic() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, cpu, done.stdout


def top_labels(stdout: str) -> list[str]:
    """The ranked labels printed by either command (minimal: "label\\tscore"; product: its
    table "  1. label   12.34%  ###")."""
    ranked = []
    for line in stdout.splitlines():
        if "\t" in line:
            ranked.append(line.split("\t")[0])
        elif line.lstrip()[:1].isdigit() and ". " in line and "%" in line:
            ranked.append(line.split(". ", 1)[1].rsplit("%", 1)[0].rsplit(None, 1)[0].strip())
    return ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_dir_argument(parser)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (10)")
    parser.add_argument("--no-warm", action="store_true", help="leave out the warm-cache runs")
    parser.add_argument("--model-dir", type=Path, help="keep/reuse the saved model here")
    parser.add_argument("--baseline", type=Path, help="another checkout to time beside this one")
    parser.add_argument(
        "--cache-bytecode",
        action="store_true",
        help="let the children cache compiled modules (drop PYTHONDONTWRITEBYTECODE)",
    )
    args = parser.parse_args()

    model = build_model(args.config_dir, args.model_dir)
    work = temporary_folder("bench-startup-")
    image, labels, script = write_inputs(work)
    warm_dir = work / "data-warm"
    python = sys.executable
    product = [python, "-m", "core", "predict", str(image), "--labels", str(labels)]
    product += ["--model", str(model), "--top-k", str(TOP_K)]

    def fresh_dir() -> Path:
        return Path(tempfile.mkdtemp(prefix="data-", dir=work))

    variants: dict[str, tuple[list[str], Path, object]] = {
        "minimal": ([python, str(script), str(model), str(image), str(labels)], work, fresh_dir),
        "cold cache": (product, PROJECT, fresh_dir),
    }
    if not args.no_warm:
        variants["warm cache"] = (product, PROJECT, lambda: warm_dir)
    if args.baseline is not None:
        baseline_warm = work / "data-baseline-warm"
        variants["base cold"] = (product, args.baseline.resolve(), fresh_dir)
        if not args.no_warm:
            variants["base warm"] = (product, args.baseline.resolve(), lambda: baseline_warm)

    def run(name: str) -> tuple[float, float, str]:
        command, cwd, data_dir = variants[name]
        return run_timed(command, cwd, data_dir(), args.cache_bytecode)  # type: ignore[operator]

    # Untimed: page the model file in, prime the warm cache, and compare the outputs.
    outputs = {name: top_labels(run(name)[2]) for name in variants}
    same = all(ranked == outputs["minimal"] for ranked in outputs.values())
    print(f"top {TOP_K} labels " + ("agree" if same else f"DIFFER: {outputs}"))

    names = list(variants)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    header = "".join(f"{name:>12}" for name in names)
    ratios = "".join(f"{name + '/min':>16}" for name in names[1:])
    print(f"wall seconds, then CPU seconds (user+system), per round\n{'round':>5}{header}{ratios}")
    for index in range(args.rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            seconds, cpu_seconds, _ = run(name)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
        for kind, table in (("wall", wall), ("cpu", cpu)):
            row = "".join(f"{table[name][-1]:>12.3f}" for name in names)
            rel = "".join(f"{table[name][-1] / table['minimal'][-1]:>16.3f}" for name in names[1:])
            print(f"{index + 1 if kind == 'wall' else '':>5}{row}{rel}  {kind}", flush=True)
    for kind, table in (("wall", wall), ("CPU", cpu)):
        summarize(kind, table, args.rounds)


def summarize(kind: str, table: dict[str, list[float]], rounds: int) -> None:
    """Medians of one measure, and of the per-round ratios and differences to minimal."""
    print(f"\n{kind} time, medians over {rounds} rounds (s):")
    base = table["minimal"]
    for name, values in table.items():
        line = f"  {name:<11} {statistics.median(values):7.3f}"
        if name != "minimal":
            ratio = statistics.median([t / m for t, m in zip(values, base, strict=True)])
            extra = statistics.median([t - m for t, m in zip(values, base, strict=True)])
            line += (
                f"   median per-round ratio {ratio:.3f}   median difference {extra * 1000:+.0f} ms"
                f"   ratio of medians {statistics.median(values) / statistics.median(base):.3f}"
            )
        print(line)


if __name__ == "__main__":
    main()
