"""CLIPLAB_PRECISION: float32, bfloat16 or float16 inference, chosen by setting."""

import pytest
import torch
from PIL import Image

from core.config import SettingsError, load_settings
from core.engine.device import resolve_dtype
from core.engine.loading import load_classifier
from tests.test_cli import run_cli

LABELS = ["sneakers", "handbag", "wristwatch"]


def test_the_setting_is_parsed_and_checked():
    assert load_settings({}).precision == "auto"
    assert load_settings({"CLIPLAB_PRECISION": " BF16 "}).precision == "bf16"
    with pytest.raises(SettingsError, match="CLIPLAB_PRECISION must be one of auto, fp32"):
        load_settings({"CLIPLAB_PRECISION": "fp8"})


def test_auto_is_half_on_cuda_and_float32_elsewhere():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("fp32", torch.device("cuda")) == torch.float32


def test_bf16_on_the_cpu_gives_float32_embeddings_close_to_fp32(tiny_model_dir, tmp_path):
    full = load_classifier(str(tiny_model_dir), "cpu", tmp_path / "cache", precision="fp32")
    brain = load_classifier(str(tiny_model_dir), "cpu", tmp_path / "cache", precision="bf16")
    assert brain.dtype == torch.bfloat16
    assert next(brain.model.parameters()).dtype == torch.bfloat16
    images = [Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (9, 9, 200))]
    a, b = full.encode_images(images), brain.encode_images(images)
    assert b.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    text_a, text_b = full.encode_labels(LABELS), brain.encode_labels(LABELS)
    assert torch.nn.functional.cosine_similarity(text_a, text_b).min() > 0.99
    # each precision keeps its own label embeddings on disk: they are not the same numbers
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    ranked = brain.predict_one(images[0], LABELS).ranked
    assert sum(item.score for item in ranked) == pytest.approx(1.0, abs=1e-3)


def test_the_command_line_runs_in_the_chosen_precision(app_env, tmp_path):
    from tests.images import image_bytes

    image = tmp_path / "red.png"
    image.write_bytes(image_bytes("PNG"))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS), encoding="utf-8")
    done = run_cli(
        "predict", str(image), "--labels", str(labels), env_extra={"CLIPLAB_PRECISION": "bf16"}
    )
    assert done.returncode == 0, done.stderr
    bad = run_cli(
        "predict", str(image), "--labels", str(labels), env_extra={"CLIPLAB_PRECISION": "x"}
    )
    assert bad.returncode == 1 and "CLIPLAB_PRECISION must be one of" in bad.stderr
