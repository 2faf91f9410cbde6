"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def modules_cache(tmp_path_factory):
    """diffusers copies custom pipeline code into its modules cache: keep it in tmp."""
    from diffusers.utils import dynamic_modules_utils  # only the pipeline tests need diffusers

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf")))
        yield
