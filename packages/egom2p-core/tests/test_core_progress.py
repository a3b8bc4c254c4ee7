"""Progress on stderr (egom2p.core.progress): plain periodic lines in a log file, nothing when disabled."""

import sys

from egom2p.core.progress import LineProgress, format_duration, progress


def test_a_log_gets_a_line_per_interval_and_one_at_the_end(capsys):
    counted = list(progress(range(5), desc="rgb2cam", unit="sample", interval=0))  # stderr: not a terminal
    assert counted == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"rgb2cam: {n}/5 sample ({20 * n:.1f}%)" for n in range(1, 6)]
    assert "ETA 0:00:00" in lines[-1]


def test_work_shorter_than_the_interval_stays_silent(capsys):
    with progress(total=3, desc="x", interval=3600) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_an_unknown_total_counts_without_share_or_eta_and_closes_with_a_line(capsys):
    bar = LineProgress(total=None, desc="shards", unit="shard", interval=0, file=sys.stderr)
    bar.set_postfix(samples=12)
    bar.update(2)
    bar.close()  # written at this count already: no second line
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("shards: 2 shard, samples 12, ") and "ETA" not in line and "%" not in line
    bar.interval = 3600
    bar.update(1)  # within the interval: nothing yet; closing writes the last count
    bar.close()
    assert capsys.readouterr().err.startswith("shards: 3 shard, samples 12, ")


def test_disabled_progress_writes_nothing_and_durations_read_as_clocks(capsys):
    with progress(total=3, desc="x", enabled=False, interval=0) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
    assert [format_duration(s) for s in (0, 59.9, 3723, float("nan"))] == ["0:00:00", "0:00:59", "1:02:03", "?"]
