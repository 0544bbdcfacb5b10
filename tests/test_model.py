"""The CLIP engine on the tiny random model: shapes, probabilities, ordering, caching, loading."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine.device import ModelLoadError, resolve_device
from core.engine.images import decode_image, to_rgb
from core.engine.loading import load_classifier
from core.engine.scores import rank_labels
from tests.images import encode, rotated_exif_bytes, two_tone

LABELS = ["sneakers", "handbag", "wristwatch", "dress"]


def solid(color, size=(48, 40)):
    return Image.new("RGB", size, color)


def test_image_embeddings_are_normalised_rows(classifier):
    images = [solid((255, 0, 0)), solid((0, 255, 0)), solid((0, 0, 255))]
    embeddings = classifier.encode_images(images, batch_size=2)
    assert embeddings.shape == (3, classifier.model.config.projection_dim)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_batching_does_not_change_embeddings(classifier):
    images = [solid((i * 40, 255 - i * 40, 90)) for i in range(5)]
    together = classifier.encode_images(images, batch_size=5)
    one_by_one = classifier.encode_images(images, batch_size=1)
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_label_embeddings_shape_and_norm(classifier):
    embeddings = classifier.encode_labels(LABELS)
    assert embeddings.shape == (len(LABELS), classifier.model.config.projection_dim)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(len(LABELS)), atol=1e-5)


def test_probabilities_sum_to_one_and_follow_clip_definition(classifier):
    images = [solid((255, 0, 0)), solid((0, 0, 255))]
    image_emb = classifier.encode_images(images)
    label_emb = classifier.encode_labels(LABELS)
    probs = classifier.probabilities(image_emb, label_emb)
    assert probs.shape == (2, len(LABELS))
    assert torch.allclose(probs.sum(dim=-1), torch.ones(2), atol=1e-5)
    expected = (classifier.logit_scale * image_emb @ label_emb.T).softmax(dim=-1)
    assert torch.allclose(probs, expected)


def test_classify_ranks_every_label_best_first(classifier):
    [ranked] = classifier.classify([solid((10, 120, 200))], LABELS)
    scores = [item.score for item in ranked]
    assert sorted(item.label for item in ranked) == sorted(LABELS)
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_rank_labels_orders_by_score_and_keeps_ties_in_input_order():
    ranked = rank_labels(["a", "b", "c", "d"], [0.1, 0.4, 0.1, 0.4])
    assert [item.label for item in ranked] == ["b", "d", "a", "c"]


def test_top_k_is_the_head_of_the_ranking(classifier):
    prediction = classifier.predict_one(solid((1, 2, 3)), LABELS)
    assert prediction.top(2) == prediction.ranked[:2]
    assert len(prediction.top(10)) == len(LABELS)


def test_same_input_gives_same_scores(tiny_model_dir):
    first = load_classifier(str(tiny_model_dir), "cpu").classify([two_tone()], LABELS)
    second = load_classifier(str(tiny_model_dir), "cpu").classify([two_tone()], LABELS)
    assert first == second


def test_text_encoder_runs_once_for_two_images_with_the_same_labels(fresh_classifier):
    first = fresh_classifier.predict_one(solid((255, 0, 0)), LABELS)
    second = fresh_classifier.predict_one(solid((0, 255, 0)), LABELS)
    assert fresh_classifier.text_encoder_calls == 1
    assert not first.labels_from_cache
    assert second.labels_from_cache


def test_clearing_the_label_cache_encodes_again(fresh_classifier):
    fresh_classifier.encode_labels(LABELS)
    assert fresh_classifier.has_label_embeddings(LABELS)
    fresh_classifier.clear_label_cache()
    assert not fresh_classifier.has_label_embeddings(LABELS)
    fresh_classifier.encode_labels(LABELS)
    assert fresh_classifier.text_encoder_calls == 2


def test_new_labels_or_templates_are_encoded_again(fresh_classifier):
    fresh_classifier.encode_labels(LABELS)
    fresh_classifier.encode_labels(LABELS + ["scarf"])
    fresh_classifier.encode_labels(LABELS, ["a product photo of a {}."])
    assert fresh_classifier.text_encoder_calls == 3


def test_template_ensembling_averages_normalised_embeddings(classifier):
    templates = ["a photo of a {}.", "a product photo of a {}, on a white background."]
    single = classifier.encode_labels(LABELS, templates[:1])
    other = classifier.encode_labels(LABELS, templates[1:])
    ensembled = classifier.encode_labels(LABELS, templates)
    assert not torch.allclose(single, ensembled, atol=1e-4)
    expected = torch.nn.functional.normalize((single + other) / 2, dim=-1)
    assert torch.allclose(ensembled, expected, atol=1e-5)


def test_labels_with_braces_are_inserted_literally(classifier):
    assert classifier.encode_labels(["{x}", "a{}b"]).shape[0] == 2


def test_empty_labels_or_templates_are_refused(classifier):
    with pytest.raises(ValueError):
        classifier.encode_labels([])
    with pytest.raises(ValueError):
        classifier.encode_labels(LABELS, [])


def test_rgba_on_transparency_scores_like_the_same_picture_on_white(classifier):
    rgba = Image.new("RGBA", (48, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 10, 30, 30))
    on_white = Image.new("RGB", (48, 40), (255, 255, 255))
    on_white.paste((255, 0, 0), (10, 10, 30, 30))
    decoded = decode_image(encode(rgba))
    assert torch.allclose(
        classifier.encode_images([decoded]), classifier.encode_images([on_white]), atol=1e-5
    )


@pytest.mark.parametrize("mode", ["P", "CMYK", "LA", "I;16"])
def test_any_mode_can_be_classified(classifier, mode):
    base = Image.new("RGB", (40, 40), (120, 60, 200))
    img = base.convert("I").convert("I;16") if mode == "I;16" else base.convert(mode)
    [ranked] = classifier.classify([to_rgb(img)], LABELS)
    assert sum(item.score for item in ranked) == pytest.approx(1.0, abs=1e-5)


def test_exif_rotated_photo_scores_like_the_upright_one(classifier):
    upright = two_tone((60, 40)).rotate(-90, expand=True)
    decoded = decode_image(rotated_exif_bytes(two_tone((60, 40))))
    assert decoded.size == upright.size
    a = classifier.encode_images([decoded])
    b = classifier.encode_images([upright])
    sideways = classifier.encode_images([two_tone((60, 40))])
    assert (a @ b.T).item() > (a @ sideways.T).item()


def test_cpu_model_runs_in_full_precision_and_eval_mode(classifier):
    assert classifier.device.type == "cpu"
    assert classifier.dtype == torch.float32
    assert not classifier.model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_runs_in_half_precision(tiny_model_dir):
    gpu = load_classifier(str(tiny_model_dir), "cuda")
    assert gpu.dtype == torch.float16
    cpu = load_classifier(str(tiny_model_dir), "cpu")
    images = [solid((200, 10, 10))]
    assert torch.allclose(gpu.encode_images(images), cpu.encode_images(images), atol=2e-2)


def test_auto_device_falls_back_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_asking_for_a_missing_device_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="CLIPLAB_DEVICE"):
        resolve_device("cuda")


def test_missing_local_folder_names_the_model(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as error:
        load_classifier(str(missing))
    assert str(missing) in str(error.value)
    assert "does not exist" in str(error.value)


def test_folder_without_checkpoint_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="not a saved CLIP checkpoint"):
        load_classifier(str(tmp_path))


def test_non_clip_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="'bert' model, not a CLIP model"):
        load_classifier(str(tmp_path))


def test_unreachable_hub_model_says_what_to_do():
    with pytest.raises(ModelLoadError) as error:
        load_classifier("someone/clip-that-is-not-downloaded")
    message = str(error.value)
    assert "someone/clip-that-is-not-downloaded" in message
    assert "CLIPLAB_MODEL" in message and "network" in message
    assert "\n" not in message


def test_checkpoint_without_processor_files_is_explained(tiny_model_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match="tokenizer/processor"):
        load_classifier(str(tmp_path))


def test_corrupt_weights_are_explained(tiny_model_dir, tmp_path):
    for path in tiny_model_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(ModelLoadError, match="weights or tokenizer/processor files"):
        load_classifier(str(tmp_path))


def test_a_model_in_the_hub_cache_loads_without_contacting_the_hub(
    tiny_model_dir, tmp_path, image_server
):
    """Offline users with a downloaded model must not wait for the hub's retries."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    snapshot = tmp_path / "hf" / "hub" / "models--shop--tiny-clip" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for path in tiny_model_dir.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=image_server.base)
    code = (
        "from core.engine.loading import load_classifier; "
        "print(load_classifier('shop/tiny-clip').name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "shop/tiny-clip"
    # huggingface_hub may still ask the endpoint for its agent-detection registry (best-effort
    # telemetry, 3 s timeout); what matters is that no model file is requested.
    assert [path for path in image_server.hits if "tiny-clip" in path] == []


def test_a_folder_under_the_home_directory_can_be_given_with_a_tilde(
    tiny_model_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tiny_model_dir.parent))
    loaded = load_classifier(f"~/{tiny_model_dir.name}", "cpu")
    assert loaded.name == f"~/{tiny_model_dir.name}"


