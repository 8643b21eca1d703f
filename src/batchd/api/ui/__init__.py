"""The dashboard at ``/ui`` (``/`` redirects there): server-rendered pages (Jinja2, htmx,
assets shipped in the package), a session cookie made from an API key, and the same
core reads and actions as the API, scoped to the key's tenant and role."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from batchd.api import errors as api_errors
from batchd.api import ingress
from batchd.api.ui import forms, more, pages, session
from batchd.api.ui.render import SECURITY_HEADERS, page
from batchd.domain import errors

router = APIRouter(include_in_schema=False)
# Pages first: a form's path (/ui/batches/{id}/{action}) also matches their GET paths.
router.include_router(pages.router)
router.include_router(more.router)
router.include_router(forms.router)


@router.get("/")
@ingress.public
async def root() -> Response:
    return RedirectResponse("/ui", status_code=307)


def ui_error(request: Request) -> object:
    def handle(exc: errors.BatchdError) -> Response:
        if isinstance(exc, session.SignInRequired):
            target = session.sign_in_url(exc.next_url)
            if request.headers.get("hx-request") == "true":
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        status = api_errors.status_of(exc)
        return page("error.html", status_code=status, status=status, message=exc.message)
    return handle


def invalid(exc: Exception) -> Response:
    return page("error.html", status_code=422, status=422,
                message="; ".join(str(e.get("msg")) for e in getattr(exc, "errors", list)()))


def bind(request: Request) -> None:
    request.state.error_handler = ui_error(request)
    request.state.validation_handler = invalid


DIALECT = ingress.Dialect(
    "dashboard", key=lambda request: None, bind=bind,
    error_schema={"type": "string", "description": "an HTML page"},
    error_media=("text/html",),
)


def install(app: FastAPI) -> APIRouter:
    """Serve the dashboard's pages and static assets; the router, for the ingress."""
    app.include_router(router)
    static = resources.files("batchd.api.ui") / "static"
    app.mount("/ui/static", StaticFiles(directory=str(static)), name="ui-static")
    return router


__all__ = ["DIALECT", "install", "router"]
