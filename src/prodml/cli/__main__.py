"""``python -m prodml.cli`` runs the ``prodml`` command."""

from __future__ import annotations

from prodml.cli import main

if __name__ == "__main__":
    main()
