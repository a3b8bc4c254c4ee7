"""``egom2p-train plot``: curves from a metrics.jsonl written by the trainer's own logger, drawn headless."""

import sys

import pytest
from egom2p.core.errors import MissingExtraError
from egom2p.train.cli import main
from egom2p.train.metrics import MetricsLogger
from egom2p.train.plot import plot_run, read_metrics, series

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path):
    """A run directory whose metrics.jsonl holds training rows (with a non-finite loss and a null MFU) and a
    validation row, as the trainer writes them."""
    logger = MetricsLogger(tmp_path, enabled=True)
    for step in range(1, 6):
        logger.log(step, {"loss": float("nan") if step == 3 else 5.0 / step, "tok_rgb_loss": 4.0 / step,
                          "tok_cam_loss": 3.0 / step, "lr": 1e-3 * step, "grad_norm": 1.0,
                          "tokens_per_s_per_device": 1000.0 + step, "mfu": None})
    logger.log(5, {"val/synth_full/loss": 0.9, "val/synth_full/tok_rgb_loss": 1.1})
    logger.close()
    return tmp_path


def test_series_skips_rows_without_the_key_and_non_finite_values(run_dir):
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert series(rows, "loss") == ([1, 2, 4, 5], [5.0, 2.5, 1.25, 1.0])
    assert series(rows, "val/synth_full/loss") == ([5], [0.9])
    assert series(rows, "mfu") == ([], [])


def test_plot_writes_a_png_next_to_the_metrics(run_dir):
    out = plot_run(run_dir)
    assert out == run_dir / "metrics.png" and out.read_bytes()[:8] == PNG


def test_cli_plot_with_out(run_dir, tmp_path, capsys):
    out = tmp_path / "figs" / "curves.png"
    assert main(["plot", str(run_dir), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG and capsys.readouterr().out.strip() == f"egom2p-train: wrote {out}"


def test_a_cut_off_last_line_is_skipped_but_a_bad_line_inside_is_an_error(run_dir):
    path = run_dir / "metrics.jsonl"
    path.write_text(path.read_text() + '{"step": 6, "lo')  # a run killed mid-write
    assert max(row["step"] for row in read_metrics(path)) == 5
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        read_metrics(path)


@pytest.mark.parametrize("content", [None, "", '{"step": 5, "val/a/loss": 1.0}\n'])
def test_no_metrics_or_no_training_step_is_one_line_exit_2(tmp_path, capsys, content):
    if content is not None:
        (tmp_path / "metrics.jsonl").write_text(content)
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "metrics.jsonl") in err


def test_without_matplotlib_the_error_names_the_extra(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as when it is not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'egom2p-train\[viz\]'"):
        plot_run(run_dir)
    assert main(["plot", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == "egom2p-train: error: plots need matplotlib: pip install 'egom2p-train[viz]'"


def test_plot_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plot"])
    assert info.value.code == 2 and capsys.readouterr().err.startswith("egom2p-train plot: error: ")
