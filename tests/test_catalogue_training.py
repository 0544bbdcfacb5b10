"""Fine-tuning on catalogue data: a linear probe on [image ‖ product text] with text dropout,
compared honestly on one validation split, and several attributes trained at once, on the tiny
random CLIP with synthetic images served over loopback.

The tiny CLIP's towers are random, so the data is made for what they can tell apart (checked
once by hand): noisy solid colours and a round blob against a long bar in the image; titles of
distinct words in the text.
"""

import json
import random

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from core.cli.main import main
from core.config import load_settings
from core.engine.loading import load_classifier
from core.engine.trained_models import load_heads, model_attributes, read_metadata
from core.training.attributes import OTHER
from core.training.data import read_labelled_csv
from core.training.job import FinetuneFolder, FinetuneSpec, list_finetune_jobs, new_finetune_folder
from core.training.probe_method import with_text_dropped
from core.training.run import run_finetune
from tests import fashion_mnist
from tests.images import encode
from tests.test_finetune import needs_fashion_mnist

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
KINDS = {"shirt": "cotton shirt", "boots": "leather boots", "scarf": "wool scarf"}


def jittered(rgb, rng):
    return tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in rgb)


def colour_square(rgb, rng, seed):
    """A noisy square of one colour (the image shows the colour and nothing else)."""
    noise = np.random.default_rng(seed).normal(0, 12, (40, 40, 3))
    pixels = np.clip(np.full((40, 40, 3), jittered(rgb, rng)) + noise, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def shape_image(shape, rgb, rng):
    """A coloured round blob or long bar on a light background (colour and shape both show)."""
    image = Image.new("RGB", (48, 48), (245, 245, 245))
    draw, o = ImageDraw.Draw(image), rng.randint(-4, 4)
    if shape == "circle":
        draw.ellipse((8 + o, 8 + o, 40 + o, 40 + o), fill=jittered(rgb, rng))
    else:
        draw.rectangle((4, 20 + o, 44, 28 + o), fill=jittered(rgb, rng))
    return image


def serve(image_server, rows, name):
    """Each row's image served over loopback: (image, *rest) rows become (url, *rest)."""
    served = []
    for i, (image, *rest) in enumerate(rows):
        image_server.files[f"{name}-{i}.png"] = encode(image)
        served.append((image_server.url(f"/files/{name}-{i}.png"), *rest))
    return served


def catalogue_csv(tmp_path, image_server, per_class=14):
    """Colour x kind products: the image shows only the colour, the title names only the kind;
    the label is both ("red shirt")."""
    rng, rows = random.Random(0), []
    for colour, rgb in COLOURS.items():
        for kind, title in KINDS.items():
            for _ in range(per_class):
                image = colour_square(rgb, rng, seed=len(rows))
                rows.append((image, f"{colour} {kind}", title))
    path = tmp_path / "catalogue.csv"
    frame = pd.DataFrame(serve(image_server, rows, "cat"), columns=["image_url", "label", "title"])
    frame.to_csv(path, index=False)
    return path


def shapes_csv(tmp_path, image_server, per_class=10, rare=3):
    """Colour and shape, both drawn: 3 colours x 2 shapes, plus `rare` yellow products (too few
    to learn: folded into "other")."""
    rng, rows = random.Random(1), []
    for colour, rgb in COLOURS.items():
        for shape in ("circle", "bar"):
            rows += [(shape_image(shape, rgb, rng), colour, shape) for _ in range(per_class)]
    shapes = ["circle", "bar"] * rare
    rows += [(shape_image(s, (230, 220, 30), rng), "yellow", s) for s in shapes[:rare]]
    path = tmp_path / "shapes.csv"
    frame = pd.DataFrame(serve(image_server, rows, "shape"), columns=["image", "colour", "shape"])
    frame.to_csv(path, index=False)
    return path


def comparison(attribute):
    return {row["key"]: row["accuracy"] for row in attribute["comparison"]}


# ---------------------------------------------------------------- image and text


def test_the_probe_on_image_and_title_uses_both_and_survives_a_missing_title(
    app_env, tmp_path, image_server, capsys
):
    source = catalogue_csv(tmp_path, image_server)
    code = main(
        [
            "finetune", "--data", str(source), "--image-column", "image_url",
            "--label-column", "label", "--text-column", "title", "--name", "catalogue",
            "--val-fraction", "0.3",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    print(out)
    assert code == 0
    [job] = list_finetune_jobs(app_env)
    [attribute] = job.result()["attributes"]
    found = comparison(attribute)
    print(json.dumps(found, indent=1))
    assert found["probe_both"] >= 0.9, found  # the class needs the colour and the kind
    assert found["probe_image"] <= 0.6 and found["probe_text"] <= 0.6, found  # each alone: 1/3
    assert set(found) == {
        "zero_shot_image", "zero_shot_text", "zero_shot_fused",
        "probe_image", "probe_text", "probe_both", "probe_both_no_text",
    }  # fmt: skip
    assert attribute["saved"] == "probe_both" and job.result()["trained"] == attribute["trained"]
    assert job.result()["validation_with_text"] == job.result()["validation_images"] == 38
    for model in ("zero-shot, image + text", "probe, text only", "probe, image + text"):
        assert model in out
    curve = {row["weight"]: row["accuracy"] for row in attribute["zero_shot_text_weights"]}
    assert len(curve) == 11  # the weights 0, 0.1, ... 1, judged on the same images
    assert curve[0.0] == pytest.approx(found["zero_shot_image"])  # the image alone
    assert curve[1.0] == pytest.approx(found["zero_shot_text"])  # the text alone
    assert curve[0.5] == pytest.approx(found["zero_shot_fused"])
    assert "best for this data: --text-weight" in out
    [saved_line] = [line for line in out.splitlines() if line.endswith("<- saved")]
    assert saved_line.strip().startswith("probe, image + text ")  # not "…, text hidden"

    saved = app_env / "models" / "catalogue"
    [head] = load_heads(saved).attributes
    assert head.name == "label" and head.fused and head.text_head is not None
    assert model_attributes(str(saved))[0][0] == "label"
    metadata = read_metadata(saved)
    assert metadata["text_columns"] == ["title"]
    assert metadata["metrics"]["trained"]["accuracy"] == found["probe_both"]
    assert metadata["metrics"]["per_attribute"]["label"]["probe_text"]["accuracy"] == (
        found["probe_text"]
    )

    # New products without a title: the head reads [image ‖ 0] and still gets the colour.
    model = load_classifier(str(saved), "cpu")
    rng, colours = random.Random(7), list(COLOURS) * 6
    images = [colour_square(COLOURS[c], rng, 1000 + i) for i, c in enumerate(colours)]
    scores = model.scorer(list(head.classes))(model.encode_images(images))
    predicted = [head.classes[i] for i in scores.argmax(dim=-1).tolist()]
    right = np.mean([p.split()[0] == c for p, c in zip(predicted, colours, strict=True)])
    print(f"colour right without a title: {right:.2f}")
    assert right >= 0.9


def test_text_dropout_copies_a_seeded_share_of_the_rows_that_have_text():
    image = np.arange(20, dtype=np.float32).reshape(10, 2)
    text = np.ones((10, 2), dtype=np.float32)
    text[[0, 1]] = 0  # two items have no title
    labels = [str(i) for i in range(10)]
    rows, rows_y = with_text_dropped(image, text, labels, 0.5, seed=3)
    assert rows.shape == (14, 4) and rows_y[:10] == labels  # 4 = half of the 8 with text
    assert np.array_equal(rows[:10], np.concatenate([image, text], axis=1))
    copies = rows[10:]
    assert not copies[:, 2:].any()  # their text is hidden
    assert {int(y) for y in rows_y[10:]} <= set(range(2, 10))
    assert [image[int(y)].tolist() for y in rows_y[10:]] == copies[:, :2].tolist()
    again, again_y = with_text_dropped(image, text, labels, 0.5, seed=3)
    assert np.array_equal(rows, again) and again_y == rows_y
    assert with_text_dropped(image, text, labels, 0.5, seed=4)[1] != rows_y


# ---------------------------------------------------------------- several attributes


def shapes_job(app_env, tmp_path, image_server, name="shapes"):
    spec = FinetuneSpec(
        data_csv=str(shapes_csv(tmp_path, image_server)),
        image_column="image",
        label_columns=("colour", "shape"),
        name=name,
        base_model=str(load_settings().model),
        validation_fraction=0.3,
    )
    folder = new_finetune_folder(app_env, spec)
    return folder, run_finetune(folder, load_settings())


def test_two_attributes_train_at_once_and_a_rare_class_folds_into_other(
    app_env, tmp_path, image_server
):
    folder, state = shapes_job(app_env, tmp_path, image_server)
    assert state.status == "finished", state.message
    assert all(hits == 1 for hits in image_server.hits.values())  # each image fetched once
    result = folder.result()
    colour, shape = result["attributes"]
    print({a["name"]: comparison(a) for a in result["attributes"]}, result["overall"])
    assert comparison(colour)["probe_image"] >= 0.9 and comparison(shape)["probe_image"] >= 0.9
    assert colour["folded"] == ["yellow"] and shape["folded"] == []
    assert colour["classes"] == ["blue", "green", OTHER, "red"]
    assert colour["saved"] == "probe_image" and set(comparison(colour)) == {
        "zero_shot_image",
        "probe_image",
    }
    overall = result["overall"]
    assert overall["attributes"] == 2 and overall["all_right"] >= 0.8
    assert overall["mean_accuracy"] == pytest.approx(
        (colour["trained"]["accuracy"] + shape["trained"]["accuracy"]) / 2
    )
    saved = app_env / "models" / "shapes"
    assert model_attributes(str(saved)) == [
        ("colour", ("blue", "green", OTHER, "red")),
        ("shape", ("bar", "circle")),
    ]
    heads = load_heads(saved).attributes
    assert not any(h.fused or h.text_head for h in heads)
    assert read_metadata(saved)["folded"] == {"colour": ["yellow"], "shape": []}
    model = load_classifier(str(saved), "cpu")
    red_bar = model.encode_images([shape_image("bar", COLOURS["red"], random.Random(5))])
    for head, expected in zip(heads, ("red", "bar"), strict=True):
        scores = model.scorer(list(head.classes), attribute=head.name)(red_bar)
        assert head.classes[int(scores.argmax())] == expected


def test_a_job_spec_written_before_attributes_still_reads(tmp_path):
    folder = FinetuneFolder(tmp_path / "old")
    folder.path.mkdir()
    old = {"data_csv": "d.csv", "image_column": "image", "label_column": "label", "name": "n",
           "base_model": "m", "caption_column": None}  # fmt: skip
    (folder.path / "spec.json").write_text(json.dumps(old))
    spec = folder.spec()
    assert spec.label_columns == ("label",) and spec.label_column == "label"
    assert spec.text_columns == () and spec.checked() == spec


# ---------------------------------------------------------------- refusals


def one_sentence(text):
    text = text.strip()
    return "\n" not in text and text.endswith(".") and ". " not in text.rstrip(".")


def refusal_csv(tmp_path, image_server, labels=("red", "blue") * 12, encoding="utf-8"):
    rows = [
        (image_server.url(f"/img/{i}.png"), label, f"café shirt {i}", "shirt")
        for i, label in enumerate(labels)
    ]
    path = tmp_path / "refuse.csv"
    frame = pd.DataFrame(rows, columns=["image_url", "colour", "title", "kind"])
    path.write_bytes(frame.to_csv(index=False).encode(encoding))
    return path


@pytest.mark.parametrize(
    ("flags", "labels", "encoding", "message"),
    [
        (
            ["--label-column", "colour", "--text-column", "titel"],
            None,
            "utf-8",
            "Column 'titel' is not in the labelled CSV; its columns are: image_url, colour, "
            "title, kind.",
        ),
        (
            ["--label-column", "image_url"],
            None,
            "utf-8",
            "Label column 'image_url' is the image column; choose the column that holds the "
            "labels.",
        ),
        (
            ["--label-column", "colour", "--label-column", "title", "--text-column", "title"],
            None,
            "utf-8",
            "Label column 'title' is also a text column: the model would read the answer from "
            "its input; leave it out of the text columns.",
        ),
        (
            ["--label-column", "colour", "--label-column", "kind"],
            None,
            "utf-8",
            "Label column 'kind' has a single class ('shirt'); training needs at least two "
            "classes.",
        ),
        (
            ["--label-column", "colour", "--label-column", "title"],
            ("red", "blue") * 4,
            "utf-8",
            "Label column 'colour' has a single class ('other') once the classes with too few "
            "examples (2 of them) are folded into 'other'; lower the minimum class count or "
            "add examples.",
        ),
        (
            ["--label-column", "colour", "--text-column", "title"],
            None,
            "latin-1",
            "The product text in the labelled CSV is not UTF-8, so it could be misread; save "
            "the file as a UTF-8 CSV and try again.",
        ),
        (
            ["--label-column", "colour", "--label-column", "kind", "--method", "contrastive"],
            None,
            "utf-8",
            "Contrastive fine-tuning trains one label column, not 2; use the linear probe for "
            "several attributes at once.",
        ),
        (
            ["--label-column", "colour", "--text-column", "title", "--method", "contrastive"],
            None,
            "utf-8",
            "Contrastive fine-tuning learns from the caption column (--caption-column), not "
            "from product-text columns, which only the linear probe reads as a feature beside "
            "the image; give the title as the caption instead.",
        ),
    ],
)
def test_bad_training_input_is_one_sentence_before_any_work(
    app_env, tmp_path, image_server, capsys, monkeypatch, flags, labels, encoding, message
):
    import core.training.run

    monkeypatch.setattr(core.training.run, "load_classifier", lambda *a, **k: pytest.fail("load"))
    source = refusal_csv(tmp_path, image_server, labels or ("red", "blue") * 12, encoding)
    base = ["finetune", "--data", str(source), "--image-column", "image_url", "--name", "x"]
    assert main(base + flags) == 1
    error = capsys.readouterr().err
    assert error == f"error: {message}\n"
    assert one_sentence(message)
    assert not image_server.hits and not list_finetune_jobs(app_env)  # nothing fetched or made


def test_the_fold_is_known_before_training(tmp_path, image_server):
    source = refusal_csv(tmp_path, image_server, ("red",) * 12 + ("blue",) * 3 + ("pink",) * 2)
    data = read_labelled_csv(source, "image_url", ["colour"], min_class_count=10)
    assert data.folded == (("blue", "pink"),)
    assert data.class_counts() == {"red": 12, OTHER: 5} and not image_server.hits


# ---------------------------------------------------------------- real images: Fashion-MNIST

GROUPS = {"T-shirt/top": "top", "Pullover": "top", "Coat": "top", "Shirt": "top",
          "Dress": "dress", "Trouser": "bottom", "Sandal": "shoes", "Sneaker": "shoes",
          "Ankle boot": "shoes", "Bag": "bag"}  # fmt: skip


@needs_fashion_mnist
def test_fashion_mnist_garment_and_its_group_train_together(app_env, tmp_path):
    images, labels = fashion_mnist.sample(per_class=20)
    source = fashion_mnist.write_labelled_csv(images, labels, tmp_path / "fashion")
    frame = pd.read_csv(source)
    frame["group"] = [GROUPS[label] for label in frame["label"]]
    frame.to_csv(source, index=False)
    spec = FinetuneSpec(
        data_csv=str(source),
        image_column="image",
        label_columns=("label", "group"),
        name="fashion-groups",
        base_model=str(load_settings().model),
        validation_fraction=0.3,
        allow_local_files=True,
    )
    folder = new_finetune_folder(app_env, spec)
    assert run_finetune(folder, load_settings()).status == "finished"
    garment, group = folder.result()["attributes"]
    print(comparison(garment), comparison(group), folder.result()["overall"])
    assert comparison(garment)["probe_image"] >= 0.3  # chance: 0.10
    assert comparison(group)["probe_image"] >= 0.5  # chance (most frequent group): 0.40
    assert group["folded"] == [] and len(group["classes"]) == 5
