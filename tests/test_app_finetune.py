"""The Fine-tune page with AppTest: a job from the command line shows its result; a job started
from the page runs in its own process and can be cancelled; the model is then usable."""

import os
import time

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.training.job import FinetuneFolder, list_finetune_jobs
from tests.conftest import ROOT
from tests.images import encode
from tests.test_finetune import COLOURS, run_job


def finetune_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    return at.switch_page("app_pages/finetune.py").run()


def cli_probe_job(tmp_path, tiny_model_dir) -> FinetuneFolder:
    """A probe job run the way the command line runs it (in the foreground, local files)."""
    folder, state = run_job(None, tmp_path, base_model=str(tiny_model_dir), method="probe")
    assert state.status == "finished"
    return folder


def test_a_job_run_from_the_command_line_shows_its_result(app_env, tmp_path, tiny_model_dir):
    job = cli_probe_job(tmp_path, tiny_model_dir)
    at = finetune_page()
    assert not at.exception
    assert at.selectbox(key="ft_job_pick").value == job.id
    summary = at.dataframe[0].value
    assert list(summary["model"]) == ["zero-shot (base model)", "trained (probe)"]
    assert summary["accuracy"].iloc[1] == job.result()["trained"]["accuracy"]
    assert len(at.dataframe[1].value) == 3
    assert {c.proto.id for c in at.get("plotly_chart")}  # the confusion matrix is drawn
    assert any("Saved as model 'colours'" in s.value for s in at.success)


def test_the_trained_probe_is_in_the_model_picker_and_labels_with_its_classes(
    app_env, tmp_path, tiny_model_dir, image_server
):
    cli_probe_job(tmp_path, tiny_model_dir)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.selectbox(key="trained_model").select("colours").run()
    assert at.text_input(key="model_name").value == "colours"
    assert any("its own 3 classes" in c.value for c in at.sidebar.caption)
    assert at.radio(key="single_labels_source").value == "The model's own classes"
    image_server.files["red.png"] = encode(Image.new("RGB", (40, 40), COLOURS["red"]))
    at.text_input(key="single_url").input(image_server.url("/files/red.png")).run()
    assert not at.exception
    assert at.markdown[0].value.startswith("### red")  # the probe separates the colours
    assert any("(the model's own classes)" in c.value for c in at.caption)
    assert not any("label embeddings" in c.value for c in at.caption)  # a probe encodes none


def test_upload_shows_class_counts_warns_about_small_classes_and_starts_and_cancels(
    app_env, image_server
):
    rows = [(image_server.url(f"/img/{i}.png"), "shoe" if i % 3 else "bag") for i in range(24)]
    rows.append((image_server.url("/img/99.png"), "hat"))  # one image: too few
    data = pd.DataFrame(rows, columns=["image_url", "label"]).to_csv(index=False).encode()
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    assert at.selectbox(key="ft_image_col").value == "image_url"
    assert at.selectbox(key="ft_label_col").value == "label"
    assert at.get("plotly_chart")
    assert any("fewer than 5 images" in w.value and "hat" in w.value for w in at.warning)
    at.radio(key="ft_method").set_value("Fine-tune CLIP contrastively").run()
    at.number_input(key="ft_epochs").set_value(50).run()
    assert any("will take about" in i.value for i in at.info)  # up-front estimate on a CPU
    at.text_input(key="ft_name").input("shoes").run()
    at.button(key="ft_start").click().run()
    assert not at.exception
    [job] = list_finetune_jobs(app_env)
    job.request_cancel()  # at once: the separate process must see it and stop cleanly
    deadline = time.monotonic() + 90
    while job.reconcile().active and time.monotonic() < deadline:
        time.sleep(0.2)
    state = job.state()
    assert state.status == "cancelled", state
    assert state.pid and state.pid != os.getpid()  # it ran in a process of its own
    assert not (app_env / "models" / "shoes").exists()
    at.run()
    assert any("Cancelled" in i.value for i in at.info)


@pytest.mark.parametrize("bad", [b"", b"image_url,label\n"])
def test_a_bad_labelled_csv_is_a_clear_message(app_env, bad):
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", bad, "text/csv")).run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith("The labelled CSV")


