"""The console's HTTP app (aiohttp): a static page and a small JSON API behind RBAC.

Routes (every ``/api`` route needs ``Authorization: Bearer <token>``; the RBAC check is named):

- ``GET /`` and ``/static/*``: the page shell (no data, no auth);
- ``GET /api/whoami``: the caller and the namespaces this operator watches (a valid token);
- ``GET /api/namespaces/{ns}/overview``: lines, versions, trainings
  (``list certifiedmodels`` and ``list modeltrainings`` in ``ns``);
- ``POST .../lines/{line}/current`` ``{"dna": ...}``: "Set as CURRENT";
  ``POST .../lines/{line}/rollback`` ``{"expectedCurrent": ...}``: "Roll back"
  (``patch certifiedmodels/{line}``);
- ``POST .../lines/{line}/versions/{dna}/ticket``: a one-time download link, and
  ``GET .../lines/{line}/versions/{dna}/download``: the version as a tar stream
  (``get certifiedmodels/download`` on ``{line}``: an explicit grant, plain read access to a
  line does not include its weights).

Blocking work (reviews, API calls, verification, file reads) runs in worker threads, so one
slow request never holds up another.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from kubernetes.client.exceptions import ApiException

from certmodel.operator.console import views
from certmodel.operator.console.auth import (
    Access,
    Authenticator,
    DownloadTickets,
    Identity,
    Ticket,
    parse_bearer,
)
from certmodel.operator.console.kubeio import LINES, TRAININGS, ConsoleKube
from certmodel.operator.console.tarstream import (
    TarStreamError,
    archive_size,
    tar_chunks,
    version_members,
)
from certmodel.operator.console.views import ConsoleError
from certmodel.operator.volume import ModelsVolume

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
DOWNLOAD = "download"
"""The subresource name a download is authorized as: ``get certifiedmodels/download``."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[StreamResponse]]


@dataclass
class Console:
    """What the handlers share."""

    kube: ConsoleKube
    auth: Authenticator
    volume: ModelsVolume
    namespaces: tuple[str, ...] | None
    """The namespaces the operator watches; None: every namespace."""
    tickets: DownloadTickets
    downloads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    """Downloads streaming at once (each reads and hashes a whole version)."""


CONSOLE = web.AppKey("console", Console)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="certmodel-console"'} if status == 401 else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: it may hold a download ticket), status, user."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        who = request.get("identity")
        user = who.username if isinstance(who, Identity) else "-"
        self.logger.info(
            "%s %s %s %s %.3fs", request.method, request.path, response.status, user, time
        )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> StreamResponse:
    """Security headers on every answer; on /api, authentication and JSON errors."""
    try:
        if request.path.startswith("/api/"):
            await _authenticate(request)
        response = await handler(request)
    except ConsoleError as exc:
        response = _error(exc.status, exc.message)
    except ApiException as exc:
        log.warning(
            "API error in %s %s: %s %s", request.method, request.path, exc.status, exc.reason
        )
        response = _error(502, f"the Kubernetes API answered {exc.status} {exc.reason}")
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    except Exception:
        log.exception("console error in %s %s", request.method, request.path)
        response = _error(500, "internal error; see the operator's log")
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
    return response


async def _authenticate(request: web.Request) -> None:
    header = request.headers.get("Authorization")
    if header is None and request.path.endswith(f"/{DOWNLOAD}") and "ticket" in request.query:
        return  # the download handler redeems the ticket
    token = parse_bearer(header)
    if token is None:
        raise ConsoleError(401, "authentication required: send Authorization: Bearer <token>")
    console = request.app[CONSOLE]
    try:
        identity = await asyncio.to_thread(console.auth.authenticate, token)
    except ApiException as exc:
        log.warning("TokenReview failed: %s %s", exc.status, exc.reason)
        raise ConsoleError(503, "cannot review the token now (TokenReview failed)") from exc
    if identity is None:
        raise ConsoleError(401, "the token was not accepted by the Kubernetes API server")
    request["identity"] = identity


async def _require(request: web.Request, access: Access) -> Identity:
    identity: Identity = request["identity"]
    console = request.app[CONSOLE]
    try:
        decision = await asyncio.to_thread(console.auth.authorize, identity, access)
    except ApiException as exc:
        log.warning("SubjectAccessReview failed: %s %s", exc.status, exc.reason)
        raise ConsoleError(
            503, "cannot check permissions now (SubjectAccessReview failed)"
        ) from exc
    if not decision.allowed:
        raise ConsoleError(403, f"{identity.username} may not {access.describe()}")
    return identity


