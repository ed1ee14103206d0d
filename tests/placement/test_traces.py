"""The trace reader: size units, zstd, and files that do not parse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zstandard

from benchmarks.placement.__main__ import main
from benchmarks.placement.traces import (
    ORACLE_GENERAL,
    KiB,
    TraceFormatError,
    holdout_traces,
    load_csv,
    load_oracle_general,
    size_unit,
    trace_name,
    write_oracle_general,
    zipf_drift,
)


def _records(sizes: list[int], times: list[int] | None = None) -> np.ndarray:
    rec = np.zeros(len(sizes), dtype=ORACLE_GENERAL)
    rec["t"] = times if times is not None else range(len(sizes))
    rec["id"] = [1 + i % 3 for i in range(len(sizes))]
    rec["size"] = sizes
    rec["next"] = -1
    return rec


def test_sizes_are_read_in_the_unit_given(tmp_path: Path) -> None:
    path = tmp_path / "t.oracleGeneral.bin"
    _records([4, 8, 4, 16]).tofile(path)
    as_kib = load_oracle_general(path, unit=size_unit("KiB"))
    as_bytes = load_oracle_general(path, unit=size_unit("B"))
    # Ids 1, 2, 3 first seen with 4, 8 and 4 units: 16 KiB of working set, not 16 bytes
    # (which round up to 1 KiB each).
    assert as_kib.working_set_bytes() == 16 * KiB
    assert as_bytes.working_set_bytes() == 3 * KiB


def test_a_zstd_file_reads_like_the_plain_one(tmp_path: Path) -> None:
    trace = zipf_drift(0.9, n_objects=50, n_requests=500, seed=5)
    plain = write_oracle_general(trace, tmp_path / "z.oracleGeneral.bin")
    packed = tmp_path / "z.oracleGeneral.bin.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    a = load_oracle_general(plain, unit=KiB)
    b = load_oracle_general(packed, unit=KiB)
    assert a.name == b.name == "z"
    assert np.array_equal(a.oid, b.oid) and np.array_equal(a.size, b.size) and np.array_equal(a.t, b.t)
    assert a.working_set_bytes() == trace.working_set_bytes()


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("w44.oracleGeneral.bin.zst", "w44"),
        ("cluster52.oracleGeneral.sample10", "cluster52"),
        ("zipf0.9-drift5%-30d.bin", "zipf0.9-drift5%-30d"),
        ("my.trace.bin.zst", "my.trace"),
        ("plain", "plain"),
    ],
)
def test_a_trace_is_named_after_its_file_without_the_format_suffixes(file: str, name: str) -> None:
    assert trace_name(Path(file)) == name


def test_a_truncated_file_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(_records([4, 8]).tobytes()[:-5])
    with pytest.raises(TraceFormatError, match=r"cut\.bin: 43 bytes is not a whole number of 24-byte"):
        load_oracle_general(path, unit=1)


def test_times_going_back_and_zero_sizes_are_rejected(tmp_path: Path) -> None:
    back = tmp_path / "back.bin"
    _records([4, 4, 4], times=[0, 5, 3]).tofile(back)
    with pytest.raises(TraceFormatError, match="record 2 goes back in time"):
        load_oracle_general(back, unit=1)
    zero = tmp_path / "zero.bin"
    _records([4, 0, 4]).tofile(zero)
    with pytest.raises(TraceFormatError, match="record 1 has size 0"):
        load_oracle_general(zero, unit=1)
    notzstd = tmp_path / "x.bin.zst"
    notzstd.write_bytes(b"definitely not zstd")
    with pytest.raises(TraceFormatError, match="not a zstd stream"):
        load_oracle_general(notzstd, unit=1)


def test_a_csv_row_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,id,size\n1,a,100\n2,b,oops\n")
    with pytest.raises(TraceFormatError, match=r"t\.csv:3: cannot read"):
        load_csv(path)
    path.write_text("1,a,2\n2,b,3\n3,a,2\n")
    trace = load_csv(path, unit=KiB)
    assert trace.working_set_bytes() == 5 * KiB and trace.objects() == 2


def test_the_cli_wants_a_unit_and_writes_no_results_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = zipf_drift(0.9, n_objects=300, n_requests=3000, seed=5)
    path = write_oracle_general(trace, tmp_path / "t.bin")
    with pytest.raises(SystemExit):
        main(["--trace-file", str(path)])
    assert "--trace-file needs --size-unit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace-file", str(path), "--size-unit", "furlongs"])
    assert "unknown size unit 'furlongs'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace-file", str(tmp_path / "missing.bin"), "--size-unit", "KiB"])
    assert "no such file" in capsys.readouterr().err
    main(["--trace-file", str(path), "--size-unit", "KiB", "--budgets", "0.1", "--jobs", "1"])
    out = capsys.readouterr().out
    assert "not written: pass --out DIR" in out
    assert f"{trace.working_set_bytes() / 2**30:.1f} GiB working set" in out
    assert "| **Liquid@1000** |" in out
    assert not any(tmp_path.glob("placement.*"))
    main(
        [
            "--trace-file",
            str(path),
            "--size-unit",
            "KiB",
            "--budgets",
            "0.1",
            "--jobs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "placement.md").exists() and (tmp_path / "placement.json").exists()
    # The goals count the hot tier's fills (each a read of the home) beside LRU's, one per miss.
    (entry,) = json.loads((tmp_path / "placement.json").read_text())["traces"].values()
    (goal,) = entry["goals"]["bhr"]
    cell = entry["hit_ratios"]["0.1"]
    assert goal["liquid_fills"] == cell["Liquid@1000"]["hot_admits"] > 0
    assert goal["lru_fills"] == round(3000 * (1 - cell["LRU"]["ohr"])) > 0
    ratio = goal["liquid_fills"] / goal["lru_fills"]
    assert f"| {goal['liquid_fills']:,} | {ratio:.2f}x |" in (tmp_path / "placement.md").read_text()


def test_the_held_out_traces_are_seeded_distinct_and_keep_their_density() -> None:
    first, again = holdout_traces(20_000), holdout_traces(20_000)
    names = [t.name for t in first]
    assert len(set(names)) == len(names) == 16
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.oid, b.oid) and np.array_equal(a.t, b.t) and np.array_equal(a.size, b.size)
        assert len(a) == 20_000 and np.all(np.diff(a.t) >= 0) and a.size.min() >= KiB
    by_name = {t.name: t for t in first}
    # 1M requests in 4 years is 20,000 in 29 days; 1M in 4 hours is 20,000 in under 5 minutes.
    assert by_name["zipf0.9-drift20%-29.2d"].duration() > 28 * 86400
    assert by_name["zipf0.9-drift20%-0.08h"].duration() < 300
    assert len(set(by_name["equal-64KiB"].size.tolist())) == 1
    small, large = by_name["small-popular"], by_name["large-popular"]
    top = lambda t: np.bincount(t.oid).argmax()  # noqa: E731
    # The most read object: among the smallest of the lognormal sizes (median 64 KiB), or the largest.
    assert small.size[small.oid == top(small)][0] < 64 * KiB < large.size[large.oid == top(large)][0]


def test_a_trace_file_cannot_be_mixed_with_the_grid_or_the_holdout(tmp_path: Path) -> None:
    path = write_oracle_general(zipf_drift(0.9, n_objects=50, n_requests=500, seed=5), tmp_path / "z.bin")
    with pytest.raises(SystemExit):
        main(["--trace-file", str(path), "--size-unit", "KiB", "--holdout"])


def test_belady_size_is_left_out_where_one_object_is_over_half_the_cache(tmp_path: Path) -> None:
    from benchmarks.placement.peers import run_peer

    trace = zipf_drift(0.9, n_objects=50, n_requests=500, seed=5)
    path = write_oracle_general(trace, tmp_path / "z.bin")
    largest = int(trace.size.max())
    # libCacheSim's BeladySize would loop forever here: not run, reported as n/a.
    assert run_peer("BeladySize", path, largest, largest) == {"ohr": None, "bhr": None, "seconds": 0.0}
    # With room for two of the largest it runs, and the other peers run whatever the sizes.
    ran = run_peer("BeladySize", path, 2 * largest, largest)
    assert ran["ohr"] is not None and 0.0 < ran["ohr"] <= 1.0
    lru = run_peer("LRU", path, largest, largest)
    assert lru["bhr"] is not None and 0.0 <= lru["bhr"] <= 1.0
