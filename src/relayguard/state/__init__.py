"""Persistent state: SQLite by default (see store.py)."""

from .store import DEFAULT_PATH, ENV_VAR, SCHEMA_VERSION, StateError, Store, resolve_path

__all__ = ["DEFAULT_PATH", "ENV_VAR", "SCHEMA_VERSION", "StateError", "Store", "resolve_path"]
