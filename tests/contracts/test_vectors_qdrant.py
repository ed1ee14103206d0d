"""QdrantIndex (qdrant-client local mode, in memory) passes the vector contract."""

from __future__ import annotations

import pytest

from .vector_contract import VectorContract


@pytest.fixture(scope="class")
def vector_index_url() -> str:
    return "qdrant+memory://"


class TestQdrantIndex(VectorContract):
    pass
