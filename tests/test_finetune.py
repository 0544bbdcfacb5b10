"""Fine-tuning on the tiny random CLIP with synthetic images: metrics, early stopping, split,
linear probe, contrastive training and the job folder."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from core.config import load_settings
from core.engine.loading import load_classifier
from core.engine.probe import ProbeHead
from core.engine.trained_models import load_heads, read_metadata, training_start
from core.training.data import stratified_split
from core.training.job import FinetuneSpec, new_finetune_folder
from core.training.metrics import evaluate
from core.training.run import run_finetune
from core.training.trainers import (
    ContrastiveTrainer,
    EarlyStopping,
    TrainingError,
    contrastive_loss,
    train_probe,
    trainable_parameters,
)
from tests import fashion_mnist

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def colour_images(folder, per_class=12, seed=0):
    """Noisy solid-colour squares, one folder per class; returns (paths, labels)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for label, rgb in COLOURS.items():
        for i in range(per_class):
            jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in rgb)
            pixels = np.clip(
                np.full((40, 40, 3), jitter)
                + np.random.default_rng(seed + i).normal(0, 12, (40, 40, 3)),
                0,
                255,
            ).astype(np.uint8)
            path = folder / f"{label}-{i}.png"
            Image.fromarray(pixels).save(path)
            paths.append(str(path))
            labels.append(label)
    return paths, labels


# ---------------------------------------------------------------- metrics and stopping


def test_metrics_equal_scikit_learns_on_fixed_inputs():
    truth = ["a", "a", "b", "b", "c", "c", "c", "a"]
    predicted = ["a", "b", "b", "b", "c", "a", "c", "a"]
    labels = ["a", "b", "c", "d"]  # "d" is never seen: it still gets a row
    result = evaluate(truth, predicted, labels)
    assert result.accuracy == pytest.approx(accuracy_score(truth, predicted))
    assert result.macro_f1 == pytest.approx(
        f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)
    )
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    assert [c.precision for c in result.per_class] == pytest.approx(list(p))
    assert [c.recall for c in result.per_class] == pytest.approx(list(r))
    assert [c.f1 for c in result.per_class] == pytest.approx(list(f))
    assert [c.support for c in result.per_class] == list(s)
    assert [list(row) for row in result.confusion] == confusion_matrix(
        truth, predicted, labels=labels
    ).tolist()
    assert type(result).from_dict(result.to_dict()) == result


def test_early_stopping_on_a_scripted_validation_curve():
    curve = [0.40, 0.55, 0.61, 0.61, 0.58, 0.60, 0.70]
    stopper = EarlyStopping(patience=3)
    stopped_at = None
    for epoch, score in enumerate(curve, start=1):
        if stopper.update(epoch, score):
            stopped_at = epoch
            break
    assert stopped_at == 6  # epochs 4, 5 and 6 did not beat epoch 3
    assert stopper.best_epoch == 3 and stopper.best_score == 0.61


def test_stratified_split_is_proportional_seeded_and_keeps_singletons_in_training():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 5 + ["lonely"]
    train, val = stratified_split(labels, 0.2, seed=1)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    counts = pd.Series([labels[i] for i in val]).value_counts().to_dict()
    assert counts == {"a": 4, "b": 2, "c": 1}
    assert labels.index("lonely") in train
    assert stratified_split(labels, 0.2, seed=1) == (train, val)
    assert stratified_split(labels, 0.2, seed=2) != (train, val)


# ---------------------------------------------------------------- linear probe


def test_linear_probe_separates_synthetic_classes(tmp_path, classifier):
    paths, labels = colour_images(tmp_path / "images", per_class=15)
    images = [Image.open(p).convert("RGB") for p in paths]
    features = classifier.encode_images(images).numpy()
    train, val = stratified_split(labels, 0.3, seed=0)
    head, chosen_c = train_probe(
        features[train], [labels[i] for i in train], features[val], [labels[i] for i in val]
    )
    predicted = head.predict(torch.from_numpy(features[val]))
    accuracy = np.mean([p == labels[i] for p, i in zip(predicted, val, strict=True)])
    assert accuracy >= 0.9, accuracy
    assert set(head.classes) == set(COLOURS) and chosen_c > 0


def test_probe_head_equals_scikit_learns_probabilities_also_for_two_classes():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    for classes in (["no", "yes"], ["a", "b", "c"]):
        y = [classes[i % len(classes)] for i in range(40)]
        model = LogisticRegression(max_iter=500).fit(x, y)
        head = ProbeHead.from_sklearn(model)
        assert torch.allclose(
            head.probabilities(torch.from_numpy(x)),
            torch.tensor(model.predict_proba(x), dtype=torch.float32),
            atol=1e-5,
        )


# ---------------------------------------------------------------- contrastive


