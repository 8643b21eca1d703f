"""The dashboard's forms: sign in and out, and the actions on a batch (each with the
session's CSRF token; see session.acting_viewer)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from batchd.api import ingress
from batchd.api.deps import Manager
from batchd.api.ui import session
from batchd.api.ui.render import SECURITY_HEADERS, page
from batchd.api.ui.session import Acting
from batchd.core import actions, sessions
from batchd.domain import errors

router = APIRouter()
HOME = "/ui/batches"


def _safe_next(url: str | None) -> str:
    """Only a dashboard path: never another site (an open redirect)."""
    if url and url.startswith("/ui/") and not url.startswith("//") and "\\" not in url:
        return url
    return HOME


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


@router.get("/ui")
@ingress.public
async def home() -> Response:
    return _see_other(HOME)


@router.get("/ui/login")
@ingress.public
async def login_form(request: Request, mgr: Manager,
                     next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    if await mgr.sessions.principal(request.cookies.get(session.COOKIE)) is not None:
        return _see_other(_safe_next(next))
    return page("login.html", next=_safe_next(next), error=None)


@router.post("/ui/login")
@ingress.public
async def login(request: Request, mgr: Manager) -> Response:
    fields = await session.form(request)
    target = _safe_next(fields.get("next"))
    try:
        token, _ = await mgr.sessions.sign_in(fields.get("key", "").strip() or None)
    except errors.Unauthorized as exc:
        return page("login.html", status_code=401, next=target, error=exc.message)
    response = _see_other(target)
    response.set_cookie(session.COOKIE, token, max_age=int(sessions.SESSION_TTL_S),
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/ui/logout")
@ingress.public
async def logout(who: Acting, mgr: Manager) -> Response:
    await mgr.sessions.sign_out(who.token)
    response = _see_other("/ui/login")
    response.delete_cookie(session.COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/ui/batches/{batch_id}/{action}")
@ingress.public
async def act(request: Request, batch_id: str, action: str, who: Acting,
              mgr: Manager) -> Response:
    """retry (the form's status and error filter), pause, resume or cancel; back to the
    batch's page, which says how many items the action touched."""
    fields: dict[str, str] = request.state.form
    if action == "retry":
        wanted = [fields["status"]] if fields.get("status") else None
        f = actions.retry_filter(wanted, error_text=fields.get("error"))
        touched = (await mgr.retry_items(who.principal, batch_id, f)).touched
    elif action == "pause":
        touched = (await mgr.pause_batch(who.principal, batch_id)).touched
    elif action == "resume":
        touched = (await mgr.resume_batch(who.principal, batch_id)).touched
    elif action == "cancel":
        before = await mgr.get_batch(who.principal, batch_id)
        after = await mgr.cancel_batch(who.principal, batch_id, "cancelled from the dashboard")
        touched = after.n_cancelled - before.n_cancelled
    else:
        raise errors.NotFound(f"no action {action!r}")
    return _see_other(f"/ui/batches/{quote(batch_id)}?did={action}&n={touched}")
