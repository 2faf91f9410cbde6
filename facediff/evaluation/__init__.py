"""``evaluate`` and its parts, one concern a module:

- :mod:`~facediff.evaluation.pipeline` — :func:`evaluate`, the order of the steps and the
  output folder;
- :mod:`~facediff.evaluation.inputs` — the run's data and the samples (generated or read);
- :mod:`~facediff.evaluation.judge` — the classifier every judged number rests on: its
  split, held-out accuracies and cache; :mod:`~facediff.evaluation.judge_training` — its
  network and training;
- :mod:`~facediff.evaluation.inception` — optional Inception-v3 FID features;
- :mod:`~facediff.evaluation.scores` — hit rate, mix balance, realism, memorisation;
  :mod:`~facediff.evaluation.colour`, :mod:`~facediff.evaluation.noise` and
  :mod:`~facediff.evaluation.repeats` — colour casts and shift, grain, look-alike samples;
- :mod:`~facediff.evaluation.maths` — the statistics behind them;
- :mod:`~facediff.evaluation.markdown` and :mod:`~facediff.evaluation.charts` — rendering.
"""

from facediff.evaluation.inception import InceptionFeatures, inception_weights
from facediff.evaluation.inputs import recorded_data_path
from facediff.evaluation.judge_training import JudgeConfig
from facediff.evaluation.pipeline import EvaluationReport, evaluate

__all__ = [
    "EvaluationReport",
    "InceptionFeatures",
    "JudgeConfig",
    "evaluate",
    "inception_weights",
    "recorded_data_path",
]
