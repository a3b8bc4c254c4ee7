"""The trainer's progress: a tqdm bar on a terminal, plain periodic lines in a log file (SLURM)."""

from egom2p.train.metrics import ProgressBar


def test_a_log_gets_periodic_lines_and_the_last_step_not_bar_redraws(capsys):
    bar = ProgressBar(total=4, initial=1, enabled=True, interval=3600)  # capsys: stderr is not a terminal
    for loss in (2.0, 1.5, 1.0):
        bar.update(loss, 1000.0)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: step 4/4 (100.0%), loss 1.0000, 1,000 tok/s, ")
    assert "elapsed 0:00:00, ETA 0:00:00" in lines[0]

    every = ProgressBar(total=10, initial=0, enabled=True, interval=0)
    for _ in range(3):
        every.update(0.5, 10.0)
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == [
        "train: step 1/10 (10.0%)", "train: step 2/10 (20.0%)", "train: step 3/10 (30.0%)"]

    ProgressBar(total=10, initial=0, enabled=False, interval=0).update(0.5, 10.0)  # other ranks: silent
    assert capsys.readouterr().err == ""
