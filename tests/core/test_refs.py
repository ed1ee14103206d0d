from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liquid.errors import InvalidInput, InvalidRef
from liquid.refs import RefInfo, ResultRef, check_key

slug = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)
segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
key = st.lists(segment, min_size=1, max_size=4).map("/".join).filter(lambda k: len(k.encode()) <= 1024)


@given(tenant=slug, namespace=slug, key=key, version=st.integers(1, 2**31 - 1))
def test_format_then_parse_is_identity(tenant: str, namespace: str, key: str, version: int) -> None:
    ref = ResultRef(tenant, namespace, key, version)
    assert ResultRef.parse(ref.uri) == ref
    assert ref.uri.startswith(f"liquid://{tenant}/{namespace}/")
    assert ref.uri.endswith(f"@{version}")


@given(tenant=slug, namespace=slug, key=key, version=st.integers(1, 2**31 - 1))
def test_a_known_ref_is_the_checked_ref(tenant: str, namespace: str, key: str, version: int) -> None:
    """``ResultRef.known`` (catalog rows on the search path) makes what the checking constructor makes."""
    checked = ResultRef(tenant, namespace, key, version)
    known = ResultRef.known(tenant, namespace, key, version)
    assert (known, hash(known), known.uri) == (checked, hash(checked), checked.uri)
    assert repr(known) == repr(checked)


def test_keys_with_at_sign_and_percent_round_trip() -> None:
    ref = ResultRef("acme", "docs", "a@b/100%/x y@2", 7)
    assert ref.uri == "liquid://acme/docs/a%40b/100%25/x%20y%402@7"
    assert ResultRef.parse(ref.uri).key == "a@b/100%/x y@2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "does not start with 'liquid://'"),
        ("s3://acme/docs/k@1", "does not start with 'liquid://'"),
        ("liquid://acme/docs@1", "lacks a tenant, namespace or key"),
        ("liquid://acme/docs/", "lacks a tenant, namespace or key"),
        ("liquid://acme/docs/key", "has no '@<version>' suffix"),
        ("liquid://acme/docs/key@", "versions are positive integers"),
        ("liquid://acme/docs/key@0", "versions are positive integers"),
        ("liquid://acme/docs/key@01", "versions are positive integers"),
        ("liquid://acme/docs/key@-1", "versions are positive integers"),
        ("liquid://acme/docs/key@1.5", "versions are positive integers"),
        ("liquid://acme/docs/key@\u0661", "versions are positive integers"),
        ("liquid://Acme/docs/key@1", "tenant 'Acme' is not a valid name"),
        ("liquid://acme/do cs/key@1", "namespace 'do cs' is not a valid name"),
        ("liquid://acme/docs/../etc/passwd@1", "has a '..' segment"),
        ("liquid://acme/docs/a%00b@1", "control character U+0000"),
        ("liquid://acme/docs/a%2F%2Fb@1", "has an empty segment"),
        ("liquid://acme/docs/%FF@1", "not valid percent-encoded UTF-8"),
        ("liquid://acme/docs/" + "k" * 1025 + "@1", "the limit is 1024"),
    ],
)
def test_malformed_refs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidRef) as exc:
        ResultRef.parse(text)
    assert message in str(exc.value)
    assert exc.value.field == "ref"


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidRef, match="must be a string, got int"):
        ResultRef.parse(42)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "non-empty"),
        ("/abs", "starts with '/'"),
        ("a\\b", "backslash"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("x/./y", "has a '.' segment"),
        ("é" * 513, "1026 bytes"),
    ],
)
def test_hostile_keys_rejected(bad: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        check_key(bad)


def test_unicode_keys_allowed() -> None:
    assert check_key("données/日本語/ключ 🚀.json") == "données/日本語/ключ 🚀.json"


def test_ref_json_round_trip_with_inline() -> None:
    data = b"hello"
    info = RefInfo(
        ref=ResultRef("acme", "r", "k", 3),
        size=5,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type="text/plain",
        inline=data,
    )
    doc = info.to_json()
    assert doc["inline"] == base64.b64encode(data).decode()
    assert RefInfo.from_json(doc) == info


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"sha256": "XYZ"}, "sha256"),
        ({"content_type": ""}, "content_type"),
        ({"inline": "***"}, "inline"),
        ({"inline": base64.b64encode(b"abc").decode()}, "inline"),
        ({"ipc": {"node": "n"}}, "ipc"),
        ({"uri": "liquid://x"}, "ref"),
    ],
)
def test_ref_json_validation_names_the_field(patch: dict[str, object], field: str) -> None:
    doc: dict[str, object] = {
        "uri": "liquid://acme/r/k@1",
        "size": 2,
        "sha256": "0" * 64,
        "content_type": "a/b",
    }
    doc.update(patch)
    with pytest.raises(InvalidRef) as exc:
        RefInfo.from_json(doc)
    assert exc.value.field == field