def test_contrastive_loss_treats_same_label_images_as_matches():
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    texts = ["a photo of a cat.", "a photo of a cat.", "a photo of a dog."]
    text_emb = torch.stack([emb[0], emb[0], emb[2]])  # both cat images match the cat text
    perfect = contrastive_loss(emb, text_emb, texts, torch.tensor(100.0))
    shuffled = contrastive_loss(emb, text_emb.flip(0), texts, torch.tensor(100.0))
    assert perfect < shuffled


@pytest.mark.parametrize(("what", "lr"), [("projection", 1e-2), ("last-N", 1e-3), ("all", 1e-3)])
def test_training_lowers_the_loss_and_changes_only_the_chosen_parameters(
    tiny_model_dir, tmp_path, what, lr
):
    base = load_classifier(str(tiny_model_dir), "cpu")
    paths, labels = colour_images(tmp_path / "images", per_class=4)
    pixels = base.preprocess([Image.open(p).convert("RGB") for p in paths])
    texts = [f"a photo of a {label}." for label in labels]
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    torch.manual_seed(0)
    trainer = ContrastiveTrainer(
        base.model,
        base.processor.tokenizer,
        torch.device("cpu"),
        train=what,
        last_n=1,
        learning_rate=lr,
    )
    losses = [trainer.step(pixels, texts) for _ in range(12)]
    assert losses[-1] < losses[0] * 0.8, losses
    chosen = set(trainable_parameters(base.model, what, 1))
    changed = {
        n for n, p in base.model.named_parameters() if not torch.equal(p.detach(), before[n])
    }
    assert changed and changed <= chosen
    if what == "projection":
        assert changed <= {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    if what == "last-N":
        assert not any(
            ".layers.0." in n for n in changed
        )  # tiny towers have 2 blocks: only the last trains


# ---------------------------------------------------------------- the job


def labelled_csv(tmp_path, per_class=10):
    paths, labels = colour_images(tmp_path / "images", per_class=per_class)
    source = tmp_path / "labelled.csv"
    pd.DataFrame(
        {"image": paths, "label": labels, "caption": [f"a {label} square" for label in labels]}
    ).to_csv(source, index=False)
    return source


def make_job(tmp_path, data_csv=None, **overrides):
    """A job folder over the synthetic colours (or `data_csv`), local files allowed."""
    spec = FinetuneSpec(
        data_csv=str(data_csv or labelled_csv(tmp_path)),
        image_column=overrides.pop("image_column", "image"),
        label_columns=overrides.pop("label_columns", ("label",)),
        name=overrides.pop("name", "colours"),
        base_model=overrides.pop("base_model"),
        allow_local_files=True,
        validation_fraction=overrides.pop("validation_fraction", 0.3),
        **overrides,
    )
    return new_finetune_folder(load_settings().data_dir, spec)


def run_job(app_env, tmp_path, **overrides):
    folder = make_job(tmp_path, **overrides)
    return folder, run_finetune(folder, load_settings())


def test_probe_job_saves_a_model_with_metrics_and_beats_chance(app_env, tmp_path, tiny_model_dir):
    folder, state = run_job(app_env, tmp_path, base_model=str(tiny_model_dir), method="probe")
    assert state.status == "finished", state.message
    result = folder.result()
    assert result["validation_images"] == 9 and result["train_images"] == 21
    assert result["trained"]["accuracy"] >= 0.8
    assert set(result["baseline"]) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    saved = app_env / "models" / "colours"
    metadata = read_metadata(saved)
    assert metadata["method"] == "probe" and metadata["base_model"] == str(tiny_model_dir)
    assert metadata["metrics"]["trained"]["accuracy"] == result["trained"]["accuracy"]
    heads = load_heads(saved)
    head = heads.attributes[0].head
    assert sorted(head.classes) == sorted(COLOURS) and head.weight.shape[0] == 3
    assert any(e["kind"] == "probe" for e in folder.progress())


def test_contrastive_job_trains_stops_early_and_reloads_identically(
    app_env, tmp_path, tiny_model_dir
):
    folder, state = run_job(
        app_env,
        tmp_path,
        base_model=str(tiny_model_dir),
        method="contrastive",
        epochs=6,
        patience=2,
        batch_size=8,
        learning_rate=1e-3,
        train="all",
    )
    assert state.status == "finished", state.message
    events = folder.progress()
    steps = [e for e in events if e["kind"] == "step"]
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert steps and epochs and state.best_epoch in [e["epoch"] for e in epochs]
    assert 1 <= len(epochs) <= 6
    reloaded = load_classifier(str(app_env / "models" / "colours"), "cpu")
    image = Image.new("RGB", (40, 40), (200, 40, 40))
    first = reloaded.encode_images([image])
    again = load_classifier(str(app_env / "models" / "colours"), "cpu").encode_images([image])
    assert torch.equal(first, again)
    base = load_classifier(str(tiny_model_dir), "cpu").encode_images([image])
    assert not torch.allclose(first, base)  # training changed the model


def test_a_probe_model_is_used_by_name_with_its_own_classes(app_env, tmp_path, tiny_model_dir):
    from tests.test_cli import run_classify, run_cli

    folder, state = run_job(app_env, tmp_path, base_model=str(tiny_model_dir), method="probe")
    assert state.status == "finished"
    image = tmp_path / "red.png"
    Image.new("RGB", (40, 40), COLOURS["red"]).save(image)
    done = run_cli("predict", str(image), "--model", "colours", "--json")
    assert done.returncode == 0, done.stderr
    top = json.loads(done.stdout)["top"]
    assert sorted(t["label"] for t in top) == sorted(COLOURS)
    assert top[0]["label"] == "red"  # the probe separates these colours (see the test above)

    labels = tmp_path / "labels.txt"
    labels.write_text("blue\nred\ngreen\n", "utf-8")
    same_classes = run_cli(
        "predict", str(image), "--model", "colours", "--labels", str(labels), "--json"
    )
    assert same_classes.returncode == 0 and json.loads(same_classes.stdout)["top"] == top
    labels.write_text("red\ncar\n", "utf-8")
    wrong = run_cli("predict", str(image), "--model", "colours", "--labels", str(labels))
    assert wrong.returncode == 1 and "has its own 3 classes" in wrong.stderr

    source = tmp_path / "in.csv"
    source.write_text(f"sku,image_url\n1,{image}\n", "utf-8")
    classified = run_classify(
        source, tmp_path / "out.csv", "--model", "colours", "--url-column", "image_url"
    )
    assert classified.returncode == 0, classified.stderr
    assert "predicted_category" in (tmp_path / "out.csv").read_text("utf-8")


# ---------------------------------------------------------------- real images: Fashion-MNIST

needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist.available() and not os.environ.get("CI"),
    reason="needs Debian's dataset-fashion-mnist package (.ci/run installs it)",
)


