"""Who is looking: the session cookie, its caller, and the CSRF check of every action."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, Request

from batchd.api.deps import manager
from batchd.core import sessions
from batchd.domain import errors
from batchd.domain.models import Principal

COOKIE = "batchd_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 64 * 1024


class SignInRequired(errors.BatchdError):
    """No live session: the page sends the person to the sign-in form."""

    code = "sign_in_required"

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in first")
        self.next_url = next_url


class Viewer:
    """The signed-in person: the key's caller, and the session's CSRF token."""

    def __init__(self, principal: Principal, token: str) -> None:
        self.principal = principal
        self.token = token

    @property
    def csrf(self) -> str:
        return sessions.csrf_token(self.token)


def _next_url(request: Request) -> str:
    url = request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def viewer(request: Request) -> Viewer:
    """The session's viewer; on a batch's pages and actions, an operator acts in the
    batch's tenant (core.dashboard.Dashboard.for_batch)."""
    token = request.cookies.get(COOKIE)
    mgr = manager(request)
    principal = await mgr.sessions.principal(token)
    if principal is None or token is None:
        raise SignInRequired(_next_url(request))
    batch_id = request.path_params.get("batch_id")
    if batch_id:
        principal = await mgr.dashboard.for_batch(principal, batch_id)
    return Viewer(principal, token)


def check_origin(request: Request) -> None:
    """A form posted from another site is refused (with SameSite=Strict cookies and the
    CSRF token, this also keeps another site from signing a browser in as its own key)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise errors.Forbidden("a form from another site is refused")


async def form(request: Request) -> dict[str, str]:
    """A url-encoded form body (its last value per field), posted from this site."""
    check_origin(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise errors.LimitExceeded("the form is too large")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def acting_viewer(request: Request) -> Viewer:
    """The viewer of an action: the session, and the session's CSRF token in the form (or
    the X-CSRF-Token header); without it the action is refused (403) and nothing is done."""
    who = await viewer(request)
    fields = await form(request)
    request.state.form = fields
    given = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not sessions.csrf_matches(who.token, given):
        raise errors.Forbidden("the form's CSRF token is missing or wrong; reload the page")
    return who


def sign_in_url(next_url: str) -> str:
    return "/ui/login?next=" + quote(next_url, safe="/")


Seen = Annotated[Viewer, Depends(viewer)]
Acting = Annotated[Viewer, Depends(acting_viewer)]
