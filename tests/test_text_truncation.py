"""Prompts longer than the text tower's positions, and labels in any script, end to end.

The tiny test model's tokenizer carries no model_max_length (as some real checkpoints' do not),
so only the model's own max_position_embeddings (77) can bound a prompt.
"""

import json

import pytest
import torch

from core.engine.classifier import truncation_problem
from core.labels.label_set import LabelSet
from core.training.trainers import ContrastiveTrainer
from tests.test_app_label_sets import label_sets_page, new_set
from tests.test_cli import run_classify, run_cli

LONG = "an extremely detailed description of a product " * 4  # about 190 tokens here
TWINS = [LONG + "in red", LONG + "in blue", "a short label"]


def test_the_tokenizer_has_no_limit_of_its_own(classifier):
    assert classifier.processor.tokenizer.model_max_length > 10**6
    assert classifier.max_text_tokens == 77


def test_a_long_label_is_cut_to_the_text_towers_positions(classifier):
    embeddings = classifier.encode_labels([LONG + "x", "short"], ("a photo of a {}.",))
    assert embeddings.shape[0] == 2
    assert torch.isfinite(embeddings).all()
    ids = classifier.tokenize(["a photo of a " + LONG])["input_ids"][0]
    assert len(ids) == 77


def test_labels_identical_in_their_first_77_tokens_are_found(classifier):
    assert classifier.truncation_twins(TWINS) == [(TWINS[0], TWINS[1])]
    assert classifier.truncation_twins(["red", "blue"]) == []
    # a template that puts the label first tells them apart only if the tail fits: it does not
    assert classifier.truncation_twins(TWINS, ("{} photo",)) == [(TWINS[0], TWINS[1])]
    # prompts are what is encoded: distinct short prompts make the labels distinct
    assert classifier.truncation_twins(TWINS, prompts=["red thing", "blue thing", ""]) == []
    problem = truncation_problem(classifier, LabelSet("colours", tuple(TWINS)))
    assert "first 77 tokens" in problem and "'colours'" in problem
    assert "2 labels beginning 'an extremely detailed" in problem


def test_contrastive_training_takes_captions_longer_than_the_positions(tiny_model_dir):
    from core.engine.loading import load_classifier

    base = load_classifier(str(tiny_model_dir), "cpu")
    trainer = ContrastiveTrainer(base.model, base.processor.tokenizer, torch.device("cpu"))
    pixels = torch.zeros((2, 3, 32, 32))
    assert trainer.step(pixels, [LONG + "one", LONG + "two"]) > 0


@pytest.fixture
def twins_file(tmp_path):
    path = tmp_path / "twins.txt"
    path.write_text("\n".join(TWINS) + "\n", encoding="utf-8")
    return path


def test_the_command_line_refuses_labels_it_cannot_tell_apart(
    app_env, twins_file, image_file, tmp_path
):
    done = run_cli("predict", str(image_file), "--labels", str(twins_file))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "first 77 tokens" in done.stderr and "Traceback" not in done.stderr
    products = tmp_path / "in.csv"
    products.write_text(f"sku,image_url\n1,{image_file}\n", encoding="utf-8")
    done = run_classify(products, tmp_path / "out.csv", "--labels", str(twins_file))
    assert done.returncode == 1 and "first 77 tokens" in done.stderr


def test_a_long_label_that_stays_distinct_works_on_the_command_line(
    app_env, image_file, tmp_path
):
    labels = tmp_path / "long.txt"
    labels.write_text(f"{LONG}\nred\n", encoding="utf-8")
    done = run_cli("predict", str(image_file), "--labels", str(labels), "--json")
    assert done.returncode == 0, done.stderr
    assert {item["label"] for item in json.loads(done.stdout)["top"]} == {LONG.strip(), "red"}


def test_the_label_sets_page_reports_twins_and_refuses_to_save(app_env):
    at = label_sets_page()
    new_set(at, "Long ones", [{"label": label} for label in TWINS])
    assert any("first 77 tokens" in w.value for w in at.warning)
    assert at.button(key="ls_save").disabled


UNUSUAL = [
    "👟 sneakers",
    "حقيبة يد",  # Arabic: handbag
    "שעון יד",  # Hebrew: wristwatch
    'the "best" hat',
    "=SUM(A1:A3)",
    "+1 shirt",
    "@home slippers",
    "50% off, 'quoted'",
]


def test_emoji_rtl_quotes_and_formula_like_labels_work_end_to_end(
    app_env, image_file, tmp_path
):
    labels = tmp_path / "unusual.txt"
    labels.write_text("\n".join(UNUSUAL) + "\n", encoding="utf-8")
    done = run_cli("predict", str(image_file), "--labels", str(labels), "--json", "--top-k", "8")
    assert done.returncode == 0, done.stderr
    assert {item["label"] for item in json.loads(done.stdout)["top"]} == set(UNUSUAL)
    table = run_cli("predict", str(image_file), "--labels", str(labels), "--top-k", "8")
    assert table.returncode == 0 and all(label in table.stdout for label in UNUSUAL)
    products = tmp_path / "in.csv"
    products.write_text(f"sku,image_url\n1,{image_file}\n2,{image_file}\n", encoding="utf-8")
    output = tmp_path / "out.csv"
    done = run_classify(products, output, "--labels", str(labels), "--top-k", "8")
    assert done.returncode == 0, done.stderr
    import csv

    with output.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        assert row["error"] == ""
        top = json.loads(row["top_categories"])
        assert {item["label"] for item in top} == set(UNUSUAL)
        category = row["predicted_category"]  # formula-like cells get a leading ' in the CSV
        assert category in UNUSUAL or (category[:1] == "'" and category[1:] in UNUSUAL)