@needs_fashion_mnist
@pytest.mark.parametrize(
    ("method", "settings", "floor"),
    [
        ("probe", {}, 0.30),
        (
            "contrastive",
            {"epochs": 8, "learning_rate": 1e-3, "train": "all", "batch_size": 32},
            0.25,
        ),
    ],
)
def test_fashion_mnist_clearly_beats_chance(
    app_env, tmp_path, tiny_model_dir, method, settings, floor
):
    images, labels = fashion_mnist.sample(per_class=30)
    source = fashion_mnist.write_labelled_csv(images, labels, tmp_path / "fashion")
    folder, state = run_job(
        app_env,
        tmp_path,
        data_csv=source,
        name=f"fashion-{method}",
        base_model=str(tiny_model_dir),
        method=method,
        **settings,
    )
    assert state.status == "finished", state.message
    result = folder.result()
    assert result["validation_images"] == 90  # 30 % of 300, stratified: 9 per class
    assert result["trained"]["accuracy"] >= floor, result["trained"]["accuracy"]  # chance: 0.10


def test_a_new_model_replaces_an_old_one_of_the_same_name_whole(app_env, tmp_path, tiny_model_dir):
    run_job(app_env, tmp_path / "first", base_model=str(tiny_model_dir), method="probe")
    assert load_heads(app_env / "models" / "colours") is not None
    run_job(
        app_env,
        tmp_path / "second",
        base_model=str(tiny_model_dir),
        method="contrastive",
        epochs=1,
        batch_size=8,
    )
    saved = app_env / "models" / "colours"
    assert read_metadata(saved)["method"] == "contrastive"
    assert load_heads(saved) is None  # the old probe head did not survive
    assert [p.name for p in (app_env / "models").iterdir()] == ["colours"]


def test_cancel_mid_training_leaves_a_readable_state_and_no_model(
    app_env, tmp_path, tiny_model_dir
):
    folder = make_job(
        tmp_path,
        name="cancelled",
        base_model=str(tiny_model_dir),
        method="contrastive",
        epochs=20,
        batch_size=4,
    )
    settings = load_settings()

    def cancel_at_step_3(state):
        if state.step == 3:
            folder.request_cancel()

    state = run_finetune(folder, settings, cancel_at_step_3)
    assert state.status == "cancelled" and state.step == 3
    assert folder.state().status == "cancelled" and "no model was saved" in folder.state().message
    assert [e["step"] for e in folder.progress() if e["kind"] == "step"] == [1, 2, 3]
    assert not (app_env / "models" / "cancelled").exists() and folder.result() is None