@pytest.mark.parametrize("size", [(400, 400), (800, 533), (533, 800), (100, 37), (225, 1001)])
def test_fast_preprocessing_equals_transformers(size):
    from transformers import CLIPImageProcessor

    from core.engine.clip_transform import standard_clip_transform

    processor = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    transform = standard_clip_transform(processor)
    assert transform is not None
    img = two_tone(size)
    img.paste((30, 160, 90), (size[0] // 3, size[1] // 4, size[0] // 2, size[1] // 2))
    expected = processor([img], return_tensors="pt")["pixel_values"][0]
    crop = transform.crop(img)
    assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
    ours = transform.normalize([crop])[0]
    assert ours.shape == expected.shape and ours.is_contiguous()
    assert torch.allclose(ours, expected, atol=1e-5)


def test_prepared_images_batch_to_the_same_pixels_as_preprocess(classifier):
    images = [two_tone((300, 200)), two_tone((64, 64)).convert("L"), two_tone((500, 900))]
    prepared = [classifier.prepare(img) for img in images]
    assert all(p.dtype == np.uint8 for p in prepared)
    assert torch.equal(classifier.pixels(prepared), classifier.preprocess(images))


def test_unusual_processor_settings_use_transformers():
    from transformers import CLIPImageProcessor

    from core.engine.clip_transform import standard_clip_transform

    assert standard_clip_transform(CLIPImageProcessor(do_center_crop=False)) is None
    assert standard_clip_transform(CLIPImageProcessor(resample=2)) is None
