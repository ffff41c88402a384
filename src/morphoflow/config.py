r"""Configuration: the JSON schema split into one file per section, defaults filled from it.

The schemas are package data (``morphoflow/schemas/``): ``config.schema.yaml`` refers to one schema
file per stage (``$ref``). Snakemake's ``validate`` checks the config through those references but
fills defaults only at the top level, so :func:`fill_defaults` inlines the references and fills every
default first. The schema is the only place that states a default: library functions take the
validated sections and read their keys directly.

Example:
    >>> cfg = load_config()                      # every default of the schema
    >>> cfg["autoencoder"]["latent_dim"]
    16
    >>> load_config(overrides={"autoencoder": {"latent_dim": 8}})["autoencoder"]["latent_dim"]
    8
"""

from __future__ import annotations

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_DIR", "ConfigError", "fill_defaults", "load_config", "load_schema", "merge"]

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The schemas shipped with the package (config sections and the ``metrics.json`` layout).
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DEFAULT_SCHEMA = SCHEMA_DIR / "config.schema.yaml"


class ConfigError(ValueError):
    r"""The configuration breaks the schema; the message names the key path."""


def load_schema(path: str | os.PathLike = DEFAULT_SCHEMA) -> dict[str, Any]:
    r"""Load a YAML schema and inline its relative ``$ref`` files (recursively)."""

    path = Path(path)
    schema = yaml.safe_load(path.read_text())

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#"):
                sub = load_schema(path.parent / node["$ref"])
                sub.pop("$schema", None)
                rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**sub, **rest}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def _default_setting_validator() -> type:
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def fill_defaults(
    config: dict[str, Any], schema: dict[str, Any] | str | os.PathLike = DEFAULT_SCHEMA
) -> dict[str, Any]:
    r"""Fill missing keys of ``config`` in place from the schema's defaults and validate it.

    Raises:
        ConfigError: naming the key path (e.g. ``autoencoder.train.lr``) at fault.
    """

    if not isinstance(schema, dict):
        schema = load_schema(schema)
    validator = _default_setting_validator()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{where}': {err.message}")
    return config


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    r"""``base`` updated by ``override``, recursively for nested dicts (neither is modified)."""

    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def load_config(
    *paths: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    schema: str | os.PathLike = DEFAULT_SCHEMA,
) -> dict[str, Any]:
    r"""Read YAML config files (later ones override earlier ones, recursively), apply ``overrides``, fill defaults.

    With no file and no override it returns the schema's defaults.

    Raises:
        ConfigError: naming the key path at fault.
    """

    config: dict[str, Any] = {}
    for p in paths:
        config = merge(config, yaml.safe_load(Path(p).read_text()) or {})
    return fill_defaults(merge(config, overrides or {}), schema)
