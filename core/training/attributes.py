"""Several attributes (label columns) trained at once over the same embeddings, and product text
beside the image: the settings' defaults live here."""

from __future__ import annotations

DEFAULT_MIN_CLASS_COUNT = 10  # rarer classes are folded into OTHER for their attribute
DEFAULT_TEXT_DROPOUT = 0.3  # share of training examples whose text the probe does not see
OTHER = "other"
