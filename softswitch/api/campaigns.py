"""REST operations for outbound work: campaigns and their call lists, preview dialling, the
do-not-call list and scheduled callbacks. The node's `Campaigns` does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from starlette.requests import Request

from softswitch.api.auth import Principal
from softswitch.campaigns import CallbackSpec, CampaignError, CampaignSpec

if TYPE_CHECKING:
    from softswitch.api.server import ApiServer, Endpoint
    from softswitch.campaigns import Campaigns

MAX_LIST = 1000


def campaign_endpoints(server: ApiServer) -> list[Endpoint]:
    """The endpoints, bound to the server's node."""
    from softswitch.api.server import ApiError, Endpoint, _Body, _body

    class StateBody(_Body):
        """Start (or resume) or pause a campaign."""

        state: Literal["running", "paused"]

    class DncBody(_Body):
        """Numbers nobody may call."""

        numbers: list[str] = Field(min_length=1, max_length=10_000, examples=[["0312345678"]])
        reason: str = Field("", max_length=200, examples=["customer asked"])

    class CallListBody(_Body):
        """A CSV call list as JSON (or send the CSV itself with Content-Type: text/csv)."""

        csv: str = Field(min_length=1, description="header row with 'number', optional 'customer_id' and 'id'")

    class CallbackBody(CallbackSpec, _Body):
        """A callback to book."""

    def campaigns() -> Campaigns:
        return server.node.campaigns

    def agent_of(request: Request, p: Principal) -> str:
        agent = request.query_params.get("agent") or p.agent
        if not agent:
            raise ApiError(422, "invalid_request", "name the agent (?agent=): this token has none")
        if not p.may_act_for(agent):
            raise ApiError(403, "forbidden", f"this token may not dial for {agent}")
        return agent

    def paging(request: Request) -> tuple[int, int]:
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            raise ApiError(422, "invalid_request", "limit and offset are whole numbers") from None
        if not 1 <= limit <= MAX_LIST or offset < 0:
            raise ApiError(422, "invalid_request", f"limit is 1..{MAX_LIST}, offset 0 or more")
        return limit, offset

    async def create(request: Request, p: Principal) -> Any:
        spec = await _body(request, CampaignSpec)
        return await campaigns().create(spec)

    async def list_all(request: Request, p: Principal) -> Any:
        return {"campaigns": campaigns().list()}

    async def get(request: Request, p: Principal) -> Any:
        return campaigns().describe(request.path_params["campaign"])

    async def delete(request: Request, p: Principal) -> Any:
        campaign = request.path_params["campaign"]
        await campaigns().delete(campaign)
        return {"deleted": campaign}

    async def set_state(request: Request, p: Principal) -> Any:
        body = await _body(request, StateBody)
        return await campaigns().set_state(request.path_params["campaign"], body.state)

    async def import_list(request: Request, p: Principal) -> Any:
        campaign = request.path_params["campaign"]
        if request.headers.get("content-type", "").split(";")[0].strip() in ("text/csv", "text/plain"):
            data = await request.body()
        else:
            data = (await _body(request, CallListBody)).csv.encode()
        campaigns().describe(campaign)  # 404 before reading a list for nothing
        try:
            return await campaigns().import_list(campaign, data)
        except CampaignError as exc:
            raise ApiError(422, "invalid_call_list", str(exc)) from None

    async def records(request: Request, p: Principal) -> Any:
        limit, offset = paging(request)
        state = request.query_params.get("state") or None
        rows = campaigns().records(request.path_params["campaign"], state=state, limit=limit, offset=offset)
        return {"records": rows, "limit": limit, "offset": offset}

    async def attempts(request: Request, p: Principal) -> Any:
        campaign = request.path_params["campaign"]
        record = request.query_params.get("record") or None
        return {"attempts": await campaigns().attempts(campaign, record)}

    async def preview_next(request: Request, p: Principal) -> Any:
        agent = agent_of(request, p)
        record = campaigns().preview_next(request.path_params["campaign"], agent)
        return {"agent": agent, "record": record}

    async def preview_dial(request: Request, p: Principal) -> Any:
        agent = agent_of(request, p)
        return campaigns().preview_dial(request.path_params["campaign"], agent, request.path_params["record"])

    async def preview_skip(request: Request, p: Principal) -> Any:
        agent = agent_of(request, p)
        record = campaigns().preview_skip(request.path_params["campaign"], agent, request.path_params["record"])
        return {"agent": agent, "record": record}

    async def dnc_list(request: Request, p: Principal) -> Any:
        return {"numbers": await campaigns().list_dnc()}

    async def dnc_add(request: Request, p: Principal) -> Any:
        body = await _body(request, DncBody)
        try:
            return await campaigns().add_dnc(body.numbers, body.reason)
        except CampaignError as exc:
            raise ApiError(422, "invalid_number", str(exc)) from None

    async def dnc_remove(request: Request, p: Principal) -> Any:
        number = request.path_params["number"]
        try:
            removed = await campaigns().remove_dnc(number)
        except CampaignError as exc:
            raise ApiError(422, "invalid_number", str(exc)) from None
        if not removed:
            raise ApiError(404, "not_found", f"{number} is not on the do-not-call list")
        return {"removed": number}

    async def book(request: Request, p: Principal) -> Any:
        body = await _body(request, CallbackBody)
        if body.agent and not p.may_act_for(body.agent):
            raise ApiError(403, "forbidden", f"this token may not book callbacks for {body.agent}")
        return await campaigns().book_callback(CallbackSpec.model_validate(body.model_dump()))

    async def callbacks(request: Request, p: Principal) -> Any:
        state = request.query_params.get("state") or None
        return {"callbacks": campaigns().list_callbacks(state)}

    async def cancel(request: Request, p: Principal) -> Any:
        return await campaigns().cancel_callback(request.path_params["callback"])

    e = Endpoint
    base = "/api/campaigns/{campaign}"
    return [
        e("POST", "/api/campaigns", "supervisor", "Create a campaign (draft until started)", create, CampaignSpec),
        e("GET", "/api/campaigns", "agent", "Campaigns with their state and figures", list_all),
        e("GET", base, "agent", "A campaign with its state and figures", get),
        e("DELETE", base, "supervisor", "Delete a campaign that is not dialling, with its call list", delete),
        e("PUT", base + "/state", "supervisor", "Start or pause a campaign", set_state, StateBody),
        e("POST", base + "/records", "supervisor",
          "Import a CSV call list (Content-Type text/csv, UTF-8 or Shift_JIS, or JSON {csv})", import_list,
          CallListBody),
        e("GET", base + "/records", "supervisor", "The call list: ?state=&limit=&offset=", records),
        e("GET", base + "/attempts", "supervisor", "Every attempt, or one record's (?record=)", attempts),
        e("POST", base + "/preview", "agent", "Preview: reserve the next record for the agent (?agent=)",
          preview_next),
        e("POST", base + "/records/{record}/dial", "agent", "Preview: dial the reserved record", preview_dial),
        e("POST", base + "/records/{record}/skip", "agent", "Preview: skip the reserved record", preview_skip),
        e("GET", "/api/dnc", "supervisor", "The do-not-call list", dnc_list),
        e("POST", "/api/dnc", "supervisor", "Add numbers to the do-not-call list", dnc_add, DncBody),
        e("DELETE", "/api/dnc/{number}", "supervisor", "Take a number off the do-not-call list", dnc_remove),
        e("POST", "/api/callbacks", "agent", "Book a callback at a time, offered to the agent first", book,
          CallbackBody),
        e("GET", "/api/callbacks", "agent", "Booked callbacks, soonest first (?state=)", callbacks),
        e("DELETE", "/api/callbacks/{callback}", "agent", "Cancel a booked callback", cancel),
    ]