def test_a_saved_model_gives_the_same_outputs_as_before_saving(tmp_path, tiny_model_dir):
    from core.engine.classifier import ClipClassifier
    from core.engine.trained_models import save_trained_model

    base = load_classifier(str(tiny_model_dir), "cpu")
    paths, labels = colour_images(tmp_path / "images", per_class=3)
    images = [Image.open(p).convert("RGB") for p in paths]
    trainer = ContrastiveTrainer(
        base.model, base.processor.tokenizer, torch.device("cpu"), train="all", learning_rate=1e-3
    )
    for _ in range(3):
        trainer.step(base.preprocess(images), [f"a photo of a {label}." for label in labels])
    trained = ClipClassifier(base.model.eval(), base.processor, "trained", torch.device("cpu"))
    before = trained.classify(images, list(COLOURS))
    folder = tmp_path / "models" / "trained"
    save_trained_model(folder, base.model, base.processor, {"classes": list(COLOURS)})
    after = load_classifier(str(folder), "cpu").classify(images, list(COLOURS))
    assert after == before
    label_set = json.loads((folder / "label_set.json").read_text("utf-8"))
    assert [e["label"] for e in label_set["labels"]] == list(COLOURS)


def test_training_time_is_measured_on_the_training_path(classifier, monkeypatch):
    import core.engine.cpu_linear as cpu_linear
    from core.training.trainers import seconds_per_image

    kernels = []
    inference = cpu_linear._onednn_linear
    monkeypatch.setattr(
        cpu_linear, "_onednn_linear", lambda *a: kernels.append("onednn") or inference(*a)
    )
    assert seconds_per_image(classifier) > 0
    assert kernels == []  # gradients on: the kernels a training step uses, not inference's


@pytest.mark.parametrize("method", ["probe", "contrastive"])
def test_training_from_a_trained_probe_model_starts_from_its_clip_weights(
    app_env, tmp_path, tiny_model_dir, method
):
    _folder, first = run_job(app_env, tmp_path, base_model=str(tiny_model_dir), method="probe")
    assert first.status == "finished", first.message
    source, why = training_start("colours", app_env)
    assert source == str(app_env / "models" / "colours")
    assert "linear probe on" in why and "without the probe's own classes" in why
    _again, state = run_job(
        app_env,
        tmp_path / "second",
        base_model="colours",  # the name, as the sidebar and `--model colours` give it
        method=method,
        name="colours-2",
        epochs=2,
        batch_size=8,
    )
    assert state.status == "finished", state.message
    metadata = read_metadata(app_env / "models" / "colours-2")
    assert metadata["base_model"] == "colours" and metadata["method"] == method


def bulk_job_over(app_env, source, model_dir):
    """A finished bulk job over `source` (its `image` column), with stored embeddings."""
    from core.bulk.jobs import JobSpec, new_job_folder
    from core.bulk.pipeline import BulkJob
    from core.fetch.download import FetchOptions, ImageFetcher
    from core.labels.label_set import LabelSet

    classifier = load_classifier(str(model_dir), "cpu")
    folder = new_job_folder(app_env, "colours")
    sets = (LabelSet("colour", tuple(COLOURS)),)
    spec = JobSpec(str(source), "image", sets, classifier.name, batch_size=4)
    folder.write_spec(spec.with_input_fingerprint())
    BulkJob(folder, classifier, ImageFetcher(FetchOptions(allow_local_files=True))).run()
    return folder


def test_a_probe_on_a_bulk_jobs_output_trains_on_its_stored_embeddings(
    app_env, tmp_path, tiny_model_dir
):
    source = labelled_csv(tmp_path)
    job = bulk_job_over(app_env, source, tiny_model_dir)
    for image in pd.read_csv(source)["image"]:
        Path(image).unlink()  # the images are gone: only the job's embeddings can be used
    folder, state = run_job(
        app_env, tmp_path, data_csv=source, base_model=str(tiny_model_dir), method="probe",
        embeddings_job=str(job.path),
    )
    assert state.status == "finished", state.message
    result = folder.result()
    assert result["images_not_loaded"] == 0 and result["train_images"] == 21
    assert result["trained"]["accuracy"] >= 0.8


def test_embeddings_from_another_vision_tower_are_not_used(app_env, tmp_path, tiny_model_dir):
    source = labelled_csv(tmp_path)
    job = bulk_job_over(app_env, source, tiny_model_dir)
    meta = json.loads((job.path / "embeddings.json").read_text())
    (job.path / "embeddings.json").write_text(json.dumps({**meta, "vision_digest": "other"}))
    for image in pd.read_csv(source)["image"]:
        Path(image).unlink()  # so only the (refused) stored embeddings could have been used
    folder = make_job(
        tmp_path, data_csv=source, base_model=str(tiny_model_dir), method="probe",
        embeddings_job=str(job.path),
    )
    with pytest.raises(TrainingError, match="Only 0 of 30 images could be loaded"):
        run_finetune(folder, load_settings())
