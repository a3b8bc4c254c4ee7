"""The trainer's progress: a tqdm bar on a terminal, plain periodic lines in a log file (SLURM)."""

from egom2p.train.metrics import ProgressBar


def test_a_log_gets_periodic_lines_not_bar_redraws(capsys):
    quiet = ProgressBar(total=4, initial=1, enabled=True, interval=3600)  # capsys: stderr is not a terminal
    for loss in (2.0, 1.5, 1.0):
        quiet.update(loss, 1000.0)
    quiet.close()
    assert capsys.readouterr().err == ""  # shorter than the interval: silent

    every = ProgressBar(total=10, initial=0, enabled=True, interval=0)
    for _ in range(3):
        every.update(0.5, 10.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "train: 1/10 step (10.0%)", "train: 2/10 step (20.0%)", "train: 3/10 step (30.0%)"]
    assert lines[-1].startswith("train: 3/10 step (30.0%), loss 0.5000, tok_s 10, ") and "ETA" in lines[-1]

    ProgressBar(total=10, initial=0, enabled=False, interval=0).update(0.5, 10.0)  # other ranks: silent
    assert capsys.readouterr().err == ""
