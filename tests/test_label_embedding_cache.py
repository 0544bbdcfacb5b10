"""Label embeddings on disk: a new process reads them instead of running the text tower, and
only when everything that determines them (text weights, precision, tokens) is the same."""

import os

import pytest
import torch
from PIL import Image

from core.engine.digests import text_tower_digest
from core.engine.label_embedding_cache import LabelEmbeddingCache, label_embedding_key
from core.engine.loading import load_classifier
from tests.tiny_clip import build_tiny_clip

LABELS = ["sneakers", "handbag", "wristwatch", "dress"]
TEMPLATES = ("a photo of a {}.", "a product photo of a {}.")


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "label_embeddings"


def load(model_dir, cache_dir):
    return load_classifier(str(model_dir), "cpu", cache_dir)


def entries(cache_dir):
    return sorted(cache_dir.glob("*.safetensors"))


def test_a_new_process_reads_the_embeddings_instead_of_encoding(tiny_model_dir, cache_dir):
    first = load(tiny_model_dir, cache_dir)
    encoded = first.encode_labels(LABELS, TEMPLATES)
    assert first.text_encoder_calls == 1
    assert len(entries(cache_dir)) == 1

    second = load(tiny_model_dir, cache_dir)  # as a new command-line job or a restarted app
    assert second.has_label_embeddings(LABELS, TEMPLATES)
    prediction = second.predict_one(Image.new("RGB", (40, 40), (200, 30, 30)), LABELS, TEMPLATES)
    assert prediction.labels_from_cache  # the page says so: nothing was computed
    assert torch.equal(second.encode_labels(LABELS, TEMPLATES), encoded)
    assert second.text_encoder_calls == 0


def test_other_labels_order_or_templates_are_encoded(tiny_model_dir, cache_dir):
    load(tiny_model_dir, cache_dir).encode_labels(LABELS, TEMPLATES)
    later = load(tiny_model_dir, cache_dir)
    reordered = later.encode_labels(LABELS[::-1], TEMPLATES)
    later.encode_labels(LABELS, TEMPLATES[:1])
    later.encode_labels(LABELS + ["scarf"], TEMPLATES)
    assert later.text_encoder_calls == 3
    assert len(entries(cache_dir)) == 4
    again = load(tiny_model_dir, cache_dir).encode_labels(LABELS, TEMPLATES)
    assert torch.allclose(reordered.flip(0), again, atol=1e-6)


def test_a_model_with_other_text_weights_never_reads_them(tiny_model_dir, cache_dir, tmp_path):
    ours = load(tiny_model_dir, cache_dir).encode_labels(LABELS)
    retrained = load(build_tiny_clip(tmp_path / "retrained", seed=1), cache_dir)
    assert not retrained.has_label_embeddings(LABELS)
    theirs = retrained.encode_labels(LABELS)
    assert retrained.text_encoder_calls == 1
    assert not torch.allclose(ours, theirs, atol=1e-3)


def test_the_digest_covers_text_weights_only(fresh_classifier):
    model = fresh_classifier.model
    before = text_tower_digest(model)
    with torch.no_grad():
        model.vision_model.post_layernorm.bias.add_(1.0)
        assert text_tower_digest(model) == before  # image tower: no effect on text embeddings
        model.text_projection.weight[0, 0] += 1e-3
        assert text_tower_digest(model) != before


def test_the_key_depends_on_precision_tokens_and_templates():
    ids = [[1, 5, 2], [1, 6, 2]]
    key = label_embedding_key("abc", "cpu|torch.float32", ids, 1)
    assert key == label_embedding_key("abc", "cpu|torch.float32", ids, 1)
    assert key != label_embedding_key("abc", "cuda|torch.float16", ids, 1)
    assert key != label_embedding_key("abd", "cpu|torch.float32", ids, 1)
    assert key != label_embedding_key("abc", "cpu|torch.float32", ids[::-1], 1)
    assert key != label_embedding_key("abc", "cpu|torch.float32", [[1, 5], [2, 1, 6, 2]], 1)
    assert key != label_embedding_key("abc", "cpu|torch.float32", ids, 2)


def test_a_damaged_entry_is_encoded_again_and_replaced(tiny_model_dir, cache_dir):
    encoded = load(tiny_model_dir, cache_dir).encode_labels(LABELS)
    [entry] = entries(cache_dir)
    entry.write_bytes(b"\x00garbage")
    later = load(tiny_model_dir, cache_dir)
    assert torch.equal(later.encode_labels(LABELS), encoded)
    assert later.text_encoder_calls == 1
    assert torch.equal(LabelEmbeddingCache(cache_dir).get(entry.stem, rows=4), encoded)


def test_an_entry_of_the_wrong_shape_is_ignored(cache_dir):
    cache = LabelEmbeddingCache(cache_dir)
    cache.put("ab12", torch.zeros(3, 8))
    assert cache.get("ab12", rows=3) is not None
    assert cache.get("ab12", rows=5) is None
    assert not (cache_dir / "ab12.safetensors").exists()


def test_keys_must_be_digests(cache_dir):
    with pytest.raises(ValueError):
        LabelEmbeddingCache(cache_dir).get("../../etc/passwd", rows=1)


def test_least_recently_used_entries_go_beyond_the_limit(cache_dir):
    cache = LabelEmbeddingCache(cache_dir, max_entries=2)
    cache.put("aa", torch.zeros(1, 4))
    cache.put("bb", torch.ones(1, 4))
    os.utime(cache.path_for("aa"), (1_000_000, 1_000_000))  # used long ago...
    os.utime(cache.path_for("bb"), (2_000_000, 2_000_000))
    assert cache.get("aa", rows=1) is not None  # ...and now again
    cache.put("cc", torch.full((1, 4), 2.0))
    assert [p.stem for p in entries(cache_dir)] == ["aa", "cc"]


def test_an_unusable_cache_folder_only_costs_time(tiny_model_dir, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    classifier = load(tiny_model_dir, blocked / "label_embeddings")
    embeddings = classifier.encode_labels(LABELS)
    assert embeddings.shape[0] == len(LABELS)
    assert classifier.encode_labels(LABELS) is embeddings  # still cached in memory
    assert classifier.text_encoder_calls == 1


def test_clear_removes_every_entry(tiny_model_dir, cache_dir):
    load(tiny_model_dir, cache_dir).encode_labels(LABELS)
    LabelEmbeddingCache(cache_dir).clear()
    assert entries(cache_dir) == []


def test_a_checkpoint_folder_is_known_by_its_files_without_hashing_its_weights(
    tmp_path, cache_dir, monkeypatch
):
    import core.engine.text_side

    calls = []
    real = core.engine.text_side.text_tower_digest
    counted = lambda m: calls.append(1) or real(m)  # noqa: E731
    monkeypatch.setattr(core.engine.text_side, "text_tower_digest", counted)
    folder = build_tiny_clip(tmp_path / "model")
    first = load(folder, cache_dir).encode_labels(LABELS)
    second = load(folder, cache_dir)  # a new process reads the entry
    assert torch.equal(second.encode_labels(LABELS), first)
    assert second.text_encoder_calls == 0
    build_tiny_clip(folder, seed=1)  # retrained in place: new weight files, new entries
    retrained = load(folder, cache_dir)
    assert not retrained.has_label_embeddings(LABELS)
    assert not torch.allclose(retrained.encode_labels(LABELS), first, atol=1e-3)
    assert calls == []  # the weights were never hashed
    in_memory = load(folder, cache_dir)
    in_memory.checkpoint_folder = None  # a model with no folder is hashed instead
    in_memory.encode_labels(LABELS)
    assert calls == [1]
