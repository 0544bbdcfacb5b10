"""One product from image and text, and a model of several attributes: `predict --text`,
`predict` with such a model, and the Single image page (AppTest)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from core.engine.fusion import AGREE, IMAGE, TEXT
from core.engine.loading import load_classifier
from core.engine.product_prediction import own_label_sets, predict_product
from core.labels.label_set import LabelSet
from tests.attribute_models import ATTRIBUTES, save_attribute_model
from tests.test_app_single_image import chart_spec, give_url, set_labels, start_app
from tests.test_cli import run_cli

LABELS = ["sneakers", "handbag", "wristwatch", "dress", "scarf"]


def test_image_text_and_fused_views_follow_their_definitions(classifier):
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    label_set = LabelSet("labels", tuple(LABELS))
    [answer] = predict_product(classifier, image, [label_set], "leather handbag", weight=0.3)
    image_probs = dict((s.label, s.score) for s in answer.image)
    text_probs = dict((s.label, s.score) for s in answer.text)
    for item in answer.ranked:
        expected = 0.7 * image_probs[item.label] + 0.3 * text_probs[item.label]
        assert item.score == pytest.approx(expected, abs=1e-6)
    agree = answer.image[0].label == answer.text[0].label
    assert answer.decided_by == AGREE if agree else answer.decided_by in (IMAGE, TEXT)
    [alone] = predict_product(classifier, image, [label_set])
    assert alone.text is None and alone.decided_by == IMAGE
    assert [s.label for s in alone.ranked] == [s.label for s in answer.image]
    assert [s.score for s in alone.ranked] == pytest.approx([s.score for s in answer.image])


def test_predict_with_text_prints_and_returns_the_three_views(app_env, labels_file, image_file):
    done = run_cli(
        "predict", str(image_file), "--labels", str(labels_file), "--text", "red leather handbag",
        "--json", "--top-k", "3",
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert [len(payload[k]) for k in ("top", "image_top", "text_top")] == [3, 3, 3]
    assert payload["decided_by"] in (AGREE, IMAGE, TEXT)
    shown = run_cli("predict", str(image_file), "--labels", str(labels_file), "--text", "a bag")
    assert shown.returncode == 0, shown.stderr
    for heading in ("Image and text (decided by:", "Image only", "Text only"):
        assert heading in shown.stdout
    weight = run_cli("predict", str(image_file), "--labels", str(labels_file), "--text", "bag",
                     "--text-weight", "2")
    assert weight.returncode != 0 and "between 0 and 1" in weight.stderr
    assert "Traceback" not in weight.stderr


def test_a_model_of_several_attributes_fills_each_in_predict(
    app_env, tiny_model_dir, image_file
):
    save_attribute_model(app_env, tiny_model_dir)
    done = run_cli("predict", str(image_file), "--model", "catalogue", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert set(payload["attributes"]) == set(ATTRIBUTES)
    for name, classes in ATTRIBUTES.items():
        labels = [item["label"] for item in payload["attributes"][name]["top"]]
        assert sorted(labels) == sorted(classes)
    assert payload["top"] == payload["attributes"]["baseColour"]["top"]
    table = run_cli("predict", str(image_file), "--model", "catalogue")
    assert "== baseColour ==" in table.stdout and "== shape ==" in table.stdout


def test_a_text_trained_model_reads_text_through_its_heads(app_env, tiny_model_dir):
    folder = save_attribute_model(app_env, tiny_model_dir, "with-text", with_text=True)
    model = load_classifier(str(folder), "cpu")
    image = Image.new("RGB", (64, 64), (20, 200, 20))
    sets = own_label_sets(model)
    assert [s.attribute for s in sets] == list(ATTRIBUTES)
    answers = predict_product(model, image, sets, "round green ball")
    head = model.probe.attribute("shape")
    image_embedding = model.encode_images([image])
    text_embedding = model.encode_texts(["round green ball"])
    joint = head.head.probabilities(torch.cat([image_embedding, text_embedding], -1))[0]
    ranked = dict((s.label, s.score) for s in answers[1].ranked)
    assert [ranked[c] for c in head.classes] == pytest.approx(joint.tolist(), abs=1e-6)
    assert answers[1].text is not None  # the text head's own view


def test_the_page_shows_image_text_and_fused_top5_side_by_side(app_env, image_server):
    at = start_app()
    set_labels(at, LABELS)
    give_url(at, image_server.url("/product.jpg"))
    at.text_area(key="single_text").input("Leather handbag with gold clasp").run()
    assert not at.exception and not at.error
    charts = at.get("plotly_chart")
    assert len(charts) == 3
    for chart in charts:
        bars = json.loads(chart.proto.spec)["data"][0]
        assert len(bars["y"]) == 5 and bars["x"] == sorted(bars["x"], reverse=True)
    headings = {m.value for m in at.markdown}
    assert {"**Image and text**", "**Image only**", "**Text only**"} <= headings
    assert any("decided" in m.value or "agree" in m.value for m in at.markdown)
    at.text_area(key="single_text").input("").run()
    assert len(chart_spec(at)["data"][0]["y"]) == 5  # no text: the single chart as before


def test_the_page_shows_each_attributes_top5(app_env, tiny_model_dir, image_server):
    folder = save_attribute_model(app_env, tiny_model_dir)
    from app_pages.widgets import model_picker

    at = start_app(**{model_picker.MODEL_KEY: str(folder)})
    give_url(at, image_server.url("/product.jpg"))
    assert not at.exception and not at.error
    assert [tab.label for tab in at.tabs] == list(ATTRIBUTES)
    charts = [json.loads(c.proto.spec)["data"][0]["y"] for c in at.get("plotly_chart")]
    assert [sorted(y) for y in charts] == [sorted(c) for c in ATTRIBUTES.values()]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "one head per attribute" in sidebar and "baseColour (3 classes)" in sidebar
