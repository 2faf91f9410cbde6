"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from facediff.imports import trim_diffusers

# The suite runs with the command's lean start, as ``facediff`` runs (facediff.imports):
# diffusers' model families and the compiler load on first use. FACEDIFF_LEAN_IMPORTS=0
# runs it on plain imports, as a notebook has them.
trim_diffusers()


@pytest.fixture(scope="module")
def modules_cache(tmp_path_factory):
    """diffusers copies custom pipeline code into its modules cache: keep it in tmp."""
    from diffusers.utils import dynamic_modules_utils  # only the pipeline tests need diffusers

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf")))
        yield
