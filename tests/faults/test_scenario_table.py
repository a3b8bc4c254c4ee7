"""The reader of the scenario table (scenario_table.py): a good table, each kind of bad row, an escaped pipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_table import BEGIN, END, Scenario, TableError, parse_table

HEAD = ["# doc", "", BEGIN, "| scenario | command | fault | intended outcome | status |", "|---|---|---|---|---|"]


def doc(*rows: str) -> str:
    """A document whose table holds ``rows``; its first row is on line 6."""
    return "\n".join([*HEAD, *rows, END, "after"]) + "\n"


def parse(text: str, root: Path) -> list[Scenario]:
    return parse_table(text, root / "docs" / "r.md", root)


def test_a_good_table_in_order_with_an_open_row_and_an_escaped_pipe(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "fix.py").write_text("")
    text = doc("| `b-first` | `egom2p-data write` | a \\| b | exit 2, one line | holds |",
               "| `a-second` | `egom2p-train` | `x \\|\\| y` | survived | open: fix in `pkg/fix.py` |")
    assert parse(text, tmp_path) == [
        Scenario("b-first", "egom2p-data write", "a | b", "exit 2, one line"),
        Scenario("a-second", "egom2p-train", "`x || y`", "survived", open_in="pkg/fix.py"),
    ]


def test_the_text_outside_the_markers_is_not_read(tmp_path):
    text = "| `outside` | `c` | f | o | holds |\n" + doc("| `inside` | `c` | f | o | holds |")
    assert [s.id for s in parse(text, tmp_path)] == ["inside"]


@pytest.mark.parametrize(("row", "message"), [
    ("| `x` | `c` | f | o |", "exactly 5 cells, written | a | b | c | d | e |; found 4"),
    ("| `x` | `c` | f | o | holds | more |", "found 6"),
    ("| `x` | `c` | f \\| o | holds |", "found 4"),  # an escaped pipe does not split a cell
    ("`x` | `c` | f | o | holds", "found 0"),  # a row without its outer pipes
    ("| `x` | `c` | f | o | fixed |", "unknown status 'fixed'"),
    ("| `x` | `c` | f | o | open: fix in `no/such.py` |", "'no/such.py' does not exist in the repository"),
    ("| `Not an id` | `c` | f | o | holds |", "the id 'Not an id' is not lowercase"),
], ids=["four-cells", "six-cells", "escaped-pipe", "no-outer-pipes", "unknown-status", "missing-open-in", "bad-id"])
def test_a_bad_row_is_named_by_doc_and_line(tmp_path, row, message):
    with pytest.raises(TableError) as raised:
        parse(doc("| `ok` | `c` | f | o | holds |", row), tmp_path)
    assert str(raised.value).startswith("docs/r.md:7: ")
    assert message in str(raised.value)


def test_a_duplicate_id_is_named_on_its_second_line(tmp_path):
    with pytest.raises(TableError, match=r"^docs/r\.md:8: the id 'x' is declared twice"):
        parse(doc("| `x` | `c` | f | o | holds |", "| `y` | `c` | f | o | holds |", "| `x` | `d` | g | p | holds |"),
              tmp_path)


def test_missing_markers_and_a_wrong_header_are_refused(tmp_path):
    with pytest.raises(TableError, match=r"^docs/r\.md: the scenario table markers"):
        parse(doc("| `x` | `c` | f | o | holds |").replace(END, ""), tmp_path)
    with pytest.raises(TableError, match=r"^docs/r\.md:4: the table must start with the header"):
        parse(doc("| `x` | `c` | f | o | holds |").replace("intended outcome", "outcome"), tmp_path)
