"""The dashboard: ``/ui`` pages over a project's records — endpoints and their traffic,
rollouts and their evidence, models with their gates, approvals and lineage,
monitoring, features and retraining — for a team to keep open on a screen and act from.

Pages are rendered on the server from the same records the CLI reads (Jinja2 with
autoescaping: nothing a user typed reaches a page unescaped), refresh their numbers
by short polling, and load nothing from anywhere but the server itself. Actions
(approve, rollback, pause, promote, advance …) are calls to the admin API, signed by the
session cookie and the page's CSRF token, so they carry the same roles and land in the
same audit log as the CLI's.
"""

from __future__ import annotations

from prodml.web._app import app_from_env, mount_ui, ui_app

__all__ = ["app_from_env", "mount_ui", "ui_app"]
