"""Every recipe option survives resume and export; old ε-prediction runs still sample as before."""

from __future__ import annotations

import json

from train_helpers import blocks_dataset, tiny
from typer.testing import CliRunner

from facediff.checkpoint import read_state
from facediff.cli import app
from facediff.exporting import export
from facediff.generation import make_scheduler
from facediff.loading import load_for_inference
from facediff.training import train

RECIPE = {
    "prediction_type": "epsilon",
    "beta_schedule": "linear",
    "num_train_timesteps": 500,
    "min_snr_gamma": None,
    "lr": 3e-4,
    "lr_warmup_steps": 3,
    "ema_decay": 0.99,
    "batch_size": 6,
    "cond_drop": 0.2,
    "grad_clip": 0.5,
}


def test_recipe_survives_api_and_cli_resume_and_export(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    run = tmp_path / "run"
    train(data, run, tiny(max_steps=2, **RECIPE))
    resumed = train(data, run, None)  # the API with no config: the run's own recipe
    state = read_state(resumed.checkpoint)
    for name, value in RECIPE.items():
        assert state["train"][name] == value, name
    cli = CliRunner().invoke(app, ["train", str(data), "--out", str(run), "--max-steps", "4"])
    assert cli.exit_code == 0, cli.output
    state = read_state(run / "checkpoints" / "step-00000004")
    assert state["step"] == 4
    for name, value in RECIPE.items():
        assert state["train"][name] == value, name
    sched = state["scheduler"]
    assert (sched["prediction_type"], sched["beta_schedule"], sched["num_train_timesteps"]) == (
        "epsilon",
        "linear",
        500,
    )
    export(run, tmp_path / "export")
    loaded = load_for_inference(tmp_path / "export")
    assert loaded.scheduler_config["prediction_type"] == "epsilon"
    assert loaded.scheduler_config["beta_schedule"] == "linear"
    assert loaded.scheduler_config["num_train_timesteps"] == 500
    shipped = json.loads((tmp_path / "export" / "scheduler" / "scheduler_config.json").read_text())
    assert shipped["prediction_type"] == "epsilon" and shipped["beta_schedule"] == "linear"


def test_new_runs_default_to_v_prediction_and_old_runs_keep_epsilon(tmp_path):
    data = blocks_dataset(tmp_path / "data", per_category=4)
    new = train(data, tmp_path / "new", tiny(max_steps=1))
    assert read_state(new.checkpoint)["scheduler"]["prediction_type"] == "v_prediction"
    old = train(data, tmp_path / "old", tiny(max_steps=1, prediction_type="epsilon"))
    loaded = load_for_inference(old.run_dir)
    assert loaded.scheduler_config["prediction_type"] == "epsilon"
    for sampler in ("dpmsolver++", "ddim", "unipc", "euler", "ddpm"):
        assert make_scheduler(sampler, loaded.scheduler_config).config.prediction_type == "epsilon"
