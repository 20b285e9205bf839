"""prodml: production machine learning in one package.

The package is layered (see DESIGN.md); this top-level module only re-exports the
facade lazily so that ``import prodml.core`` stays cheap and free of side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Project", "__version__", "trainer"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from prodml.project import Project
    from prodml.training import trainer


def __getattr__(name: str) -> Any:
    if name == "Project":
        from prodml.project import Project

        return Project
    if name == "trainer":
        from prodml.training import trainer

        return trainer
    raise AttributeError(f"module 'prodml' has no attribute {name!r}")
