"""The README's configuration table names every key the gateway accepts."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from sio_mqtt.gateway.config import GatewayConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def _key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for name, field in model.model_fields.items():
        sub = None
        candidates = (field.annotation, *typing.get_args(field.annotation))
        for outer in candidates:
            for t in (outer, *typing.get_args(outer)):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    sub = t
        path = prefix + name
        if sub is None:
            paths.append(path)
        else:
            is_list = typing.get_origin(field.annotation) is list
            paths.extend(_key_paths(sub, path + ("[]." if is_list else ".")))
    return paths


def test_every_config_key_is_in_the_readme() -> None:
    text = README.read_text()
    keys = _key_paths(GatewayConfig)
    assert len(keys) > 50
    missing = []
    for key in keys:
        if f"`{key}`" in text:
            continue
        head, _, last = key.rpartition(".")
        # a row may name siblings in short form: `socketio.reconnect.delay` / `.delay_max`
        if head and f"`{head}." in text and f"`.{last}`" in text:
            continue
        missing.append(key)
    assert not missing, f"README configuration table lacks: {missing}"
