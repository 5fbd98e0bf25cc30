"""The serve tests reuse the memory tests' real PostgreSQL server."""

from tests.memory.conftest import _fresh_pg, pg_url  # noqa: F401 - a fixture, registered by import

__all__ = ["_fresh_pg", "pg_url"]
