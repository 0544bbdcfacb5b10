"""oneDNN Linear layers for CPU inference: same numbers as nn.Linear, training untouched."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel

from core.engine.classifier import ClipClassifier
from core.engine.cpu_linear import OneDnnLinear, onednn_linear_available, use_onednn_linear

X86 = platform.machine().lower() in {"x86_64", "amd64"}


def test_available_on_x86_builds_with_onednn() -> None:
    if not (X86 and torch.backends.mkldnn.is_available()):
        pytest.skip("oneDNN Linear is used on x86 PyTorch builds only")
    assert onednn_linear_available()


def test_classifier_on_cpu_uses_onednn_and_keeps_plain_numbers(
    classifier: ClipClassifier, tiny_model_dir: Path
) -> None:
    if not onednn_linear_available():
        pytest.skip("no oneDNN Linear on this machine")
    assert any(isinstance(m, OneDnnLinear) for m in classifier.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in classifier.model.modules())
    plain = CLIPModel.from_pretrained(tiny_model_dir).eval()
    pixels = torch.rand(5, 3, classifier.input_size, classifier.input_size)
    tokens = classifier.processor.tokenizer(
        ["a photo of a cat.", "a red shoe"], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        fast_images = classifier.model.get_image_features(pixel_values=pixels).pooler_output
        plain_images = plain.get_image_features(pixel_values=pixels).pooler_output
        fast_text = classifier.model.get_text_features(**tokens).pooler_output
        plain_text = plain.get_text_features(**tokens).pooler_output
    torch.testing.assert_close(fast_images, plain_images, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_text, plain_text, rtol=1e-5, atol=1e-5)


def _switched_layer() -> OneDnnLinear:
    torch.manual_seed(0)
    holder = torch.nn.Sequential(torch.nn.Linear(16, 8))
    assert use_onednn_linear(holder) == (1 if onednn_linear_available() else 0)
    if not onednn_linear_available():
        pytest.skip("no oneDNN Linear on this machine")
    return holder[0]


def test_training_goes_through_plain_linear_and_gets_gradients() -> None:
    layer = _switched_layer()
    x = torch.randn(4, 16, requires_grad=True)
    out = layer(x)
    assert torch.equal(out, torch.nn.functional.linear(x, layer.weight, layer.bias))
    out.sum().backward()
    assert layer.weight.grad is not None and x.grad is not None


def test_inference_path_matches_linear_and_autocast_falls_back() -> None:
    layer = _switched_layer()
    x = torch.randn(2, 7, 16)
    with torch.inference_mode():
        torch.testing.assert_close(
            layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias)
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16


def test_saved_weights_are_unchanged(classifier: ClipClassifier, tmp_path: Path) -> None:
    classifier.model.save_pretrained(tmp_path)
    reloaded = CLIPModel.from_pretrained(tmp_path)
    assert all(type(m) is not OneDnnLinear for m in reloaded.modules())
    original = classifier.model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
