"""Settings read from the environment (CLIPLAB_*), gathered in one frozen dataclass.

Every part of the app (pages, command line, tests) reads its settings through `load_settings`, so
the contract in DESIGN.md lives in exactly one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
DEFAULT_IMAGE_CACHE_MB = 2048
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(UserError, ValueError):
    """A CLIPLAB_* variable holds a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    """What the app is configured to do; see DESIGN.md "Contracts"."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    data_dir: Path = Path("data")
    allow_private_urls: bool = False
    image_cache_mb: int = DEFAULT_IMAGE_CACHE_MB
    precision: str = "auto"  # auto: fp16 on CUDA, fp32 elsewhere; bf16 pays off on AMX CPUs
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # bearer keys; never printed
    spark_master: str = ""  # where `--spark` jobs run by default, and the pages offer Spark

    @property
    def image_cache_dir(self) -> Path:
        """Where downloaded images are kept so a re-run does not fetch them again (at most
        `image_cache_mb`; see core/fetch/image_cache.py)."""
        return self.data_dir / "cache" / "images"

    @property
    def label_cache_dir(self) -> Path:
        """Where label embeddings are kept so a new process does not encode a label set again."""
        return self.data_dir / "cache" / "label_embeddings"


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be on or off (1/0, true/false), not {raw!r}.")


def _parse_megabytes(name: str, raw: str, default: int) -> int:
    value = raw.strip()
    if not value:
        return default
    if not value.isdigit():
        raise SettingsError(
            f"{name} must be a whole number of megabytes (0 for no cache), not {raw!r}."
        )
    return int(value)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the CLIPLAB_* variables (from `env`, default os.environ) into a Settings."""
    env = os.environ if env is None else env
    device = env.get("CLIPLAB_DEVICE", "auto").strip().lower() or "auto"
    if device not in DEVICE_CHOICES:
        raise SettingsError(
            f"CLIPLAB_DEVICE must be one of {', '.join(DEVICE_CHOICES)}, not {device!r}."
        )
    precision = env.get("CLIPLAB_PRECISION", "auto").strip().lower() or "auto"
    if precision not in PRECISION_CHOICES:
        raise SettingsError(
            f"CLIPLAB_PRECISION must be one of {', '.join(PRECISION_CHOICES)}, not {precision!r}."
        )
    return Settings(
        model=env.get("CLIPLAB_MODEL", "").strip() or DEFAULT_MODEL,
        device=device,
        data_dir=Path(env.get("CLIPLAB_DATA_DIR", "").strip() or "data"),
        allow_private_urls=_parse_bool(
            "CLIPLAB_ALLOW_PRIVATE_URLS", env.get("CLIPLAB_ALLOW_PRIVATE_URLS", "0")
        ),
        image_cache_mb=_parse_megabytes(
            "CLIPLAB_IMAGE_CACHE_MB", env.get("CLIPLAB_IMAGE_CACHE_MB", ""), DEFAULT_IMAGE_CACHE_MB
        ),
        precision=precision,
        api_keys=tuple(k.strip() for k in env.get("CLIPLAB_API_KEYS", "").split(",") if k.strip()),
        spark_master=env.get("CLIPLAB_SPARK_MASTER", "").strip(),
    )
