"""Import aiogram with each Telegram model built on first use rather than all of them at import."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def load_aiogram() -> None:
    """Import `aiogram.types` and `aiogram.methods`, deferring the build of every model until it is used.

    aiogram's types package rebuilds each of its ~300 pydantic models at import to resolve forward
    references: ~100 MB of validators and ~2.5 s of CPU, when a bot uses a few dozen models. Here each
    model is given the namespace that rebuild would have used, and pydantic builds it on first use.
    Does nothing once aiogram's types are imported; falls back to the plain import if pydantic differs."""
    if "aiogram.types" in sys.modules:
        return
    from pydantic import BaseModel

    rebuild = BaseModel.__dict__.get("model_rebuild")
    if not isinstance(rebuild, classmethod):
        log.debug("pydantic's model_rebuild is not a classmethod; importing aiogram as it is")
        return
    namespace: dict[str, Any] = {}

    def remember_namespace(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        types_namespace = kwargs.get("_types_namespace")
        if types_namespace is None or not cls.__module__.startswith("aiogram."):
            return rebuild.__func__(cls, **kwargs)  # type: ignore[no-any-return]
        namespace.update(types_namespace)
        cls.__pydantic_parent_namespace__ = namespace  # what pydantic resolves names in when it builds later
        return None

    BaseModel.model_rebuild = classmethod(remember_namespace)  # type: ignore[method-assign, assignment, arg-type]
    try:
        import aiogram.methods
        import aiogram.types
    finally:
        BaseModel.model_rebuild = rebuild  # type: ignore[method-assign, assignment]
    for name in aiogram.methods.__all__:
        method = getattr(aiogram.methods, name)
        if isinstance(method, type) and issubclass(method, BaseModel):
            method.__pydantic_parent_namespace__ = {**namespace, **(method.__pydantic_parent_namespace__ or {})}
