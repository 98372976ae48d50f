"""Dataset schemas (TOML files in `datasets/`) and their typed loader."""

from mutapub.schemas.loader import Column, InputFormat, Schema, SchemaError, dataset_names, load_schema

__all__ = ["Column", "InputFormat", "Schema", "SchemaError", "dataset_names", "load_schema"]
