"""open_store dispatch and the optional-dependency error."""

from __future__ import annotations

import importlib
import sys

import pytest

from liquid.errors import InvalidInput, MissingDependency
from liquid.stores import SCHEMES, open_store
from liquid.stores._common import lone_chunk


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as err:
        open_store("ftp://user:pw@host/dir")
    message = str(err.value)
    assert "'ftp://…@host/dir'" in message
    assert "pw" not in message
    for scheme in ("redis://", "postgresql://", "file://", "s3://", "minio://", "gs://"):
        assert scheme in message


def test_no_scheme_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown store URL scheme"):
        open_store("/just/a/path")


def test_every_scheme_is_documented() -> None:
    doc = open_store.__doc__ or ""
    for scheme, (_, cls) in SCHEMES.items():
        assert f"``{scheme}``" in doc
        assert cls in doc


@pytest.mark.parametrize(
    ("module", "blocked", "message"),
    [
        ("liquid.stores.s3", "boto3", "boto3 is not installed: pip install 'liquid-data[s3]'"),
        ("liquid.stores.minio", "minio", "minio is not installed: pip install 'liquid-data[minio]'"),
        (
            "liquid.stores.gcs",
            "google.cloud",
            "google-cloud-storage is not installed: pip install 'liquid-data[gcs]'",
        ),
    ],
)
def test_missing_sdk_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, message: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` raise ImportError
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependency) as err:
        importlib.import_module(module)
    assert str(err.value) == message
    assert isinstance(err.value, ImportError)


def test_lone_chunk_takes_one_buffer_and_passes_anything_else_on_whole() -> None:
    one = b"x" * 100
    assert lone_chunk([one], 100)[0] is one
    for chunks, most in (([], 100), ([one], 99), ([bytearray(one)], 100), ([b"a", b"b", b"c"], 100)):
        lone, rest = lone_chunk(chunks, most)
        assert lone is None
        assert list(rest) == list(chunks)
    lone, rest = lone_chunk(iter([b"a", b"b", b"c"]), 100)  # a one-pass stream: nothing lost
    assert lone is None and b"".join(rest) == b"abc"