def test_a_bulk_jobs_corrected_output_is_labelled_data(app_env, image_server):
    from core.bulk.review import save_corrections
    from tests import test_app_bulk

    pytest.data_dir = app_env
    job = test_app_bulk.upload_and_start(
        test_app_bulk.bulk_page(), test_app_bulk.products_csv(image_server, rows=12)
    )
    save_corrections(job, {0: "hats"})
    at = finetune_page()
    at.radio(key="ft_source").set_value("The output of a bulk job").run()
    assert at.selectbox(key="ft_bulk_job").value.id == job.id
    assert at.selectbox(key="ft_label_col").value == "predicted_category"
    assert at.selectbox(key="ft_image_col").value == "PRODUCT_MAIN_IMAGE_URL"
    assert any("10 labelled images" in c.value for c in at.caption)  # 2 of 12 rows failed
    at.checkbox(key="ft_only_human").check().run()
    assert not at.exception
    assert any(c.value.startswith("1 rows:") for c in at.caption)


@pytest.mark.parametrize(
    "columns, expected",
    [
        (["image_url", "colour"], "colour"),
        (["sku", "image_url", "title", "colour"], "colour"),
        (["colour", "image_url"], "colour"),
        (["image_url", "category", "colour"], "category"),
    ],
)
def test_the_label_column_is_detected_and_never_the_image_column(
    app_env, image_server, columns, expected
):
    colours = ["red", "green", "blue", "black"]
    values = {
        "image_url": [image_server.url(f"/img/{i}.png") for i in range(40)],
        "colour": [colours[i % 4] for i in range(40)],
        "category": [["shoe", "bag"][i % 2] for i in range(40)],
        "sku": [f"{i:05d}" for i in range(40)],
        "title": [f"Product number {i}" for i in range(40)],
    }
    data = pd.DataFrame({c: values[c] for c in columns}).to_csv(index=False).encode()
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    assert at.selectbox(key="ft_image_col").value == "image_url"
    assert at.selectbox(key="ft_label_col").value == expected


def test_with_a_trained_probe_selected_the_page_says_where_training_starts(
    app_env, tmp_path, tiny_model_dir, image_server
):
    cli_probe_job(tmp_path, tiny_model_dir)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.selectbox(key="trained_model").select("colours").run()
    at.switch_page("app_pages/finetune.py").run()
    rows = [(image_server.url(f"/img/{i}.png"), "shoe" if i % 2 else "bag") for i in range(20)]
    data = pd.DataFrame(rows, columns=["image_url", "label"]).to_csv(index=False).encode()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    at.text_input(key="ft_name").input("bags").run()
    assert not at.exception
    assert any(
        "Base model: 'colours' is a linear probe" in i.value and "without the probe" in i.value
        for i in at.info
    )


def test_after_start_the_jobs_tab_shows_the_new_job(
    app_env, tmp_path, tiny_model_dir, image_server
):
    earlier = cli_probe_job(tmp_path, tiny_model_dir)
    at = finetune_page()
    assert at.selectbox(key="ft_job_pick").value == earlier.id
    rows = [(image_server.url(f"/img/{i}.png"), "shoe" if i % 2 else "bag") for i in range(20)]
    data = pd.DataFrame(rows, columns=["image_url", "label"]).to_csv(index=False).encode()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    at.text_input(key="ft_name").input("bags").run()
    at.button(key="ft_start").click().run()
    new = next(job for job in list_finetune_jobs(app_env) if job.id != earlier.id)
    new.request_cancel()
    assert at.selectbox(key="ft_job_pick").value == new.id
    deadline = time.monotonic() + 90
    while new.reconcile().active and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_finished_job_keeps_its_curves_with_readable_axes_and_names_its_data(
    app_env, tmp_path, tiny_model_dir
):
    import json

    job, state = run_job(
        None,
        tmp_path,
        base_model=str(tiny_model_dir),
        method="contrastive",
        epochs=3,
        batch_size=8,
        learning_rate=1e-3,
        data_name="colours.csv",
    )
    assert state.status == "finished"
    at = finetune_page()
    assert not at.exception
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert {"ft_loss", "ft_val_acc"} <= set(charts)  # still there after the job ended
    accuracy = charts["ft_val_acc"]["layout"]
    assert accuracy["xaxis"]["dtick"] == 1 and accuracy["xaxis"]["title"]["text"] == "epoch"
    assert accuracy["yaxis"]["title"]["text"] == "validation accuracy"
    assert charts["ft_loss"]["layout"]["xaxis"]["title"]["text"] == "training step"
    assert any("data colours.csv" in c.value for c in at.caption)


