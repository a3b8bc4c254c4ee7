"""log_wandb=true works without a login: offline mode writes the run locally, and metrics still go to JSON lines."""

from __future__ import annotations

import pytest
from e2e_helpers import read_metrics, run_trainer, write_data_config

pytest.importorskip("wandb")
pytestmark = pytest.mark.xdist_group("trainer")


def test_wandb_offline_run_needs_no_login(tmp_path, synth_root):
    _, patterns = synth_root
    data_config = write_data_config(tmp_path / "data.yaml", patterns)
    out = tmp_path / "run"
    env = {"WANDB_MODE": "offline", "WANDB_API_KEY": "", "HOME": str(tmp_path), "WANDB_SILENT": "true"}
    result = run_trainer(out, data_config, "schedule.max_steps=4", "metrics.log_every_steps=2", "metrics.log_wandb=true",
                         "metrics.wandb_project=egom2p-test", "model.dim=48", "model.encoder_depth=1",
                         "model.decoder_depth=1", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(out)[-1]["step"] == 4
    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs, f"no offline wandb run under {out / 'wandb'}"
    assert any(runs[0].rglob("*.wandb")), "the offline run holds no logged data"
