"""cuDNN autotuning: on for long or compiled sampling jobs, off for short ones (issue 13)."""

from __future__ import annotations

import pytest
import torch

from facediff.device import enable_fast_math
from facediff.generation import AUTOTUNE_MIN_IMAGES, autotunes


@pytest.fixture
def restore_cudnn():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved


def test_short_eager_jobs_skip_autotuning_long_or_compiled_ones_keep_it():
    assert not autotunes(56, compiled=False)  # `facediff sample RUN`: 7 mixes x 8
    assert not autotunes(AUTOTUNE_MIN_IMAGES - 1, compiled=False)
    assert autotunes(AUTOTUNE_MIN_IMAGES, compiled=False)
    assert autotunes(8, compiled=True)  # a compiled job is long by the compile policy
    assert autotunes(0, compiled=False)  # size unknown: as before


def test_fast_math_sets_autotuning_as_asked_on_cuda_and_leaves_the_cpu_alone(restore_cudnn):
    cuda = torch.device("cuda")
    enable_fast_math(cuda, autotune=False)
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.allow_tf32
    enable_fast_math(cuda)
    assert torch.backends.cudnn.benchmark is True
    torch.backends.cudnn.benchmark = False
    enable_fast_math(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
