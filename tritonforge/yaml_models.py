"""Read a YAML file into a pydantic model, with the one-line errors every settings file here gives.

values = load_yaml_model(path, DeployValues, missing=f"values file {path} does not exist; ...",
fields_hint="see k8s/values.example.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tritonforge.errors import ConfigError

_Model = TypeVar("_Model", bound=BaseModel)


def load_yaml_model(path: Path, model: type[_Model], *, missing: str, fields_hint: str) -> _Model:
    """Parse `path` as YAML and validate it as `model` (an empty file means every default).

    Args:
        path: the file.
        model: the pydantic model the file describes.
        missing: the whole message when the file does not exist.
        fields_hint: where the fields are described, appended to a validation error ("see ...").

    Raises:
        ConfigError: the file is missing, not YAML, or a value is wrong (the message names the first bad field).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(missing) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}; {fields_hint}") from exc
