import sys

import pytest

from core.memory import limit_allocator_retention


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_allocator_settings_apply_and_are_idempotent():
    assert limit_allocator_retention() is True
    assert limit_allocator_retention() is True
