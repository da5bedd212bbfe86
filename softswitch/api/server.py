"""The node's HTTP server: REST for agents, supervisors and operators, the CTI WebSocket,
the wallboard page, OpenAPI docs and Prometheus metrics, all on the node's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from softswitch.api.auth import ROLES, Principal, TokenTable, bearer
from softswitch.api.campaigns import campaign_endpoints
from softswitch.api.centre import (
    FORCE_STATES,
    SUPERVISE_MODES,
    Conflict,
    ContactCentre,
    NotFound,
    NotSupported,
)
from softswitch.api.cti import CLOSE, Client, CtiHub, dumps, resolve
from softswitch.api.docs import docs_page
from softswitch.api.metrics import NodeMetrics
from softswitch.api.wallboard import WALLBOARD_HTML
from softswitch.config import ApiSettings
from softswitch.store.base import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from softswitch.app import Node

log = logging.getLogger(__name__)

Handler = Callable[[Request, Principal], Awaitable[Any]]


class ApiError(Exception):
    """An error answer: HTTP status, a short machine-readable code and a human-readable detail."""

    def __init__(self, status: int, error: str, detail: Any = "") -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


# -- request bodies (validated; their JSON schemas go into the OpenAPI document) --------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PauseBody(_Body):
    """Why the agent pauses."""

    reason: str = Field(min_length=1, max_length=100, examples=["lunch"])


class ForceStateBody(_Body):
    """The state a supervisor puts an agent in."""

    state: Literal["offline", "available", "paused"]
    reason: str = Field("supervisor", max_length=100)


class SuperviseBody(_Body):
    """Listen, whisper (to the agent only) or barge (three-way) into a call."""

    mode: Literal["listen", "whisper", "barge"]
    supervisor: str | None = Field(None, description="the supervisor's user id; default: the token's")


class ClickToCallBody(_Body):
    """Click-to-call: the agent's phone rings first, then the number is dialled."""

    number: str = Field(min_length=2, max_length=32, pattern=r"^\+?[0-9０-９() \-ー－]+$", examples=["0312345678"])
    agent: str | None = Field(None, description="who calls; default: the token's agent")
    customer_id: str = Field("", max_length=64, description="links the CDR and recording to the CRM record")
    record: bool = True


class MoveBody(_Body):
    """The queue a waiting caller moves to."""

    queue: str = Field(min_length=1)


