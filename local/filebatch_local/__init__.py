"""The filebatch stack on localhost, built from template.yaml (see filebatch_local.stack)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from filebatch_local.stack import LocalStack

__all__ = ["LocalStack"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m filebatch_local lint-asl` and the template reader do not import moto.
    if name == "LocalStack":
        from filebatch_local.stack import LocalStack

        return LocalStack
    raise AttributeError(name)
