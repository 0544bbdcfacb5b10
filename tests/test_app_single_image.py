"""The app and its single-image page, driven with streamlit.testing.v1.AppTest."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.widgets import model_picker
from tests.conftest import ROOT
from tests.images import image_bytes

TIMEOUT = 60


def start_app(**state: object) -> AppTest:
    """Run app.py once, with `state` (e.g. the sidebar's model box) put in session state first."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def chart_spec(at: AppTest) -> dict:
    [chart] = at.get("plotly_chart")
    return json.loads(chart.proto.spec)


def set_labels(at: AppTest, labels: list[str]) -> None:
    at.text_area(key="single_labels").input("\n".join(labels)).run()


def give_url(at: AppTest, url: str) -> None:
    at.text_input(key="single_url").input(url).run()


LABELS = ["sneakers", "handbag", "wristwatch", "dress", "scarf", "belt", "cap"]


def test_sidebar_shows_the_loaded_model_and_device(app_env, tiny_model_dir):
    at = start_app()
    assert not at.exception
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert str(tiny_model_dir) in caption and "cpu" in caption
    assert at.sidebar.text_input(key=model_picker.MODEL_KEY).value == str(tiny_model_dir)


def test_url_and_labels_give_a_top5_chart_best_on_top(app_env, image_server):
    at = start_app()
    set_labels(at, LABELS)
    give_url(at, image_server.url("/product.jpg"))
    assert not at.exception and not at.error
    spec = chart_spec(at)
    bar = spec["data"][0]
    assert bar["orientation"] == "h"
    assert len(bar["y"]) == 5
    assert bar["x"] == sorted(bar["x"], reverse=True)
    assert spec["layout"]["yaxis"]["autorange"] == "reversed"  # first bar drawn on top
    top_label = bar["y"][0]
    assert any(m.value.startswith(f"### {top_label}") for m in at.markdown)
    [table] = at.dataframe
    assert len(table.value) == len(LABELS)
    assert list(table.value["label"])[:5] == bar["y"]
    assert table.value["probability"].sum() == pytest.approx(100.0, abs=1e-3)
    assert list(table.value["probability"])[:5] == pytest.approx([x * 100 for x in bar["x"]])
    assert any("ms on cpu" in c.value for c in at.caption)
    assert len(at.image) == 1


def test_uploaded_file_is_classified(app_env):
    at = start_app()
    at.radio(key="single_source").set_value("Upload a file").run()
    at.file_uploader(key="single_upload").set_value(
        ("shoe.png", image_bytes("PNG", color=(10, 200, 10)), "image/png")
    ).run()
    assert not at.exception and not at.error
    assert len(chart_spec(at)["data"][0]["y"]) == 5


def test_uploaded_non_image_shows_an_error(app_env):
    at = start_app()
    at.radio(key="single_source").set_value("Upload a file").run()
    fake = ("fake.png", b"<html>no</html>", "image/png")
    at.file_uploader(key="single_upload").set_value(fake).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Could not read 'fake.png' as an image: not an image."]
    assert not at.get("plotly_chart")


@pytest.mark.parametrize(
    "path_or_url, message",
    [
        ("/missing.png", "Could not load the image: HTTP 404 (the server has no image at"),
        ("/page.html", "Could not load the image: not an image (text/html) (the address gives"),
        ("file:///etc/passwd", "Could not load the image: only http and https URLs are supported"),
        ("/etc/passwd", "Could not load the image: only http and https URLs are supported ("),
    ],
)
def test_bad_url_shows_an_error_not_an_exception(app_env, image_server, path_or_url, message):
    at = start_app()
    served = path_or_url in ("/missing.png", "/page.html")
    give_url(at, image_server.url(path_or_url) if served else path_or_url)
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith(message) and error.endswith(").")  # what it means, in words
    assert not at.get("plotly_chart")


def test_changing_only_the_image_does_not_re_encode_the_labels(
    app_env, image_server, app_classifier
):
    labels = ["pleated skirt", "denim jacket", "ankle boot"]
    at = start_app()
    set_labels(at, labels)
    give_url(at, image_server.url("/product.jpg"))
    classifier = app_classifier()
    calls = classifier.text_encoder_calls
    first = next(c.value for c in at.caption if "ms on cpu" in c.value)
    assert "label embeddings computed" in first
    give_url(at, image_server.url("/red.png"))
    second = next(c.value for c in at.caption if "ms on cpu" in c.value)
    assert "label embeddings reused from cache" in second
    assert classifier.text_encoder_calls == calls
    assert len(list((app_env / "cache" / "label_embeddings").glob("*.safetensors"))) == 1


@pytest.mark.parametrize(
    "labels, templates, warning",
    [
        ("only one", "a photo of a {}.", "Give at least two labels"),
        ("a\nb", "no placeholder", 'has no "{}"'),
    ],
)
def test_unusable_labels_or_templates_warn(app_env, image_server, labels, templates, warning):
    at = start_app()
    at.text_area(key="single_labels").input(labels)
    at.text_area(key="single_templates").input(templates).run()
    give_url(at, image_server.url("/red.png"))
    assert not at.exception
    assert warning in " ".join(w.value for w in at.warning)
    assert not at.get("plotly_chart")


def test_switching_to_a_missing_model_explains_and_does_not_crash(app_env, tmp_path):
    missing = str(tmp_path / "no-model-here")
    at = start_app(**{model_picker.MODEL_KEY: missing})
    assert not at.exception
    sidebar_errors = [e.value for e in at.sidebar.error]
    assert len(sidebar_errors) == 1 and missing in sidebar_errors[0]
    assert "does not exist" in sidebar_errors[0]
    assert any("No model is loaded" in i.value for i in at.info)
    assert at.sidebar.button(key="retry_model")
    assert at.text_area(key="single_labels")  # the page still shows what it does and asks
    assert at.radio(key="single_source")


def test_a_failed_model_is_not_retried_until_asked(app_env, tmp_path, monkeypatch):
    missing = str(tmp_path / "later")
    at = start_app(**{model_picker.MODEL_KEY: missing})
    assert at.sidebar.error
    tiny = tmp_path / "later"
    (tiny / "config.json").parent.mkdir()
    loads = []
    real_load = model_picker.load_classifier
    monkeypatch.setattr(
        model_picker, "load_classifier", lambda *a: loads.append(a) or real_load(*a)
    )
    at.run()
    assert loads == []  # remembered failure: no new load attempt on a rerun
    assert any("No model is loaded" in i.value for i in at.info)


def test_switching_model_in_the_sidebar_loads_it(app_env, tmp_path):
    from tests.tiny_clip import build_tiny_clip

    other = build_tiny_clip(tmp_path / "other-model", seed=1)
    at = start_app(**{model_picker.MODEL_KEY: str(other)})
    assert not at.exception and not at.sidebar.error
    assert str(other) in " ".join(c.value for c in at.sidebar.caption)


def test_an_unexpected_error_is_a_plain_message_not_a_traceback(app_env, image_server, monkeypatch):
    from core.engine.classifier import ClipClassifier

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated failure deep in the model")

    monkeypatch.setattr(ClipClassifier, "predict_one", broken)
    at = start_app(single_url=image_server.url("/red.png"))
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("Something unexpected went wrong (RuntimeError).")
    assert "simulated failure" not in error.value


def test_try_again_loads_a_model_that_has_appeared(app_env, tmp_path):
    from tests.tiny_clip import build_tiny_clip

    later = tmp_path / "arrives-later"
    at = start_app(**{model_picker.MODEL_KEY: str(later)})
    assert at.sidebar.error
    build_tiny_clip(later)
    at.sidebar.button(key="retry_model").click().run()
    assert not at.exception
    assert not any("No model is loaded" in i.value for i in at.info)
    assert at.text_area(key="single_labels")


def test_sidebar_and_navigation_survive_reruns(app_env, image_server):
    """With a folder named pages/, Streamlit ran page files alone on reruns and on the first
    request after a start: no sidebar, no model picker. app_pages/ avoids that."""
    at = start_app()
    give_url(at, image_server.url("/red.png"))
    assert at.sidebar.text_input(key=model_picker.MODEL_KEY)
    assert at.sidebar.caption
    at.switch_page("app_pages/bulk_csv.py").run()
    assert at.sidebar.text_input(key=model_picker.MODEL_KEY)
    assert at.title[0].value == "Bulk CSV"


def fake_hub_cache(root, repo_id="someone/clip-fashion", model_type="clip"):
    """A Hugging Face cache folder holding one downloaded checkpoint's config, laid out as the
    hub library writes it (blobs, refs, snapshots with links)."""
    import json

    repo = root / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    blob.write_text(json.dumps({"model_type": model_type}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("f" * 40)
    snapshot = repo / "snapshots" / ("f" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(blob)
    return root


def test_a_typo_in_the_model_box_keeps_the_working_model(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(fake_hub_cache(tmp_path / "hub")))
    at = start_app()
    assert str(app_env.parent) not in " ".join(e.value for e in at.sidebar.error)
    working = at.sidebar.text_input(key=model_picker.MODEL_KEY).value
    at.sidebar.text_input(key=model_picker.MODEL_KEY).input("openai/clip-vit-base-patch3").run()
    assert not at.exception
    [error] = at.sidebar.error
    assert "openai/clip-vit-base-patch3" in error.value
    assert "choose a model from the list" in error.value and "CLIPLAB_" not in error.value
    assert any(f"Still using **{working}**" in c.value for c in at.sidebar.caption)
    assert not any("No model is loaded" in i.value for i in at.info)
    assert at.text_area(key="single_labels")  # the page still works
    known = at.sidebar.selectbox(key="trained_model").options
    assert working in known and "openai/clip-vit-base-patch32" in known
    assert "someone/clip-fashion" in known  # downloaded earlier: usable offline
    at.sidebar.button(key="model_default").click().run()
    assert at.sidebar.text_input(key=model_picker.MODEL_KEY).value == working
    assert not at.sidebar.error
    assert any(f"Loaded **{working}**" in c.value for c in at.sidebar.caption)


def test_many_labels_show_scores_that_can_be_told_apart(app_env, image_server):
    labels = "\n".join(f"a rather long product category name number {i}" for i in range(196))
    at = start_app()
    at.text_area(key="single_labels").input(labels).run()
    give_url(at, image_server.url("/red.png"))
    assert not at.exception
    bar = chart_spec(at)["data"][0]
    scores = bar["x"]
    assert len(set(bar["text"])) == len(set(scores))  # 196 labels: no five times "0.5%"
    assert all("<br>" in label for label in bar["y"])  # long names wrapped, not cut
    assert chart_spec(at)["layout"]["xaxis"]["range"][1] < 1.0  # the axis fits the scores
    heading = at.markdown[0].value
    assert heading.startswith("### a rather long") and bar["text"][0] in heading


def test_try_an_example_works_offline(app_env):
    at = start_app()
    at.button(key="single_try_example").click().run()
    assert not at.exception and not at.warning
    assert at.radio(key="single_source").value == "An example"
    bar = chart_spec(at)["data"][0]
    assert len(bar["y"]) == 5 and "t-shirt" in at.text_area(key="single_labels").value
    assert at.selectbox(key="single_example").value == "bottle"  # the first example
    assert at.markdown[0].value.startswith("### ")  # its prediction


def test_any_failure_while_switching_model_keeps_the_working_one(app_env, tmp_path, monkeypatch):
    at = start_app()
    working = at.sidebar.text_input(key=model_picker.MODEL_KEY).value
    real_load = model_picker.load_classifier

    def running_out_of_memory(source, *args, **kwargs):
        if "huge" in str(source):
            raise MemoryError("simulated")
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(model_picker, "load_classifier", running_out_of_memory)
    at.sidebar.text_input(key=model_picker.MODEL_KEY).input(str(tmp_path / "huge-model")).run()
    assert not at.exception
    [error] = at.sidebar.error
    assert "could not be loaded (MemoryError)" in error.value
    assert any(f"Still using **{working}**" in c.value for c in at.sidebar.caption)
