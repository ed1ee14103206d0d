"""The HTTP API (FastAPI): :func:`create_app` builds it, :func:`liquid.api.server.serve` runs it."""

from __future__ import annotations

from starlette.convertors import CONVERTOR_TYPES, PathConvertor


class _AnyPath(PathConvertor):
    """``{name:path}`` matching any characters, newlines too (Starlette's ``.*`` stops at one).

    A key with a newline then reaches the key check (400, "control character") instead of
    matching no route at all (404 "no route", with the newline gone from the path it shows).
    Registered before any route is defined: routes compile their patterns when made.
    """

    regex = "(?s:.*)"


CONVERTOR_TYPES["path"] = _AnyPath()

from liquid.api.app import create_app  # noqa: E402  (after the convertor: its routes use it)

__all__ = ["create_app"]
