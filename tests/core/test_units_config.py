from __future__ import annotations

from pathlib import Path

import pytest

from liquid.config import load_settings
from liquid.errors import ConfigError
from liquid.units import format_money, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [(0, 0), ("4096", 4096), ("4KiB", 4096), ("4 kib", 4096), ("1.5MB", 1_500_000), ("2GiB", 2 * 1024**3)],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["-1", "4KX", "", "KiB", -5, True])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("1h30m", 5400), ("250ms", 0.25), (5, 5)],
)
def test_parse_duration(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["-3h", "3x", "h", "1h 3", ""])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 1023, 4096, 1536, 5 * 1024**3)] == [
        "0B",
        "1023B",
        "4KiB",
        "1.5KiB",
        "5GiB",
    ]


def test_defaults() -> None:
    s = load_settings()
    assert s.inline_threshold == 4096
    assert s.tiers.warm == "warm"
    assert s.compression_for("anything") == "none"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUID_INLINE_THRESHOLD", "8KiB")
    monkeypatch.setenv("LIQUID_HOT__TTL", "10m")
    s = load_settings()
    assert s.inline_threshold == 8192
    assert s.hot.ttl == 600


def test_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "liquid.yaml"
    cfg.write_text("warm_max_object_size: 2MiB\ncompression:\n  docs: zstd\n  'kb-*': zstd\n")
    monkeypatch.setenv("LIQUID_CONFIG", str(cfg))
    s = load_settings()
    assert s.warm_max_object_size == 2 * 1024**2
    assert s.compression_for("kb-legal") == "zstd"
    assert s.compression_for("results") == "none"


def test_invalid_config_names_key_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "liquid.yaml"
    cfg.write_text("inline_threshold: 4Kx\nhot:\n  ttl: soon\nbogus: 1\n")
    monkeypatch.setenv("LIQUID_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    text = str(exc.value)
    assert str(cfg) in text
    assert "inline_threshold: expected a size" in text
    assert "hot.ttl: expected a duration" in text
    assert "bogus: Extra inputs are not permitted" in text


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIQUID_CONFIG", "/nonexistent/liquid.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_tier_naming_unknown_store() -> None:
    with pytest.raises(ConfigError, match=r"tiers\.cold names store 'nope'"):
        load_settings(stores={"hot": "redis://x", "warm": "catalog"}, tiers={"cold": "nope"})


@pytest.mark.parametrize(
    ("api", "says"),
    [
        ({"presign_ttl": "8d"}, "api.presign_ttl: Input should be less than or equal to 604800"),
        ({"presign_ttl": 0}, "api.presign_ttl: Input should be greater than or equal to 1"),
        ({"signed_ref_max_ttl": "0s"}, "api.signed_ref_max_ttl: Input should be greater than 0"),
    ],
)
def test_url_lifetimes_out_of_range_are_refused(api: dict[str, object], says: str) -> None:
    # A presigned URL past SigV4's 7 days is refused by S3 at read time, not when it is signed.
    with pytest.raises(ConfigError) as exc:
        load_settings(api=api)
    assert says in str(exc.value)
    assert load_settings(api={"presign_ttl": "7d"}).api.presign_ttl == 7 * 86400


@pytest.mark.parametrize(
    ("planner", "says"),
    [
        ({"read_adaptive": True}, "read_adaptive adapts the read clock's half-life: it needs read_clock"),
        ({"read_clock": True, "adaptive": True}, "read_clock and adaptive are two different hot ranks"),
    ],
)
def test_hot_rank_settings_that_would_be_ignored_are_refused(planner: dict[str, bool], says: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(planner=planner)
    assert f"planner: {says}" in str(exc.value)
    assert load_settings(planner={"read_clock": True, "read_adaptive": True}).planner.read_adaptive


def test_the_adaptive_hot_rank_is_the_default_and_gives_way_to_the_read_clock() -> None:
    assert load_settings().planner.adaptive
    # The read clock is the other hot rank: choosing it turns the default's off, without a word
    # needed; only an explicit ``adaptive: true`` beside it is refused (above).
    chosen = load_settings(planner={"read_clock": True}).planner
    assert chosen.read_clock and not chosen.adaptive
    assert not load_settings(planner={"adaptive": False}).planner.adaptive


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1234.5, "USD", "1,234.50 USD"),
        (0.5, "USD", "0.50 USD"),
        (0.0099, "USD", "0.0099 USD"),
        (0.000123, "EUR", "0.00012 EUR"),
        (0.0, "USD", "0.00 USD"),
        (-2.0, "USD", "-2.00 USD"),
    ],
)
def test_money_shows_its_currency_and_readable_precision(amount: float, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown
