from pathlib import Path

import pytest

from core.config import DEFAULT_MODEL, SettingsError, load_settings


def test_defaults_follow_the_design_contract():
    settings = load_settings({})
    assert settings.model == DEFAULT_MODEL == "openai/clip-vit-base-patch32"
    assert settings.device == "auto"
    assert settings.data_dir == Path("data")
    assert settings.allow_private_urls is False
    assert settings.image_cache_dir == Path("data/cache/images")
    assert settings.image_cache_mb == 2048


def test_environment_overrides():
    settings = load_settings(
        {
            "CLIPLAB_MODEL": " ./models/mine ",
            "CLIPLAB_DEVICE": "CPU",
            "CLIPLAB_DATA_DIR": "/srv/cliplab",
            "CLIPLAB_ALLOW_PRIVATE_URLS": "yes",
            "CLIPLAB_IMAGE_CACHE_MB": " 500 ",
        }
    )
    assert settings.model == "./models/mine"
    assert settings.device == "cpu"
    assert settings.data_dir == Path("/srv/cliplab")
    assert settings.allow_private_urls is True
    assert settings.image_cache_mb == 500


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"CLIPLAB_DEVICE": "tpu"}, "CLIPLAB_DEVICE"),
        ({"CLIPLAB_ALLOW_PRIVATE_URLS": "maybe"}, "CLIPLAB_ALLOW_PRIVATE_URLS"),
        ({"CLIPLAB_IMAGE_CACHE_MB": "2GB"}, "CLIPLAB_IMAGE_CACHE_MB"),
        ({"CLIPLAB_IMAGE_CACHE_MB": "-1"}, "CLIPLAB_IMAGE_CACHE_MB"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings(env)
