"""Product text in the engine: titles joined and encoded once per distinct text in fixed-shape
batches, trained heads of several attributes, and how a row is decided from image and text."""

from __future__ import annotations

import pytest
import torch

from core.engine.fusion import (
    AGREE,
    IMAGE,
    TEXT,
    SetScorer,
    TextUse,
    TextUseError,
    decided_by,
    score_row,
    set_scorer,
)
from core.engine.probe import AttributeHead, ProbeHead, TrainedHeads
from core.engine.product_text import BATCH, join_product_text
from core.engine.trained_models import load_heads, model_attributes, save_trained_model
from core.labels.label_set import LabelSet


def test_text_columns_are_joined_in_the_order_given_skipping_empty_cells():
    row = {"title": " Red shirt. ", "brand": "", "description": "Cotton, slim fit"}
    joined = join_product_text(row, ["title", "brand", "description"])
    assert joined == "Red shirt. Cotton, slim fit"
    assert join_product_text(row, ["description", "title"]) == "Cotton, slim fit. Red shirt"
    assert join_product_text({"title": "  "}, ["title"]) == ""


def test_each_distinct_text_runs_through_the_text_tower_once(fresh_classifier):
    texts = ["red shirt", "blue jeans", "red shirt", "", "blue jeans"] * 10
    calls = fresh_classifier.text_encoder_calls
    embeddings = fresh_classifier.encode_texts(texts)
    assert embeddings.shape == (len(texts), fresh_classifier.embedding_dim)
    assert fresh_classifier.text_encoder_calls == calls + 1  # two texts: one padded batch
    assert fresh_classifier.text_side.product_texts.texts_encoded == 2
    assert torch.all(embeddings[3] == 0)  # no text: nothing to read
    assert torch.allclose(embeddings[0].norm(), torch.tensor(1.0), atol=1e-5)
    fresh_classifier.encode_texts(["blue jeans"])
    assert fresh_classifier.text_encoder_calls == calls + 1  # answered from the cache


def test_a_texts_embedding_does_not_depend_on_its_batch_mates(fresh_classifier, classifier):
    many = [f"product number {i}" for i in range(BATCH + 3)]
    many += ["a much longer title " * (i + 1) for i in range(BATCH)]
    alone = fresh_classifier.encode_texts(["product number 5", "a much longer title " * 3])
    together = classifier.encode_texts(many)
    assert torch.equal(alone[0], together[5])
    assert torch.equal(alone[1], together[BATCH + 3 + 2])
    cut = classifier.encode_texts(["word " * 500])  # cut to the tower's length, not an error
    assert cut.shape == (1, classifier.embedding_dim)


def _scorer(joint: bool = False, text: bool = True) -> SetScorer:
    def identity(x):
        return x

    return SetScorer(
        ("a", "b", "c"),
        identity,
        identity if text else None,
        (lambda i, t: (i + t) / 2) if joint else None,
    )


def test_rows_are_decided_by_mode_with_fallbacks():
    image, text = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.1, 0.1, 0.8])
    both = TextUse(("title",), "both", 0.5)
    fused = score_row(_scorer(), image, None, text, both)
    assert torch.allclose(fused.predicted, 0.5 * image + 0.5 * text)
    assert fused.decided_by == TEXT  # c: 0.45 against a: 0.4
    weighted = score_row(_scorer(), image, None, text, TextUse(("title",), "both", 0.2))
    assert int(weighted.predicted.argmax()) == 0 and weighted.decided_by == IMAGE
    no_text = score_row(_scorer(), image, None, None, both)
    assert torch.equal(no_text.predicted, image) and no_text.decided_by == IMAGE
    image_failed = score_row(_scorer(), None, None, text, TextUse(("title",), "text"))
    assert torch.equal(image_failed.predicted, text) and image_failed.decided_by == TEXT
    image_mode = score_row(_scorer(), None, None, text, TextUse(("title",), "image"))
    assert image_mode.predicted is None and image_mode.decided_by == ""
    trained = score_row(_scorer(joint=True), image, image, text, TextUse(("title",), "image"))
    assert torch.allclose(trained.predicted, (image + text) / 2)  # a head on both: always both


def test_decided_by_says_agree_or_the_side_that_gave_the_winner_more():
    first = torch.tensor([0.9, 0.1])
    assert decided_by(first, torch.tensor([0.8, 0.2]), torch.tensor([0.6, 0.4])) == AGREE
    middle = torch.tensor([0.2, 0.5, 0.3])
    image, text = torch.tensor([0.5, 0.4, 0.1]), torch.tensor([0.1, 0.3, 0.6])
    assert decided_by(middle, image, text) == IMAGE  # b: neither's first; the image gave it more


def test_text_settings_are_checked_in_one_sentence():
    with pytest.raises(TextUseError, match="needs a product-text column"):
        TextUse((), "text").checked()
    with pytest.raises(TextUseError, match="between 0 and 1"):
        TextUse(("title",), "both", 1.5).checked()
    with pytest.raises(TextUseError, match="not one of"):
        TextUse(("title",), "fused").checked()


def _head(classes, width, seed):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(classes), width, generator=generator)
    return ProbeHead(tuple(classes), weight, torch.zeros(len(classes)))


def test_heads_of_several_attributes_save_reload_and_score_by_attribute(
    classifier, tmp_path
):
    dim = classifier.embedding_dim
    heads = TrainedHeads(
        (
            AttributeHead(
                "colour", _head(["red", "blue"], 2 * dim, 0), _head(["red", "blue"], dim, 1), True
            ),
            AttributeHead("shape", _head(["round", "square", "other"], 2 * dim, 2), None, True),
        )
    )
    folder = tmp_path / "model"
    save_trained_model(folder, classifier.model, classifier.processor, {"method": "probe"}, heads)
    assert model_attributes(str(folder)) == [
        ("colour", ("red", "blue")),
        ("shape", ("round", "square", "other")),
    ]
    loaded = load_heads(folder)
    assert loaded.uses_text and loaded.attribute("shape").text_head is None
    text_weight = loaded.attribute("colour").text_head.weight
    assert torch.equal(text_weight, heads.attributes[0].text_head.weight)

    classifier.probe = loaded
    try:
        shapes = LabelSet("shape", ("square", "round", "other"), attribute="shape")
        shape = set_scorer(classifier, shapes)
        image = torch.nn.functional.normalize(torch.randn(3, dim), dim=-1)
        no_text = torch.cat([image, torch.zeros_like(image)], -1)
        expected = heads.attributes[1].head.probabilities(no_text)
        assert torch.allclose(shape.image(image), expected[:, [1, 0, 2]])
        assert shape.text is None and shape.joint is not None
        colour = set_scorer(classifier, LabelSet("colour", ("red", "blue"), attribute="colour"))
        assert colour.text(image).shape == (3, 2)
    finally:
        classifier.probe = None


def test_accuracy_by_weight_spans_image_alone_to_text_alone():
    from core.engine.fusion import accuracy_by_weight

    image = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    text = torch.tensor([[0.3, 0.7], [0.1, 0.9], [0.4, 0.6]])
    truth = torch.tensor([0, 1, 1])
    curve = dict(accuracy_by_weight(image, text, truth))
    assert curve[0.0] == pytest.approx(2 / 3)  # the image alone misses row 2
    assert curve[1.0] == pytest.approx(2 / 3)  # the text alone misses row 1
    assert curve[0.5] == pytest.approx(1.0)  # together: all three
