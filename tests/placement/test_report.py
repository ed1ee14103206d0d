"""The placement report's goals table: how far each cell is from the best online peer."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from benchmarks.placement.__main__ import RESULTS, _points, render

GRID = RESULTS / "placement.json"


def test_points_are_signed_percentage_points() -> None:
    assert _points(0.0119) == "+1.19"
    assert _points(-0.0054) == "-0.54"
    assert _points(0.0) == "+0.00"


def _summary(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("At or above the best online peer")]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_goals_say_how_far_below_the_best_peer_each_cell_is() -> None:
    out = json.loads(Path(GRID).read_text())
    # One cell a hair below its best peer, one well below, every other at or above it.
    for e in out["traces"].values():
        for g in e["goals"]["bhr"]:
            g["liquid_bhr"] = g["best_online_bhr"] + 0.01
            g["beats_online"] = True
    cells = [g for e in out["traces"].values() for g in e["goals"]["bhr"]]
    near, far = cells[0], cells[-1]
    near.update(liquid_bhr=near["best_online_bhr"] - 0.0002, beats_online=False)
    far.update(liquid_bhr=far["best_online_bhr"] - 0.0123, beats_online=False)
    text = render(out)
    assert _summary(text) == (
        f"At or above the best online peer in {len(cells) - 2} of {len(cells)} cells; below it in 2, "
        "1 of them by less than 0.1 points (the most: -1.23). Whether any online policy does better "
        "than the best peer in those cells (16 online policies, and LRFU at its best half-life in "
        "hindsight): `placement-frontier.md` (`python -m benchmarks.placement.frontier`)."
    )
    rows = [line for line in text.splitlines() if re.match(r"\| \S+ \| \d+% \| 0\.\d{3} \| ", line)]
    assert len(rows) == len(cells)
    assert "| no | -0.02 |" in rows[0] and "| no | -1.23 |" in rows[-1]
    assert all("| yes | +1.00 |" in row for row in rows[1:-1])

    every = copy.deepcopy(out)
    for e in every["traces"].values():
        for g in e["goals"]["bhr"]:
            g["beats_online"] = True
    n = len(cells)
    assert _summary(render(every)) == f"At or above the best online peer in {n} of {n} cells."