def _namespace(request: web.Request) -> str:
    ns = request.match_info["ns"]
    watched = request.app[CONSOLE].namespaces
    if watched is not None and ns not in watched:
        raise ConsoleError(404, f"namespace {ns} is not watched by this operator")
    return ns


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConsoleError(400, "the request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise ConsoleError(400, "the request body must be a JSON object")
    return body


# -- pages ------------------------------------------------------------------------------------
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name", "index.html")
    if name not in STATIC_FILES:
        raise ConsoleError(404, "not found")
    text = await asyncio.to_thread((STATIC / name).read_text, "utf-8")
    return web.Response(text=text, content_type=STATIC_FILES[name], charset="utf-8")


async def healthz(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


# -- API --------------------------------------------------------------------------------------
async def whoami(request: web.Request) -> web.StreamResponse:
    identity: Identity = request["identity"]
    watched = request.app[CONSOLE].namespaces
    return web.json_response(
        {
            "user": identity.username,
            "groups": list(identity.groups),
            "namespaces": list(watched) if watched is not None else None,
        }
    )


async def overview(request: web.Request) -> web.StreamResponse:
    ns = _namespace(request)
    await _require(request, Access("list", LINES, ns))
    await _require(request, Access("list", TRAININGS, ns))
    kube = request.app[CONSOLE].kube
    lines, trainings = await asyncio.gather(
        asyncio.to_thread(kube.list_lines, ns), asyncio.to_thread(kube.list_trainings, ns)
    )
    return web.json_response(views.overview(ns, lines, trainings))


async def _move(request: web.Request, action: str) -> web.StreamResponse:
    ns, name = _namespace(request), request.match_info["line"]
    identity = await _require(request, Access("patch", LINES, ns, name))
    body = await _json_body(request)
    kube = request.app[CONSOLE].kube
    line = await asyncio.to_thread(kube.get_line, ns, name)
    now = datetime.now(UTC)
    if action == "current":
        patch = views.set_current_patch(line, body.get("dna"), user=identity.username, now=now)
    else:
        patch = views.rollback_patch(
            line, expected_current=body.get("expectedCurrent"), user=identity.username, now=now
        )
    updated = await asyncio.to_thread(kube.patch_line, ns, name, patch)
    target = patch["spec"]["promotion"]["current"]
    verb = "set CURRENT to" if action == "current" else "rolled back to"
    log.info("%s %s %s/%s %s through the console", identity.username, verb, ns, name, target)
    await asyncio.to_thread(
        kube.record,
        updated,
        "ConsoleSetCurrent" if action == "current" else "ConsoleRollback",
        f"{identity.username} {verb} {target} through the console",
    )
    return web.json_response(views.line_view(updated))


async def set_current(request: web.Request) -> web.StreamResponse:
    return await _move(request, "current")


async def rollback(request: web.Request) -> web.StreamResponse:
    return await _move(request, "rollback")


def _download_access(ns: str, line: str) -> Access:
    return Access("get", LINES, ns, line, subresource=DOWNLOAD)


async def ticket(request: web.Request) -> web.StreamResponse:
    ns, name, dna = _namespace(request), request.match_info["line"], request.match_info["dna"]
    identity = await _require(request, _download_access(ns, name))
    console = request.app[CONSOLE]
    line = await asyncio.to_thread(console.kube.get_line, ns, name)
    views.download_target(line, dna)
    value = console.tickets.issue(Ticket(identity, ns, name, dna))
    path = f"/api/namespaces/{quote(ns)}/lines/{quote(name)}/versions/{quote(dna)}/{DOWNLOAD}"
    return web.json_response({"url": f"{path}?ticket={quote(value)}"})


async def download(request: web.Request) -> web.StreamResponse:
    ns, name, dna = _namespace(request), request.match_info["line"], request.match_info["dna"]
    console = request.app[CONSOLE]
    if "identity" not in request:
        redeemed = console.tickets.redeem(
            request.query.get("ticket", ""), namespace=ns, line=name, dna=dna
        )
        if redeemed is None:
            raise ConsoleError(401, "the download ticket is unknown, used or expired")
        request["identity"] = redeemed
    await _require(request, _download_access(ns, name))
    line = await asyncio.to_thread(console.kube.get_line, ns, name)
    views.download_target(line, dna)
    volume = console.volume
    root = volume.root.resolve()
    version_dir = volume.store.version_path(dna)
    if not version_dir.resolve().is_relative_to(root) or version_dir.is_symlink():
        raise ConsoleError(409, f"version {dna} is not a plain folder inside the models volume")
    if not await asyncio.to_thread(volume.exists, dna):
        raise ConsoleError(404, f"version {dna} is not on the models volume")
    checked = await asyncio.to_thread(volume.verified, dna)
    if not checked.ok or checked.manifest is None:
        raise ConsoleError(409, f"version {dna} failed verification: {checked.problem}")
    try:
        members = version_members(version_dir, checked.manifest)
    except TarStreamError as exc:
        raise ConsoleError(409, f"version {dna} cannot be archived: {exc}") from exc
    mtime = int(checked.manifest.created.timestamp())
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "Content-Disposition": f'attachment; filename="{dna}.tar"',
            "Content-Length": str(archive_size(dna, members, mtime=mtime)),
            "Cache-Control": "no-store",
            **SECURITY_HEADERS,
        }
    )
    if console.downloads.locked():
        raise ConsoleError(429, "too many downloads at once; retry in a moment")
    async with console.downloads:
        await response.prepare(request)
        chunks = tar_chunks(version_dir, dna, members, mtime=mtime)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                await response.write(chunk)
        except Exception as exc:  # TarStreamError, a read error, the client going away
            # The headers are gone: no error answer can follow (the guard must not try one).
            # Cut the connection, so the client sees a short body, never a corrupt archive.
            log.error("download of %s stopped: %s", dna, exc)
            chunks.close()
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
    log.info("%s downloaded %s/%s %s", request["identity"].username, ns, name, dna)
    return response


def build_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/", static)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/whoami", whoami)
    base = "/api/namespaces/{ns}"
    app.router.add_get(f"{base}/overview", overview)
    app.router.add_post(f"{base}/lines/{{line}}/current", set_current)
    app.router.add_post(f"{base}/lines/{{line}}/rollback", rollback)
    version = f"{base}/lines/{{line}}/versions/{{dna}}"
    app.router.add_post(f"{version}/ticket", ticket)
    app.router.add_get(f"{version}/{DOWNLOAD}", download, allow_head=False)
    return app