assert set(FORCE_STATES) == {"offline", "available", "paused"}
assert set(SUPERVISE_MODES) == {"listen", "whisper", "barge"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST operation: the role it needs and what the OpenAPI document says about it."""

    method: str
    path: str
    role: str
    summary: str
    handler: Handler
    body: type[BaseModel] | None = None
    own_agent: bool = False  # an agent token may call it for its own agent


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the node owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves the API on the running event loop: `await start()`, `await stop()`."""

    def __init__(self, node: Node, centre: ContactCentre, config: ApiSettings) -> None:
        self.node = node
        self.centre = centre
        self.config = config
        self.tokens = TokenTable(config.tokens)
        self.metrics = NodeMetrics(
            node.bus,
            active_calls=lambda: len(node.b2bua),
            registrations=node.registrar.count,
            media_legs=_media_legs(node),
            campaigns=node.campaigns.list,
        )
        self.hub = CtiHub(node.bus, centre, lambda: node.store.recent_calls if node.store is not None else None,
                          campaigns=node.campaigns.list)
        self.endpoints = self._endpoints()
        self.app = self._build_app()
        self.host = config.host
        self.port = config.port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `api.listen` (port 0 picks a free port, see `.port`) and serve."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it
        # every response waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        cfg = uvicorn.Config(
            self.app, host=self.config.host, port=self.port, loop="none", lifespan="off",
            log_level="warning", access_log=False, ws="websockets-sansio", timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(cfg)
        self.metrics.start()
        await self.hub.start()
        # Our own socket: a bind failure is an OSError here, not uvicorn's sys.exit in a task.
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.005)
        log.info("API on http://%s:%d (docs /docs, wallboard /wallboard, metrics /metrics)",
                 self.config.host, self.port)

    async def stop(self) -> None:
        """Close WebSockets (1001 going away) and the listener, stop the CTI hub and metrics."""
        await self.hub.stop()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
        await self.metrics.stop()

    @property
    def url(self) -> str:
        """The base URL of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- routing ---------------------------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        e = Endpoint
        return [
            e("GET", "/api/me", "agent", "Who this token is", self.me),
            e("GET", "/api/agents", "supervisor", "Every agent's state", self.list_agents),
            e("GET", "/api/agents/{agent}", "supervisor", "An agent's current state", self.get_agent, own_agent=True),
            e("POST", "/api/agents/{agent}/login", "supervisor", "Log in", self.login, own_agent=True),
            e("POST", "/api/agents/{agent}/logout", "supervisor", "Log out", self.logout, own_agent=True),
            e("POST", "/api/agents/{agent}/pause", "supervisor", "Pause with a reason", self.pause, PauseBody,
              own_agent=True),
            e("POST", "/api/agents/{agent}/ready", "supervisor", "Ready for calls", self.ready, own_agent=True),
            e("PUT", "/api/agents/{agent}/state", "supervisor", "Force an agent's state", self.force_state,
              ForceStateBody),
            e("GET", "/api/queues", "agent", "Queues: waiting callers, service level, agents by state",
              self.list_queues),
            e("GET", "/api/calls", "supervisor", "Calls in progress", self.list_calls),
            e("POST", "/api/calls", "agent", "Click-to-call: ring the agent's phone, then dial the number",
              self.click_to_call, ClickToCallBody),
            e("DELETE", "/api/calls/{call_uuid}", "admin", "Hang up a call", self.hangup),
            e("POST", "/api/calls/{call_uuid}/supervise", "supervisor", "Listen, whisper or barge",
              self.supervise, SuperviseBody),
            e("POST", "/api/calls/{call_uuid}/move", "supervisor", "Move a waiting caller to another queue",
              self.move, MoveBody),
            e("GET", "/api/registrations", "admin", "SIP registrations", self.registrations),
            e("GET", "/api/users/{agent}/missed", "supervisor", "A user's missed calls, newest first",
              self.missed_calls, own_agent=True),
            e("POST", "/api/dialplan/reload", "admin", "Reload the dialplan", self.reload_dialplan),
            *campaign_endpoints(self),
        ]

    def _build_app(self) -> Starlette:
        by_path: dict[str, dict[str, Endpoint]] = {}
        for ep in self.endpoints:
            by_path.setdefault(ep.path, {})[ep.method] = ep
        self._by_path = by_path
        routes: list[Route | WebSocketRoute] = [
            Route(path, self._dispatcher(methods), methods=list(methods)) for path, methods in by_path.items()
        ]
        routes += [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
            Route("/metrics", self.metrics_page, methods=["GET"]),
            Route("/wallboard", self.wallboard, methods=["GET"]),
            Route("/", self.wallboard, methods=["GET"]),
            WebSocketRoute("/ws/events", self.ws_events),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
        )

    def _dispatcher(self, methods: dict[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
        async def dispatch(request: Request) -> Response:
            principal = self._authenticate(request.headers.get("authorization"), None)
            result = await self._invoke(methods[request.method], request, principal)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return dispatch

    async def _invoke(self, ep: Endpoint, request: Request, principal: Principal) -> Any:
        """Run one operation for `principal` (REST request or CTI command); errors as ApiError."""
        agent = request.path_params.get("agent")
        if not principal.at_least(ep.role) and not (ep.own_agent and agent is not None
                                                    and principal.agent == agent):
            raise ApiError(403, "forbidden", f"{ep.method} {ep.path} needs the {ep.role} role"
                           + (" or the agent's own token" if ep.own_agent else ""))
        try:
            return await ep.handler(request, principal)
        except NotSupported as exc:
            raise ApiError(501, "not_supported", _text(exc)) from None
        except StoreUnavailable as exc:
            raise ApiError(503, "unavailable", f"the database is unavailable: {exc}") from None
        except StoreError as exc:
            raise ApiError(422, "store_refused", f"the database refused it: {exc}") from None
        except (NotFound, LookupError) as exc:
            raise ApiError(404, "not_found", _text(exc)) from None
        except (Conflict, ValueError) as exc:
            raise ApiError(409, "conflict", _text(exc)) from None

    async def command(self, text: str, principal: Principal) -> dict[str, Any]:
        """A CTI command sent on the WebSocket: {"id", "method", "path", "body"} names any REST
        operation (click-to-call is {"method": "POST", "path": "/api/calls", "body": {...}}) and is
        answered on the same socket with {"kind": "reply", "id", "status", "result" or "error"}."""
        cid: Any = None
        try:
            try:
                msg = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ApiError(400, "bad_json", f"the command is not JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise ApiError(400, "bad_command", "send a JSON object: {id, method, path, body}")
            cid = msg.get("id")
            method, target, body = msg.get("method"), msg.get("path"), msg.get("body", {})
            if not isinstance(method, str) or not isinstance(target, str) or not target.startswith("/api/"):
                raise ApiError(400, "bad_command", "name the operation: method and a path under /api/")
            path, _, query = target.partition("?")
            scope: dict[str, Any] = {
                "type": "http", "method": method.upper(), "path": path, "root_path": "",
                "query_string": query.encode(), "headers": [(b"content-type", b"application/json")],
            }
            for route in self.app.routes:
                if isinstance(route, Route) and route.path in self._by_path:
                    match, child = route.matches(scope)
                    if match != Match.NONE:
                        break
            else:
                raise ApiError(404, "not_found", f"no operation at {path}")
            ep = self._by_path[route.path].get(scope["method"])
            if ep is None:
                raise ApiError(405, "method_not_allowed", f"{scope['method']} {route.path} is not an operation")
            raw = json.dumps(body).encode()

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": raw, "more_body": False}

            result = await self._invoke(ep, Request({**scope, **child}, receive), principal)
            if isinstance(result, Response):
                result = None
            return {"kind": "reply", "id": cid, "status": 200, "result": result}
        except ApiError as exc:
            return {"kind": "reply", "id": cid, "status": exc.status, "error": exc.error, "detail": exc.detail}

    def _authenticate(self, authorization: str | None, query_token: str | None) -> Principal:
        token = bearer(authorization) or query_token
        if token is None:
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
        principal = self.tokens.lookup(token)
        if principal is None:
            raise ApiError(401, "unauthorized", "unknown token")
        return principal

    # -- handlers: agents ------------------------------------------------------------------

    async def me(self, request: Request, p: Principal) -> Any:
        return {"role": p.role, "agent": p.agent}

    async def list_agents(self, request: Request, p: Principal) -> Any:
        return {"agents": await resolve(self.centre.agents())}

    async def get_agent(self, request: Request, p: Principal) -> Any:
        return await resolve(self.centre.agent_state(request.path_params["agent"]))

    async def _agent_action(self, request: Request, action: Callable[[str], Any]) -> Any:
        agent = request.path_params["agent"]
        await resolve(action(agent))
        return await resolve(self.centre.agent_state(agent))

    async def login(self, request: Request, p: Principal) -> Any:
        return await self._agent_action(request, self.centre.agent_login)

    async def logout(self, request: Request, p: Principal) -> Any:
        return await self._agent_action(request, self.centre.agent_logout)

    async def ready(self, request: Request, p: Principal) -> Any:
        return await self._agent_action(request, self.centre.agent_ready)

    async def pause(self, request: Request, p: Principal) -> Any:
        body = await _body(request, PauseBody)
        return await self._agent_action(request, lambda a: self.centre.agent_pause(a, body.reason))

    async def force_state(self, request: Request, p: Principal) -> Any:
        body = await _body(request, ForceStateBody)
        return await self._agent_action(
            request, lambda a: self.centre.force_agent_state(a, body.state, body.reason))

    # -- handlers: supervisors and operators -------------------------------------------------

    async def list_queues(self, request: Request, p: Principal) -> Any:
        return {"queues": await resolve(self.centre.queues())}

    async def list_calls(self, request: Request, p: Principal) -> Any:
        return {"calls": await resolve(self.centre.list_calls())}

    async def hangup(self, request: Request, p: Principal) -> Any:
        call = request.path_params["call_uuid"]
        if not await resolve(self.centre.hangup(call)):
            raise ApiError(404, "not_found", f"no call {call}")
        return {"call_uuid": call, "hung_up": True}

    async def supervise(self, request: Request, p: Principal) -> Any:
        body = await _body(request, SuperviseBody)
        who = body.supervisor or p.agent
        if not who:
            raise ApiError(422, "invalid_request", "name the supervisor's user id: this token has none")
        call = request.path_params["call_uuid"]
        result = await resolve(self.centre.supervise(body.mode, who, call))
        return {"call_uuid": call, "mode": body.mode, "supervisor": who, "result": _jsonable(result)}

    async def click_to_call(self, request: Request, p: Principal) -> Any:
        body = await _body(request, ClickToCallBody)
        agent = body.agent or p.agent
        if not agent:
            raise ApiError(422, "invalid_request", "name the agent who calls: this token has none")
        if not p.may_act_for(agent):
            raise ApiError(403, "forbidden", f"this token may not place calls for {agent}")
        result = await resolve(self.centre.click_to_call(agent, body.number, body.customer_id, body.record))
        return {"agent": agent, "number": body.number, "result": _jsonable(result)}

    async def move(self, request: Request, p: Principal) -> Any:
        body = await _body(request, MoveBody)
        call = request.path_params["call_uuid"]
        result = await resolve(self.centre.move_caller(call, body.queue))
        return {"call_uuid": call, "queue": body.queue, "result": _jsonable(result)}

    async def registrations(self, request: Request, p: Principal) -> Any:
        now = time.time()
        rows = [
            {"aor": b.aor, "contact": b.contact, "expires_in": b.remaining(now),
             "source": f"{b.source.transport}:{b.source.host}:{b.source.port}", "user_agent": b.user_agent}
            for b in self.node.registrar.bindings.all() if b.expires_at > now
        ]
        rows.sort(key=lambda r: (r["aor"], r["contact"]))
        return {"registrations": rows}

    async def missed_calls(self, request: Request, p: Principal) -> Any:
        user = request.path_params["agent"]
        if user not in self.node.config.users_by_id:
            raise ApiError(404, "not_found", f"no user {user}")
        store = self.node.store
        if store is None:
            raise ApiError(503, "unavailable", "the store is not open")
        try:
            records = await store.missed_calls(user)
        except StoreUnavailable as exc:
            raise ApiError(503, "unavailable", f"the database is unavailable: {exc}") from None
        return {"user": user, "missed": [
            {"call_uuid": r.call_uuid, "caller": r.caller, "start": r.start, "disposition": r.disposition,
             "queue": r.queue} for r in records]}

    async def reload_dialplan(self, request: Request, p: Principal) -> Any:
        ok, errors = await resolve(self.centre.reload_dialplan())
        if not ok:
            raise ApiError(422, "invalid_dialplan", list(errors))
        return {"reloaded": True, "errors": []}

    # -- pages -------------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi_document())

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(docs_page())

    async def wallboard(self, request: Request) -> Response:
        return HTMLResponse(WALLBOARD_HTML, headers={"Cache-Control": "no-store"})

    async def metrics_page(self, request: Request) -> Response:
        queues = await resolve(self.centre.queues())
        agents = await resolve(self.centre.agents())
        body = self.metrics.render(queues, agents)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- the CTI WebSocket ---------------------------------------------------------------------

    async def ws_events(self, websocket: WebSocket) -> None:
        try:
            principal = self._authenticate(websocket.headers.get("authorization"),
                                           websocket.query_params.get("token"))
        except ApiError as exc:
            await websocket.send_denial_response(
                JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status))
            return
        kinds_param = websocket.query_params.get("kinds")
        kinds = frozenset(k for k in kinds_param.split(",") if k) if kinds_param else None
        await websocket.accept()
        client = Client(principal, kinds)
        await self.hub.add(client)
        reader = asyncio.ensure_future(self._read_commands(websocket, client))
        try:
            while True:
                getter = asyncio.ensure_future(client.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                text = getter.result()
                if text == CLOSE:
                    await websocket.close(code=1001, reason="node stopping")
                    break
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.hub.remove(client)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close()

    async def _read_commands(self, websocket: WebSocket, client: Client) -> None:
        """Read what the client sends: CTI commands, answered in order on the same socket. Returns
        when the client closes, so the sender notices."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            try:
                reply = await self.command(text, client.principal)
            except Exception:
                log.exception("CTI command failed")
                reply = {"kind": "reply", "id": None, "status": 500, "error": "internal_error",
                         "detail": "the node failed to carry out the command; see its log"}
            client.put_text(dumps(reply))

    # -- OpenAPI -------------------------------------------------------------------------------

    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 description of the REST API (generated from the endpoint table)."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {"Error": {
            "type": "object", "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {}},
        }}
        err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for ep in self.endpoints:
            op: dict[str, Any] = {
                "summary": ep.summary,
                "description": f"Role: {ep.role}" + (" (or the agent's own token)" if ep.own_agent else ""),
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in _path_params(ep.path)
                ],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": {"description": "missing or unknown token", **err},
                    "403": {"description": "the token's role may not do this", **err},
                    "404": {"description": "no such agent, call or queue", **err},
                    "409": {"description": "not allowed in the current state", **err},
                    "422": {"description": "invalid request body", **err},
                },
            }
            if ep.body is not None:
                schemas[ep.body.__name__] = ep.body.model_json_schema()
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}}}
            paths.setdefault(ep.path, {})[ep.method.lower()] = op
        paths["/ws/events"] = {"get": {
            "summary": ("CTI event stream (WebSocket; token as ?token= or bearer header; ?kinds=a,b filters); "
                        "commands sent on it, {id, method, path, body} naming any /api/ operation, are "
                        "answered with {kind: reply, id, status, result or error}"),
            "responses": {"101": {"description": "switching protocols"}},
        }}
        paths["/metrics"] = {"get": {"summary": "Prometheus metrics",
                                     "responses": {"200": {"description": "text exposition"}}}}
        paths["/wallboard"] = {"get": {"summary": "Wallboard page (?token=...)",
                                       "responses": {"200": {"description": "HTML"}}}}
        return {
            "openapi": "3.1.0",
            "info": {"title": "softswitch API", "version": "1",
                     "description": f"Roles: {', '.join(ROLES)} (each includes the ones before it)."},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        }




async def _body(request: Request, model: type[Any]) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = [{"field": ".".join(str(x) for x in e["loc"]) or "(body)", "message": e["msg"]}
                  for e in exc.errors()]
        raise ApiError(422, "invalid_request", detail) from None


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _text(exc: BaseException) -> str:
    # KeyError's str() adds quotes; the message is its first argument.
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    detail = exc.detail if exc.status_code != 404 else f"no route {request.url.path}"
    return JSONResponse({"error": codes.get(exc.status_code, "http_error"), "detail": detail},
                        status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("API handler failed on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal", "detail": type(exc).__name__}, status_code=500)


def _media_legs(node: Any) -> Callable[[], list[dict[str, Any]]] | None:
    """Per-leg RTP statistics from the node's in-process media backend, if it has one."""
    media = getattr(node, "media", None)
    if media is None or not hasattr(media, "legs"):
        return None

    def legs() -> list[dict[str, Any]]:
        out = []
        for leg_id in list(media.legs):
            try:
                out.append({"leg": leg_id, **media.stats(leg_id)})
            except KeyError:
                continue
        return out

    return legs
