"""Result rows of the benchmark scripts: printed and appended to a JSON-lines file as each is measured."""

from __future__ import annotations

import json


def append_row(path: str | None, row: dict) -> None:
    """Print the row and append it to the JSON-lines file at once (a timeout keeps what is done)."""
    print(json.dumps(row), flush=True)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
