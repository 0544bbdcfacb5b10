"""Product text in bulk jobs (pipeline, `classify`, re-label, retry and the Bulk page) and the
columns of a trained model of several attributes, on the tiny model and a loopback server."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.bulk.columns import TEXT_COLUMNS, OutputLayout
from core.bulk.csv_input import CsvInputError
from core.bulk.jobs import JobFolder, JobSpec, list_jobs
from core.bulk.pipeline import BulkJob, check_input
from core.bulk.retry import error_summary, retry_failed_rows
from core.bulk.review import load_results
from core.cli.classify import _cli_job_folder
from core.cli.main import main
from core.config import load_settings
from core.embeddings.store import DATA_FILE
from core.labels.label_set import LabelSet
from tests.attribute_models import ATTRIBUTES, save_attribute_model
from tests.conftest import ROOT
from tests.images import image_bytes
from tests.test_pipeline import Interrupt, interrupt_after, make_fetcher

CATEGORIES = LabelSet("category", ("shoes", "bags", "hats", "watches", "belts", "scarves"))
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
TITLES = ["red shoes", "blue bag", "green hat", "a watch", "leather belt", "silk scarf", ""]
SIDES = ["predicted_category", "confidence", "top_categories"]


@pytest.fixture
def fetcher():
    f = make_fetcher()
    yield f
    f.close()


def catalogue(path, server, rows=40, missing_every=5, titles=TITLES):
    """Products of several colours (every `missing_every`-th image missing) with titles."""
    for i, colour in enumerate(COLOURS):
        server.files[f"c{i}.png"] = image_bytes("PNG", color=colour)
    records = []
    for i in range(rows):
        missing = missing_every and i % missing_every == missing_every - 1
        image = "/missing.png" if missing else f"/files/c{i % len(COLOURS)}.png"
        title = titles[i % len(titles)]
        records.append({"sku": f"{i:03d}", "title": title, "image_url": server.url(image)})
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def text_job(tmp_path, source, name="job", columns=("title",), mode="both", **spec):
    folder = JobFolder(tmp_path / name)
    settings = {"top_k": 3, "batch_size": 8, "workers": 4} | spec
    folder.write_spec(
        JobSpec(
            str(source),
            "image_url",
            (CATEGORIES,),
            "tiny",
            text_columns=tuple(columns),
            text_mode=mode,
            **settings,
        ).with_input_fingerprint()
    )
    return folder


def read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_text_mode_labels_every_row_from_its_text_when_every_image_fails(
    tmp_path, image_server, classifier, fetcher
):
    titles = ["red shoes", "blue bag", "green hat", "a watch", "", "silk scarf"]
    source = catalogue(tmp_path / "in.csv", image_server, rows=12, missing_every=1, titles=titles)
    state = BulkJob(text_job(tmp_path, source, mode="text"), classifier, fetcher).run()
    out = read(tmp_path / "job" / "results.csv")
    assert list(out.columns)[3:] == [*SIDES, "error", *TEXT_COLUMNS]
    assert (out["error"] == "HTTP 404").all()  # the image's error is kept
    has_text = out["title"] != ""
    assert (out.loc[has_text, "predicted_category"] != "").all()
    assert (out.loc[has_text, "predicted_category"] == out.loc[has_text, "text_category"]).all()
    assert set(out.loc[has_text, "decided_by"]) == {"text"}
    assert (out["image_category"] == "").all()
    assert (out.loc[~has_text, SIDES + ["decided_by"]] == "").all().all()  # nothing to read
    assert state.rows_failed == (~has_text).sum() == 2  # failed: rows with no category only
    summary = error_summary(out, "image_url")
    assert summary["rows"].tolist() == [12] and summary["labelled from text"].tolist() == [10]


def test_both_with_empty_texts_equals_image_mode(tmp_path, image_server, classifier, fetcher):
    source = catalogue(tmp_path / "in.csv", image_server, rows=30, titles=[""])
    plain = text_job(tmp_path, source, name="plain", columns=(), mode="image")
    both = text_job(tmp_path, source, name="both", mode="both")
    image = text_job(tmp_path, source, name="image", mode="image")
    outputs = {}
    for folder in (plain, both, image):
        BulkJob(folder, classifier, fetcher).run()
        outputs[folder.id] = read(folder.results_path)
    assert "decided_by" not in outputs["plain"].columns  # no text: today's columns
    for name in ("both", "image"):
        pd.testing.assert_frame_equal(
            outputs[name][SIDES + ["error"]], outputs["plain"][SIDES + ["error"]]
        )
    labelled = outputs["both"][outputs["both"]["predicted_category"] != ""]
    assert set(labelled["decided_by"]) == {"image"}
    assert (labelled["image_category"] == labelled["predicted_category"]).all()


def test_decided_by_is_consistent_with_the_columns_on_every_row(
    tmp_path, image_server, classifier, fetcher
):
    source = catalogue(tmp_path / "in.csv", image_server, rows=70)
    BulkJob(text_job(tmp_path, source), classifier, fetcher).run()
    out = read(tmp_path / "job" / "results.csv")
    assert {"both agree", "image", "text"} <= set(out["decided_by"])
    for row in out.itertuples():
        image, text, predicted = row.image_category, row.text_category, row.predicted_category
        if not predicted:
            assert row.decided_by == "" and not image and not text
        elif row.decided_by == "both agree":
            assert image == text == predicted
        else:
            assert image != text
            if not text:
                assert row.decided_by == "image" and predicted == image
            elif not image:
                assert row.decided_by == "text" and predicted == text and row.error
            elif predicted in (image, text):
                assert row.decided_by == ("image" if predicted == image else "text")
        top = json.loads(row.top_categories or "[]")
        assert [t["label"] for t in top][:1] == ([predicted] if predicted else [])


def test_rows_sharing_titles_run_the_text_tower_once_per_distinct_title(
    tmp_path, image_server, fresh_classifier, fetcher
):
    titles = ["red shoes", "blue bag", "red shoes", "green hat", ""]
    source = catalogue(tmp_path / "in.csv", image_server, rows=60, titles=titles)
    BulkJob(text_job(tmp_path, source), fresh_classifier, fetcher).run()
    assert fresh_classifier.text_side.product_texts.texts_encoded == 3
    assert len(read(tmp_path / "job" / "results.csv")) == 60


def test_an_interrupted_text_job_resumes_to_the_same_bytes(
    tmp_path, image_server, classifier, fetcher
):
    titles = [f"product {i} {t}" for i, t in enumerate(TITLES * 4)] + [""]
    source = catalogue(tmp_path / "in.csv", image_server, rows=120, titles=titles)
    clean = text_job(tmp_path, source, name="clean", batch_size=4)
    BulkJob(clean, classifier, fetcher).run()
    broken = text_job(tmp_path, source, name="broken", batch_size=4)
    with pytest.raises(Interrupt):
        BulkJob(broken, classifier, fetcher, on_progress=interrupt_after(50)).run()
    assert 50 <= broken.state().rows_done < 120
    classifier.text_side.product_texts.clear()  # a new process: nothing cached
    final = BulkJob(broken, classifier, fetcher).run(resume=True)
    assert final.status == "finished" and final.rows_done == 120
    assert broken.results_path.read_bytes() == clean.results_path.read_bytes()
    assert (broken.path / DATA_FILE).read_bytes() == (clean.path / DATA_FILE).read_bytes()


def test_a_job_whose_text_columns_cannot_be_used_is_refused_before_it_starts(
    tmp_path, image_server, classifier, fetcher
):
    source = catalogue(tmp_path / "in.csv", image_server, rows=5)
    for columns, mode, message in [
        (("name",), "both", "Column 'name' is not in the input; its columns are: sku, title"),
        (("image_url",), "text", "Column 'image_url' holds the images"),
        ((), "text", "needs a product-text column"),
    ]:
        folder = text_job(tmp_path, source, columns=columns, mode=mode)
        with pytest.raises(CsvInputError if columns else ValueError, match=message):
            BulkJob(folder, classifier, fetcher).run()
        assert not folder.results_path.exists() and folder.state() is None
    folder = text_job(tmp_path, source)
    source.write_bytes(source.read_bytes().replace(b"blue bag", "café bag".encode("latin-1")))
    with pytest.raises(CsvInputError, match="not UTF-8"):
        check_input(folder.spec())


def test_old_specs_load_without_product_text(tmp_path):
    spec = JobSpec("in.csv", "url", (CATEGORIES,), "tiny")
    saved = {k: v for k, v in spec.to_dict().items() if not k.startswith("text_")}
    loaded = JobSpec.from_dict(saved)
    assert loaded == spec and not loaded.text_use.active
    with_text = JobSpec("in.csv", "url", (CATEGORIES,), "tiny", text_columns=("a", "b"))
    assert JobSpec.from_dict(json.loads(json.dumps(with_text.to_dict()))) == with_text


def test_retry_runs_failed_rows_again_with_the_jobs_text(
    tmp_path, image_server, classifier, fetcher
):
    urls = [image_server.url(f"/files/late-{i}.png") for i in range(4)]
    frame = pd.DataFrame({"title": ["red shoes", "", "blue bag", "hat"], "image_url": urls})
    frame.to_csv(tmp_path / "in.csv", index=False)
    folder = text_job(tmp_path, tmp_path / "in.csv", batch_size=4)
    assert BulkJob(folder, classifier, fetcher).run().rows_failed == 1  # the row without text
    assert set(load_results(folder)["decided_by"]) == {"text", ""}
    for i in range(3):
        image_server.files[f"late-{i}.png"] = image_server.png
    outcome = retry_failed_rows(folder, classifier, fetcher)
    assert (outcome.retried, outcome.fixed, outcome.still_failed) == (4, 3, 1)
    after = load_results(folder)
    assert after["error"].tolist() == ["", "", "", "HTTP 404"]
    assert after["decided_by"].iloc[1] == "image" and after["decided_by"].iloc[3] == "text"
    assert folder.state().rows_failed == 0


def test_trained_attributes_each_get_columns_and_the_first_repeats_in_the_contract_ones():
    sets = tuple(LabelSet(name, classes, attribute=name) for name, classes in ATTRIBUTES.items())
    layout = OutputLayout(sets)
    assert layout.header(["sku"]) == [
        "sku",
        "predicted_category",
        "confidence",
        "top_categories",
        "error",
        "baseColour_category",
        "baseColour_confidence",
        "baseColour_top_categories",
        "shape_category",
        "shape_confidence",
        "shape_top_categories",
    ]
    assert OutputLayout(sets[:1]).header([]) == ["predicted_category", *SIDES[1:], "error"]
    assert OutputLayout(sets, text=True).added()[4:7] == list(TEXT_COLUMNS)


# The command line (in this process: `main` is what `python -m core` runs).


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(CATEGORIES.labels) + "\n", encoding="utf-8")
    return path


def classify(capsys, source, output, *options):
    code = main(["classify", "--input", str(source), "--output", str(output), *options])
    return code, capsys.readouterr().err


def test_classify_with_text_columns_end_to_end_and_resumed(
    app_env, image_server, labels_file, tmp_path, capsys
):
    source = tmp_path / "products.csv"
    catalogue(source, image_server, rows=20)
    frame = read(source).assign(description=lambda f: "made of " + f["sku"])
    frame.to_csv(source, index=False)
    output = tmp_path / "out.csv"
    options = ["--labels", str(labels_file), "--text-column", "title"]
    options += ["--text-column", "description", "--text-weight", "0.3", "--batch-size", "4"]
    code, err = classify(capsys, source, output, *options)
    assert code == 0, err
    assert "Labelled 20 rows (0 failed)" in err  # missing images labelled from their text
    assert "Image and text agreed on" in err and "the image decided" in err
    out = read(output)
    assert list(out.columns) == ["sku", "title", "image_url", "description", *SIDES, "error"] + [
        *TEXT_COLUMNS
    ]
    assert set(out["decided_by"]) <= {"both agree", "image", "text"}
    spec = _cli_job_folder(load_settings(), source, output).spec()
    assert (spec.text_columns, spec.text_mode, spec.text_weight) == (
        ("title", "description"),
        "both",
        0.3,
    )
    before = output.read_bytes()
    code, err = classify(capsys, source, output, *options, "--resume")
    assert code == 0 and "Labelled 20 rows" in err and output.read_bytes() == before
    code, err = classify(capsys, source, output, *options[:-4], "--resume")  # another weight
    assert code == 1 and "other settings" in err


def _latin1_csv(path, server):
    catalogue(path, server, rows=3)
    path.write_bytes(path.read_bytes().replace(b"blue bag", "café bag".encode("latin-1")))


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing-column", "Column 'name' is not in"),
        ("url-column", "Column 'image_url' holds the images"),
        ("mode-without-column", "--text-mode text needs --text-column"),
        ("not-utf8", "is not UTF-8"),
        ("weight", "between 0 and 1"),
        ("folder", "--text-column applies to a CSV input"),
    ],
)
def test_unusable_text_settings_are_one_sentence_before_any_work(
    app_env, image_server, labels_file, tmp_path, capsys, case, fragment
):
    source = catalogue(tmp_path / "in.csv", image_server, rows=3)
    options = {
        "missing-column": ["--text-column", "name"],
        "url-column": ["--text-column", "image_url"],
        "mode-without-column": ["--text-mode", "text"],
        "not-utf8": ["--text-column", "title"],
        "weight": ["--text-column", "title", "--text-weight", "1.5"],
        "folder": ["--text-column", "title"],
    }[case]
    if case == "not-utf8":
        _latin1_csv(source, image_server)
    if case == "folder":
        source = tmp_path / "images"
        source.mkdir()
        (source / "a.png").write_bytes(image_server.png)
    output = tmp_path / "out.csv"
    code, err = classify(capsys, source, output, "--labels", str(labels_file), *options)
    assert code == 1 and err.startswith("error: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()
    assert not (app_env / "jobs").exists() or not any((app_env / "jobs").iterdir())


def test_a_latin1_csv_without_product_text_still_runs(
    app_env, image_server, labels_file, tmp_path, capsys
):
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    _latin1_csv(source, image_server)
    code, err = classify(capsys, source, output, "--labels", str(labels_file))
    assert code == 0, err


def test_a_model_of_several_attributes_fills_every_attribute_in_classify(
    app_env, tiny_model_dir, image_server, labels_file, tmp_path, capsys
):
    save_attribute_model(app_env, tiny_model_dir)
    source = catalogue(tmp_path / "in.csv", image_server, rows=15)
    output = tmp_path / "out.csv"
    code, err = classify(capsys, source, output, "--model", "catalogue", "--batch-size", "4")
    assert code == 0, err
    out = read(output)
    parts = ("category", "confidence", "top_categories")
    attribute_columns = [f"{name}_{part}" for name in ATTRIBUTES for part in parts]
    assert list(out.columns)[3:] == [*SIDES, "error", *attribute_columns]
    labelled = out[out["error"] == ""]
    assert len(labelled) == 12
    assert (out.loc[out["error"] != "", attribute_columns] == "").all().all()
    for name, classes in ATTRIBUTES.items():
        assert set(labelled[f"{name}_category"]) <= set(classes)
        top = json.loads(labelled[f"{name}_top_categories"].iloc[0])
        assert sorted(t["label"] for t in top) == sorted(classes)  # top 5 of 2 or 3 classes
    for part, contract in zip(parts, SIDES, strict=True):
        assert out[contract].tolist() == out[f"baseColour_{part}"].tolist()

    mixed = ["--model", "catalogue", "--labels", str(labels_file)]
    code, err = classify(capsys, source, tmp_path / "x.csv", *mixed)
    assert code == 1 and "cannot be mixed with label sets" in err and err.count("\n") == 1
    text_only = ["--model", "catalogue", "--text-column", "title", "--text-mode", "text"]
    code, err = classify(capsys, source, tmp_path / "y.csv", *text_only)
    assert code == 1 and "trained on images only" in err and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()


def test_a_model_trained_with_text_reads_each_rows_title_through_its_heads(
    app_env, tiny_model_dir, image_server, tmp_path, capsys
):
    save_attribute_model(app_env, tiny_model_dir, "with-text", with_text=True)
    source = catalogue(tmp_path / "in.csv", image_server, rows=15)
    output = tmp_path / "out.csv"
    code, err = classify(capsys, source, output, "--model", "with-text", "--text-column", "title")
    assert code == 0, err
    out = read(output)
    assert list(out.columns)[7:10] == list(TEXT_COLUMNS)
    assert "shape_category" in out.columns and "baseColour_category" in out.columns
    failed_image = (out["error"] != "") & (out["title"] != "")
    assert (out.loc[failed_image, "decided_by"] == "text").all() and failed_image.any()
    assert (out.loc[failed_image, "shape_category"] != "").all()  # its text head labels it
    assert "trained with product text" not in err
    code, err = classify(capsys, source, tmp_path / "image.csv", "--model", "with-text")
    assert code == 0 and "give --text-column title so it reads it" in err  # a hint, not a refusal


def test_relabel_of_a_text_job_decides_rows_again_with_their_text(
    app_env, image_server, labels_file, tmp_path, capsys
):
    source = catalogue(tmp_path / "in.csv", image_server, rows=25)
    output = tmp_path / "out.csv"
    options = ["--labels", str(labels_file), "--text-column", "title", "--batch-size", "4"]
    code, err = classify(capsys, source, output, *options)
    assert code == 0, err
    [job] = list_jobs(app_env)
    again = tmp_path / "again.csv"
    code = main(["relabel", "--job", job.id, "--labels", str(labels_file), "--output", str(again)])
    assert code == 0, capsys.readouterr().err
    first, second = read(output), read(again)
    assert list(second.columns) == list(first.columns)
    for column in ["predicted_category", "error", *TEXT_COLUMNS]:
        assert second[column].tolist() == first[column].tolist(), column
    text_rows = first["error"] != ""  # labelled from their text alone: the same scores
    same = second.loc[text_rows, "confidence"] == first.loc[text_rows, "confidence"]
    assert same.all()

    def scores(frame):
        return frame["confidence"].replace("", "0").astype(float)

    assert (scores(second) - scores(first)).abs().max() <= 2e-3


# The Bulk page.


def bulk_page(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    return at.switch_page("app_pages/bulk_csv.py").run()


def finished_job(data_dir):
    from app_pages.bulk.running import background_jobs

    [job] = [j for j in list_jobs(data_dir) if j.exists()]
    background_jobs().wait(job, 60)
    return job


def test_the_bulk_page_starts_a_text_job_and_shows_what_decided(app_env, image_server):
    source = catalogue(app_env.parent / "products.csv", image_server, rows=20)
    at = bulk_page()
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", source.read_bytes(), "text/csv")
    ).run()
    assert any("look like product text: title" in c.value for c in at.caption)
    at.text_area(key="bulk_sets_text_0").input("\n".join(CATEGORIES.labels)).run()
    [columns] = [m for m in at.multiselect if m.label.startswith("Product text columns")]
    columns.set_value(["image_url"]).run()
    assert "holds the images" in at.error[0].value and at.button(key="bulk_start").disabled
    [columns] = [m for m in at.multiselect if m.label.startswith("Product text columns")]
    columns.set_value(["title"]).run()
    assert not at.error
    assert at.radio(key="bulk_text_mode").value == "Image and text"
    at.slider(key="bulk_text_weight").set_value(0.7).run()
    at.button(key="bulk_start").click().run()
    job = finished_job(app_env)
    spec = job.spec()
    assert (spec.text_columns, spec.text_mode, spec.text_weight) == (("title",), "both", 0.7)
    at.run()
    assert not at.exception and not at.error
    results = load_results(job)
    metrics = {m.label: int(m.value.replace(",", "")) for m in at.metric}
    assert metrics == {
        "Image and text agree": (results["decided_by"] == "both agree").sum(),
        "The image decided": (results["decided_by"] == "image").sum(),
        "The text decided": (results["decided_by"] == "text").sum(),
    }
    assert sum(metrics.values()) == (results["predicted_category"] != "").sum() == 20
    [editor] = at.data_editor
    assert {"image_category", "text_category"} <= set(editor.value.columns)
    assert any("Rows whose image failed (4)" in h.value for h in at.subheader)
    at.number_input(key="bulk_gallery_count").set_value(24).run()
    no_picture = [c.value for c in at.caption if c.value.startswith("No picture (")]
    assert len(no_picture) == 4 and "labelled from its text" in no_picture[0]  # not broken
    likes = [b for b in at.button if b.key and b.key.startswith("bulk_gallery_like_")]
    assert len(likes) == 16  # nothing to look like without an image


def test_the_bulk_page_labels_every_attribute_of_a_trained_model(
    app_env, tiny_model_dir, image_server
):
    from app_pages.widgets import model_picker

    folder = save_attribute_model(app_env, tiny_model_dir)
    source = catalogue(app_env.parent / "products.csv", image_server, rows=10)
    at = bulk_page(**{model_picker.MODEL_KEY: str(folder)})
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", source.read_bytes(), "text/csv")
    ).run()
    assert any("trained on 2 attributes" in i.value for i in at.info)
    at.button(key="bulk_start").click().run()
    job = finished_job(app_env)
    assert [s.attribute for s in job.spec().label_sets] == list(ATTRIBUTES)
    at.run()
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs][:2] == list(ATTRIBUTES)  # charts, then review, by attribute
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"bulk_counts", "bulk_counts_1"} <= keys
    assert len(at.data_editor) == 2
    labelled = at.dataframe[-1].value
    assert {"baseColour_category", "shape_category"} <= set(labelled.columns)


def test_the_bulk_page_says_which_text_a_text_trained_model_learnt_from(
    app_env, tiny_model_dir, image_server
):
    from app_pages.widgets import model_picker

    folder = save_attribute_model(app_env, tiny_model_dir, "with-text", with_text=True)
    source = catalogue(app_env.parent / "products.csv", image_server, rows=6)
    at = bulk_page(**{model_picker.MODEL_KEY: str(folder)})
    at.file_uploader(key="bulk_upload").set_value(
        ("products.csv", source.read_bytes(), "text/csv")
    ).run()
    assert not at.exception and not at.error
    assert any("trained with product text (title)" in i.value for i in at.info)
