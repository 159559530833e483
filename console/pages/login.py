"""The login page and log-out route."""

from __future__ import annotations

import asyncio

import structlog
from fastapi.responses import RedirectResponse
from nicegui import ui

from console.session import Gate

__all__ = ["register"]

log = structlog.get_logger()


def register(gate: Gate) -> None:
    """Add /login and /logout."""

    @ui.page("/login")
    def login_page(redirect_to: str = "/") -> None:
        if not redirect_to.startswith("/") or redirect_to.startswith("//"):
            redirect_to = "/"
        ui.page_title("Sieve · log in")

        async def submit() -> None:
            name = username.value.strip()
            user = await asyncio.to_thread(gate.login, name, password.value)
            if user is None:
                log.info("login_refused", user=name)
                message.set_text("Wrong user name or password.")
                return
            log.info("login", user=user.name, role=str(user.role))
            ui.navigate.to(redirect_to)

        with ui.card().classes("absolute-center w-80"):
            ui.label("Sieve operations console").classes("text-lg font-bold")
            username = ui.input("User").props('data-testid="username"')
            password = ui.input(
                "Password", password=True, password_toggle_button=True
            ).props('data-testid="password"')
            password.on("keydown.enter", submit)
            ui.button("Log in", on_click=submit).props('data-testid="login"')
            message = ui.label("").classes("text-red-600")

    @ui.page("/logout")
    def logout_page() -> RedirectResponse:
        gate.logout()
        return RedirectResponse("/login")
