"""The run store (SQLite): results recorded as they come, resume, re-rendering old runs."""

from hone.store.db import Store, StoredConfig, default_store_path, recipe_from_dict

__all__ = ["Store", "StoredConfig", "default_store_path", "recipe_from_dict"]
