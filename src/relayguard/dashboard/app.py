"""The dashboard: findings, bans and locks with their expiry, the queue — and the actions an
administrator takes there (unban, unlock, hold/release a selection), each confirmed on a page of
its own and written to the audit trail.

Security: bound to 127.0.0.1 by default; every request needs the token (once as `?token=`, which
sets an HttpOnly cookie, or as `Authorization: Bearer`); every action is a POST carrying a CSRF
value derived from the token; templates autoescape everything (log data is attacker-controlled).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..queue.actions import postsuper
from ..queue.select import Selector, parse_ip_or_cidr, select
from ..queue.tools import PostfixTools, QueueError, valid_queue_id
from ..respond import Banner, Locker, RespondError
from ..state.shared import SharedState, normalise_network, open_shared
from ..state.store import Store, resolve_path

COOKIE = "relayguard_token"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
QUEUE_ACTIONS = ("hold", "release")


class Dashboard:
    """The state the pages read and the actions they take; one per server."""

    def __init__(self, cfg: dict[str, Any], token: str, state_path: str | None = None,
                 config_dir: str | None = None) -> None:
        self.cfg = cfg
        self.token = token
        self.csrf = hmac.new(token.encode(), b"relayguard-csrf", hashlib.sha256).hexdigest()
        self.state_path = state_path
        self.config_dir = config_dir
        self.host = socket.gethostname()

    def store(self) -> Store:
        return Store(resolve_path(self.state_path, self.cfg))

    def shared(self) -> SharedState:
        return open_shared(self.cfg, self.state_path)

    def authorised(self, request: Request) -> bool:
        given = request.cookies.get(COOKIE) or request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def page(self, request: Request, name: str, **context: Any) -> Response:
        context.setdefault("message", request.query_params.get("done"))
        resp = TEMPLATES.TemplateResponse(request, name, {"host": self.host, **context})
        if request.query_params.get("token"):
            resp.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    async def form(self, request: Request) -> dict[str, str] | None:
        """The POSTed form, when its CSRF value is right."""
        form = await request.form()
        data = {k: str(v) for k, v in form.items()}
        if not hmac.compare_digest(data.get("csrf", "").encode(), self.csrf.encode()):
            return None
        return data

    def selector(self, params: Any) -> Selector:
        def one(name: str) -> tuple[str, ...]:
            v = (params.get(name) or "").strip()
            return (v,) if v else ()
        ips = one("client_ip")
        return Selector(senders=one("sender"), sasl_users=one("sasl_user"), queues=one("queue"),
                        client_ips=tuple(parse_ip_or_cidr(ip) for ip in ips))

    # ------------------------------------------------------------------ routes
    async def index(self, request: Request) -> Response:
        with self.store() as store:
            findings = store.findings()
            history = store.history(limit=15)
        shared = self.shared()
        try:
            bans = [b.to_dict() for b in shared.bans()]
            locks = [lk.to_dict() for lk in shared.locks()]
        finally:
            shared.close()
        queue, queue_error = None, None
        try:
            sel = select(PostfixTools(self.config_dir), Selector())
            queue = {"messages": len(sel.messages), "by_queue": sel.by_queue(),
                     "top_senders": sel.top_senders(8)}
        except (QueueError, OSError) as exc:
            queue_error = f"queue not read: {exc}"
        return self.page(request, "index.html", findings=findings, bans=bans, locks=locks,
                         queue=queue, queue_error=queue_error, history=history)

    def _confirm(self, request: Request, what: str, field: str, question: str) -> Response:
        value = request.query_params.get(field, "")
        return self.page(request, "confirm.html", title=what.capitalize(), action=f"/{what}",
                         csrf=self.csrf, question=question.format(value), fields={field: value},
                         button=what.capitalize(), sample=None)

    async def unban_confirm(self, request: Request) -> Response:
        return self._confirm(request, "unban", "network",
                             "Lift the ban on {}? Its connections will be accepted again.")

    async def unlock_confirm(self, request: Request) -> Response:
        return self._confirm(request, "unlock", "user",
                             "Unlock the account {}? Change its password first.")

    async def _lift(self, request: Request, what: str, field: str, holder: type[Banner | Locker],
                    done: str, not_there: str) -> Response:
        """Unban or unlock, through the respond layer: it lifts the ban or lock where it is
        enforced (nftables, Postfix maps, fail2ban…) and writes the audit entry."""
        data = await self.form(request)
        if data is None:
            return PlainTextResponse("bad or missing CSRF value", status_code=403)
        value = data.get(field, "")
        if field == "network":
            try:
                value = normalise_network(value)
            except ValueError:
                return PlainTextResponse("not an address or network", status_code=400)
        try:
            with holder.from_config(self.cfg, self.state_path, self.config_dir) as h:
                lifted = h.unban(value, source="dashboard") if isinstance(h, Banner) \
                    else h.unlock(value, source="dashboard")
        except RespondError as exc:
            return PlainTextResponse(f"{what} failed: {exc}", status_code=500)
        message = (done if lifted else not_there).format(value)
        return RedirectResponse(f"/?done={message} (see recent actions)", status_code=303)

    async def unban(self, request: Request) -> Response:
        return await self._lift(request, "unban", "network", Banner, "Unbanned {}", "{} was not banned")

    async def unlock(self, request: Request) -> Response:
        return await self._lift(request, "unlock", "user", Locker, "Unlocked {}", "{} was not locked")

    async def queue_preview(self, request: Request) -> Response:
        action = request.query_params.get("action", "hold")
        if action not in QUEUE_ACTIONS:
            return PlainTextResponse("unknown action", status_code=400)
        try:
            sel = self.selector(request.query_params)
            if sel.is_empty():
                return self.page(request, "confirm.html", title="Nothing selected", fields=None,
                                 question="Give at least one selector.", sample=None)
            found = select(PostfixTools(self.config_dir), sel)
        except (QueueError, ValueError) as exc:
            return self.page(request, "confirm.html", title="Cannot select", fields=None,
                             question=str(exc), sample=None)
        ids = [m.queue_id for m in found.messages]
        sample = [{"queue_id": m.queue_id, "queue_name": m.queue_name, "sender": m.sender,
                   "recipients": [r.address for r in m.recipients][:3]} for m in found.messages[:20]]
        return self.page(request, "confirm.html", title=f"{action.capitalize()} queued mail",
                         action=f"/queue/{action}", csrf=self.csrf, sample=sample,
                         question=f"{action.capitalize()} {len(ids)} message(s) matching {sel.describe()}?",
                         fields={"ids": ",".join(ids), "selector": str(sel.describe())} if ids else None,
                         button=action.capitalize())

    async def queue_act(self, request: Request) -> Response:
        action = request.path_params["action"]
        data = await self.form(request)
        if data is None or action not in QUEUE_ACTIONS:
            return PlainTextResponse("bad request", status_code=403 if data is None else 400)
        ids = [q for q in data.get("ids", "").split(",") if q]
        if not all(valid_queue_id(q) for q in ids):
            return PlainTextResponse("malformed queue ID", status_code=400)
        try:
            result = postsuper(PostfixTools(self.config_dir), action, ids)
        except QueueError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        with self.store() as store:
            entry = store.record(action, selector={"dashboard": data.get("selector", "")},
                                 matched=len(ids), queue_ids=result.done, gone=result.gone,
                                 config_dir=self.config_dir, detail=f"dashboard: {action}")
        return RedirectResponse(f"/?done={action.capitalize()}: {len(result.done)} message(s) "
                                f"(audit entry {entry})", status_code=303)


def create_app(dash: Dashboard) -> Starlette:
    async def guard(request: Request, call_next: Any) -> Response:
        if not dash.authorised(request):
            return PlainTextResponse("relayguard: token required (open the URL printed by `relayguard serve`)",
                                     status_code=401)
        return await call_next(request)

    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    routes = [
        Route("/", dash.index),
        Route("/unban", dash.unban_confirm, methods=["GET"]),
        Route("/unban", dash.unban, methods=["POST"]),
        Route("/unlock", dash.unlock_confirm, methods=["GET"]),
        Route("/unlock", dash.unlock, methods=["POST"]),
        Route("/queue/preview", dash.queue_preview, methods=["GET"]),
        Route("/queue/{action}", dash.queue_act, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])
