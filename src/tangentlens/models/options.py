"""Reading model options from any ModelConfig-like object."""

from __future__ import annotations

from typing import Any


def cfg_get(cfg: Any, name: str, default: Any) -> Any:
    """``cfg.name``, or ``default`` when it is missing or None."""
    value = getattr(cfg, name, None)
    return default if value is None else value
