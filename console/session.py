"""Who is logged in to this browser, and the gate in front of each page.

The session lives in NiceGUI's signed per-browser storage
(``app.storage.user``); it holds the user name only, and the role is looked
up in the users file on every page load.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import HTMLResponse, RedirectResponse
from nicegui import app

from console.auth import Page, User, UserDirectory, can_open

__all__ = ["Gate"]


class Gate:
    """Checks the session against the users file before a page renders."""

    def __init__(self, directory: UserDirectory) -> None:
        self.directory = directory

    def current_user(self) -> User | None:
        """The logged-in user of this browser, or None."""
        name = app.storage.user.get("user")
        return None if name is None else self.directory.users.get(str(name))

    def login(self, name: str, password: str) -> User | None:
        """Check credentials; on success remember the user in this browser."""
        user = self.directory.authenticate(name, password)
        if user is not None:
            app.storage.user["user"] = user.name
        return user

    def logout(self) -> None:
        """Forget this browser's user."""
        app.storage.user.pop("user", None)

    def check(self, page: Page, path: str) -> User | RedirectResponse | HTMLResponse:
        """The user if allowed; else a redirect to log in, or a 403 page."""
        user = self.current_user()
        if user is None:
            return RedirectResponse(f"/login?redirect_to={quote(path)}")
        if not can_open(user.role, page):
            return HTMLResponse(
                "<h1>403 Forbidden</h1><p data-testid='refused'>Role "
                f"<b>{user.role}</b> may not open {page} pages.</p>"
                "<p><a href='/'>Back to the dashboards</a></p>",
                status_code=403,
            )
        return user