def test_training_settings_explain_themselves(app_env, image_server):
    rows = [(image_server.url(f"/img/{i}.png"), "shoe" if i % 2 else "bag") for i in range(20)]
    data = pd.DataFrame(rows, columns=["image_url", "label"]).to_csv(index=False).encode()
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("labelled.csv", data, "text/csv")).run()
    at.radio(key="ft_method").set_value("Fine-tune CLIP contrastively").run()
    for key in ("ft_seed", "ft_wd", "ft_batch", "ft_lr", "ft_epochs"):
        assert at.number_input(key=key).help, key
    assert at.slider(key="ft_val").help


# ---------------------------------------------------------------- attributes and product text


def tables_with(at: AppTest, column: str) -> list[pd.DataFrame]:
    """The page's tables that have `column`, top to bottom (AppTest does not expose a table's
    key)."""
    return [d.value for d in at.dataframe if column in d.value.columns]


def test_two_attributes_started_from_the_page_show_per_attribute_results(
    app_env, tmp_path, image_server
):
    from tests.test_catalogue_training import shapes_csv

    data = shapes_csv(tmp_path, image_server).read_bytes()
    at = finetune_page()
    at.file_uploader(key="ft_upload").set_value(("shapes.csv", data, "text/csv")).run()
    assert at.selectbox(key="ft_image_col").value == "image"
    at.selectbox(key="ft_label_col").select("colour").run()
    at.multiselect(key="ft_more_labels").select("shape").run()
    assert {c.key for c in at.get("plotly_chart")} >= {"ft_class_counts", "ft_class_counts_1"}
    [fold] = tables_with(at, "folded into 'other'")  # before training: what goes into "other"
    assert list(fold["attribute"]) == ["colour", "shape"]
    assert list(fold["folded into 'other'"]) == ["yellow (3)", "-"]
    at.radio(key="ft_method").set_value("Fine-tune CLIP contrastively").run()
    assert any(w.value.startswith("Contrastive fine-tuning trains one label") for w in at.warning)
    at.radio(key="ft_method").set_value(at.radio(key="ft_method").options[0]).run()
    at.text_input(key="ft_name").input("shapes").run()
    at.button(key="ft_start").click().run()
    assert not at.exception
    [job] = list_finetune_jobs(app_env)
    deadline = time.monotonic() + 120
    while job.reconcile().active and time.monotonic() < deadline:
        time.sleep(0.3)
    assert job.state().status == "finished", job.state()
    at.run()
    assert not at.exception
    [overall] = tables_with(at, "trained")
    assert list(overall["trained"]) == [
        job.result()["overall"]["mean_accuracy"],
        job.result()["overall"]["all_right"],
    ]
    compared, per_class = tables_with(at, "saved"), tables_with(at, "precision")
    for number, name in enumerate(("colour", "shape")):
        assert list(compared[number]["model"]) == ["zero-shot, image", "probe, image only"]
        assert list(compared[number]["saved"]) == ["", "saved"]
        assert len(per_class[number]) == (4 if number == 0 else 2)
        assert any(f"Attribute '{name}'" in h.value for h in at.subheader)
    charts = {c.key for c in at.get("plotly_chart")}
    wanted = {"ft_compare_chart_0", "ft_compare_chart_1", "ft_confusion_0", "ft_confusion_1"}
    assert wanted <= charts
    assert any("Folded into 'other' (too few examples): yellow." in c.value for c in at.caption)


def test_product_text_shows_every_model_compared_and_explains_caption_and_text(
    app_env, tmp_path, image_server, tiny_model_dir
):
    from tests.test_catalogue_training import catalogue_csv

    source = catalogue_csv(tmp_path, image_server)
    _job, state = run_job(
        None, tmp_path, data_csv=source, image_column="image_url", text_columns=("title",),
        base_model=str(tiny_model_dir), name="catalogue",
    )  # fmt: skip
    assert state.status == "finished", state.message
    at = finetune_page()
    assert not at.exception
    [compared] = tables_with(at, "saved")
    assert len(compared) == 7 and compared["saved"].tolist().count("saved") == 1
    assert compared.loc[compared["saved"] == "saved", "model"].item() == "probe, image + text"
    assert any("Product text from title" in c.value for c in at.caption)
    at.file_uploader(key="ft_upload").set_value(
        ("catalogue.csv", source.read_bytes(), "text/csv")
    ).run()
    assert any("caption column" in c.value and "product-text" in c.value for c in at.caption)
    at.multiselect(key="ft_text_cols").select("title").run()
    assert at.slider(key="ft_text_dropout").value == 0.3
    assert any("with product text" in c.value for c in at.caption)
