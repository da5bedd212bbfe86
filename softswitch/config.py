"""The one typed config: a pydantic model tree for the node config, validated with its dialplan.

`load_config` reads YAML, validates every field (unknown keys are errors), resolves relative paths
against the config file's folder, checks cross references (queues named by agents, escalations and
the dialplan; trunks; users; prompt files) and raises `ConfigError` whose lines read
"file:line:col: field: message (hint: ...)".
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import warnings
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from softswitch.dialplan.loader import References, parse_dialplan
from softswitch.dialplan.model import Dialplan
from softswitch.yamlconf import (
    ConfigError,
    Located,
    did_you_mean,
    format_error,
    load_yaml_file,
    validation_errors,
)

__all__ = [
    "ApiSettings", "ApiToken", "AgentProfile", "ConfigError", "Directory", "EscalationStep", "ListenSpec",
    "MediaSettings", "NodeConfig", "OverflowTarget", "PortRange", "QueueMembership", "QueueSettings",
    "SecuritySettings", "SipSettings", "Trunk", "User", "check_main", "demo_config", "load_config",
    "schema_main",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _resolve(v: Any, info: ValidationInfo) -> Any:
    """Relative paths resolve against the config file's folder (passed as validation context)."""
    if v is None:
        return v
    base = (info.context or {}).get("base_dir")
    p = Path(v)
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    return p


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text)
    if not m:
        raise PydanticCustomError("host_port", "bad address '{text}'",
                                  {"text": text, "hint": "host:port, IPv6 in brackets: [::1]:5060"})
    host = m.group(1) or m.group(3)
    port_text = m.group(2) or m.group(4)
    if port_text is None:
        if default_port is None:
            raise PydanticCustomError("host_port", "missing port in '{text}'", {"text": text, "hint": "host:port"})
        return host, default_port
    port = int(port_text)
    if not 0 < port < 65536:
        raise PydanticCustomError("host_port", "port {port} out of range", {"port": port, "hint": "1-65535"})
    return host, port


class ListenSpec(_Strict):
    """A SIP listener; written as 'udp://127.0.0.1:5060', 'tls://[::1]:5061', 'ws://0.0.0.0:8088'."""

    transport: Literal["udp", "tcp", "tls", "ws", "wss"]
    host: str
    port: int = Field(ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        m = re.fullmatch(r"([a-z]+)://(.+)", v.strip())
        if not m:
            raise PydanticCustomError("listen", "bad listen address '{v}'",
                                      {"v": v, "hint": "udp://127.0.0.1:5060, tcp://..., tls://..., ws://..."})
        scheme = m.group(1)
        if scheme not in _DEFAULT_PORTS:
            raise PydanticCustomError("listen", "unknown transport '{s}'",
                                      {"s": scheme, "hint": did_you_mean(scheme, _DEFAULT_PORTS)
                                       or "udp, tcp, tls, ws or wss"})
        host, port = _split_host_port(m.group(2), _DEFAULT_PORTS[scheme])
        return {"transport": scheme, "host": host, "port": port}

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


class SipSettings(_Strict):
    """SIP listeners, domain, RFC 3261 timers and limits."""

    listen: list[Annotated[ListenSpec, WithJsonSchema(
        {"type": "string", "pattern": r"^(udp|tcp|tls|ws|wss)://", "examples": ["udp://127.0.0.1:5060"]})]] = Field(default_factory=lambda: [ListenSpec(transport="udp", host="127.0.0.1",
                                                                         port=5060)])
    domain: str = "localhost"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    t1: float = Field(0.5, gt=0)
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)
    session_expires: float = Field(1800.0, gt=0, description="RFC 4028 session interval the node asks for "
                                   "on calls it answers; it refreshes them at half of it")
    min_expires: int = Field(60, ge=1)
    max_expires: int = Field(7200, ge=1)
    default_expires: int = Field(3600, ge=1)
    max_message_size: int = Field(65536, ge=1024)
    tcp_idle_timeout: float = Field(300.0, gt=0)
    user_agent: str = "softswitch"

    @field_validator("tls_cert", "tls_key", mode="before")
    @classmethod
    def _paths(cls, v: Any, info: ValidationInfo) -> Any:
        return _resolve(v, info)

    @model_validator(mode="after")
    def _consistent(self) -> SipSettings:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise PydanticCustomError("expires", "need min_expires <= default_expires <= max_expires",
                                      {"hint": "defaults: 60, 3600, 7200"})
        if any(x.transport in ("tls", "wss") for x in self.listen):
            for name in ("tls_cert", "tls_key"):
                p = getattr(self, name)
                if p is None:
                    raise PydanticCustomError("tls", "a tls:// or wss:// listener needs {name}",
                                              {"name": name, "hint": f"sip.{name}: path to a PEM file"})
                if not p.is_file():
                    raise PydanticCustomError("tls", "{name} file {p} not found", {"name": name, "p": str(p)})
        return self


class SecuritySettings(_Strict):
    """Brute-force bans, rate limits and digest settings."""

    auth_fail_limit: int = Field(10, ge=1)
    auth_fail_window: float = Field(60, gt=0)
    ban_seconds: float = Field(600, ge=0)
    rate_limit: float = Field(500, gt=0, description="requests per second per source address")
    rate_burst: int = Field(1000, ge=1)
    nonce_ttl: float = Field(300, gt=0)
    digest_algorithms: list[Literal["SHA-256", "MD5"]] = Field(default_factory=lambda: ["SHA-256", "MD5"],
                                                                min_length=1)
    trusted_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)


@dataclass(frozen=True)
class PortRange:
    """An RTP port range, inclusive; start is even (RTP on even ports, RTCP on the odd one above)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _port_range(v: Any) -> PortRange:
    if isinstance(v, PortRange):
        return v
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(v))
    if not m:
        raise PydanticCustomError("port_range", "bad port range '{v}'", {"v": v, "hint": "e.g. 20000-20999"})
    start, end = int(m.group(1)), int(m.group(2))
    if not (1024 <= start < end <= 65535):
        raise PydanticCustomError("port_range", "port range '{v}' must have 1024 <= start < end <= 65535",
                                  {"v": v, "hint": "e.g. 20000-20999"})
    if start % 2:
        raise PydanticCustomError("port_range", "the range must start on an even port",
                                  {"hint": f"{start + 1}-{end} or {start - 1}-{end}"})
    return PortRange(start, end)


class MediaSettings(_Strict):
    """Where RTP is anchored and where media files live."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    address: str = "127.0.0.1"
    rtp_ports: Annotated[PortRange, BeforeValidator(_port_range),
                         WithJsonSchema({"type": "string", "pattern": r"^\d+-\d+$", "examples": ["20000-20999"]})
                         ] = Field(default_factory=lambda: PortRange(20000, 20999))
    # defaults are validated too, so they resolve against the config folder like written values
    recordings_dir: Path = Field(Path("recordings"), validate_default=True)
    prompts_dir: Path = Field(Path("prompts"), validate_default=True)
    tts_cache_dir: Path = Field(Path("var/tts-cache"), validate_default=True)
    inband_dtmf: bool | None = Field(None, description="listen for DTMF tones in the audio: always (true), "
                                     "never (false), or only on legs without RFC 4733 events (default)")
    rtp_timeout: float = Field(30.0, gt=0, description="seconds without RTP before a call is ended")

    @field_validator("recordings_dir", "prompts_dir", "tts_cache_dir", mode="before")
    @classmethod
    def _paths(cls, v: Any, info: ValidationInfo) -> Any:
        return _resolve(v, info)

    @field_validator("address")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise PydanticCustomError("ip", "media.address must be an IP address, got '{v}'",
                                      {"v": v, "hint": "the address RTP is sent to, e.g. 127.0.0.1"}) from None
        return v


class ApiToken(_Strict):
    """A bearer token for the HTTP API and its role (agent tokens name their agent)."""

    token: str
    role: Literal["agent", "supervisor", "admin"]
    agent: str | None = None


class FeatureCodes(_Strict):
    """Codes agents and supervisors dial from their phones (the supervisor codes take the agent's
    extension after them, e.g. *31 2001 to listen to agent 2001's call)."""

    agent_login: str = Field("*21", pattern=r"^[*#0-9]{2,8}$")
    agent_logout: str = Field("*22", pattern=r"^[*#0-9]{2,8}$")
    agent_pause: str = Field("*23", pattern=r"^[*#0-9]{2,8}$")
    agent_ready: str = Field("*24", pattern=r"^[*#0-9]{2,8}$")
    listen: str = Field("*31", pattern=r"^[*#0-9]{2,8}$")
    whisper: str = Field("*32", pattern=r"^[*#0-9]{2,8}$")
    barge: str = Field("*33", pattern=r"^[*#0-9]{2,8}$")
    pickup: str = Field("*8", pattern=r"^[*#0-9]{2,8}$",
                        description="dial this code + an extension to answer a call ringing there")
    park: str = Field("*70", pattern=r"^[*#0-9]{2,8}$",
                      description="transfer a call to this code + a slot (e.g. *701) to park it there")
    retrieve: str = Field("*71", pattern=r"^[*#0-9]{2,8}$",
                          description="dial this code + the slot (e.g. *711) from any phone to take a parked call")

    @model_validator(mode="after")
    def _distinct(self) -> FeatureCodes:
        codes = list(self.model_dump().values())
        for a in codes:
            for b in codes:
                if a != b and b.startswith(a):
                    raise PydanticCustomError("feature_codes", "feature code {a} is a prefix of {b}",
                                              {"a": a, "b": b, "hint": "give every feature its own code"})
        if len(set(codes)) != len(codes):
            raise PydanticCustomError("feature_codes", "two features share a code",
                                      {"hint": "give every feature its own code"})
        return self


class ApiSettings(_Strict):
    """The REST/WebSocket API listener and its tokens."""

    listen: str = "127.0.0.1:8080"
    tokens: list[ApiToken] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _addr(cls, v: str) -> str:
        _split_host_port(v, None)
        return v

    @property
    def host(self) -> str:
        """Host part of `listen`."""
        return _split_host_port(self.listen, None)[0]

    @property
    def port(self) -> int:
        """Port part of `listen`."""
        return _split_host_port(self.listen, None)[1]


class QueueMembership(_Strict):
    """An agent's place in a queue: lower tiers are offered calls first; penalty breaks ties."""

    queue: str
    tier: int = Field(1, ge=1)
    penalty: int = Field(0, ge=0)


class AgentProfile(_Strict):
    """What makes a user an ACD agent: skills with proficiency 1..10, queues, wrap-up override."""

    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    queues: list[Annotated[QueueMembership, BeforeValidator(
        lambda v: {"queue": v} if isinstance(v, str) else v, json_schema_input_type=str | QueueMembership)]] = Field(
        default_factory=list)
    wrap_up: float | None = Field(None, ge=0)


class Forwarding(_Strict):
    """Where a user's calls go instead: a user id or an outside number (an agent's mobile)."""

    always: str | None = Field(None, description="forward every call, without ringing the user")
    busy: str | None = Field(None, description="forward when the user's phones answer busy")
    no_answer: str | None = Field(None, description="forward when nobody answers in `no_answer_after`")
    no_answer_after: float = Field(20.0, gt=0, le=300)


class User(_Strict):
    """A SIP user (a phone, a softphone, an agent)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    password: SecretStr | None = None
    ha1_md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    ha1_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    display_name: str = ""
    agent: AgentProfile | None = None
    forward: Forwarding | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _credential(self) -> User:
        if self.password is None and self.ha1_md5 is None and self.ha1_sha256 is None:
            raise PydanticCustomError("credential", "user {id} has no credential",
                                      {"id": self.id, "hint": "give password, ha1_md5 or ha1_sha256"})
        return self


class Directory(_Strict):
    """The users of this node."""

    users: list[User] = Field(default_factory=list)


with warnings.catch_warnings():
    # `register` is the natural YAML key; it shadows ABCMeta.register on the class only, harmlessly
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Trunk(_Strict):
        """A carrier or partner connection: inbound from `addresses`, outbound for numbers with `prefixes`."""

        name: str = Field(pattern=_NAME)
        host: str
        port: int = Field(5060, ge=1, le=65535)
        transport: Literal["udp", "tcp", "tls"] = "udp"
        addresses: list[IPv4Network | IPv6Network] = Field(default_factory=list)
        username: str | None = None
        password: SecretStr | None = None
        register: bool = False
        register_expires: int = Field(600, ge=60)
        prefixes: list[str] = Field(default_factory=list)
        caller_id: str | None = None
        dids: list[str] = Field(default_factory=list)
        max_channels: int | None = Field(None, ge=1)

        @model_validator(mode="after")
        def _register_needs_login(self) -> Trunk:
            if self.register and not (self.username and self.password):
                raise PydanticCustomError("trunk", "register: true needs username and password", {})
            return self


class OverflowTarget(_Strict):
    """Where an escalation sends callers: another queue, a number (via a trunk) or a voicemail box."""

    queue: str | None = None
    number: str | None = None
    trunk: str | None = None
    voicemail: str | None = None

    @model_validator(mode="after")
    def _one(self) -> OverflowTarget:
        if sum(x is not None for x in (self.queue, self.number, self.voicemail)) != 1:
            raise PydanticCustomError("overflow", "overflow needs exactly one of queue, number or voicemail",
                                      {"hint": "overflow: {number: '0312345678', trunk: outsource}"})
        return self


class EscalationStep(_Strict):
    """After `after` seconds of waiting: relax the minimum proficiency, widen to queues, or overflow."""

    after: float = Field(ge=0)
    relax_proficiency: int | None = Field(None, ge=0, le=10)
    add_queues: list[str] = Field(default_factory=list)
    overflow: OverflowTarget | None = None


class QueueSettings(_Strict):
    """An ACD queue."""

    name: str = Field(pattern=_NAME)
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(
        default_factory=dict, description="skill -> minimum proficiency")
    strategy: Literal["longest_idle", "fewest_calls", "least_talk_time", "round_robin", "ring_all",
                      "best_skill", "random", "weighted"] = "longest_idle"
    weights: dict[str, float] = Field(default_factory=dict)
    priority: int = 0
    max_wait: float | None = Field(None, gt=0)
    max_size: int | None = Field(None, ge=1)
    wrap_up: float = Field(10, ge=0)
    service_level_seconds: float = Field(20, gt=0)
    announce_every: float | None = Field(60, gt=0)
    ring_timeout: float = Field(15, gt=0)
    max_no_answer: int = Field(3, ge=1)
    affinity: bool = True
    affinity_wait: float = Field(0, ge=0)
    escalation: list[EscalationStep] = Field(default_factory=list)
    moh: str | None = None
    callback_key: str | None = Field(None, pattern=r"^[0-9*#]$",
                                     description="a key a waiting caller presses to be called back, keeping the place")


class NodeConfig(_Strict):
    """The whole node config."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    sip: SipSettings = Field(default_factory=SipSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    media: MediaSettings = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    database: str = Field("sqlite:///var/softswitch.db", validate_default=True)
    api: ApiSettings = Field(default_factory=ApiSettings)
    features: FeatureCodes = Field(default_factory=FeatureCodes)
    directory: Directory = Field(default_factory=Directory)
    trunks: list[Trunk] = Field(default_factory=list)
    queues: list[QueueSettings] = Field(default_factory=list)
    dialplan: Path | None = None

    _plan: Dialplan | None = PrivateAttr(None)
    _users: dict[str, User] = PrivateAttr(default_factory=dict)
    _path: Path | None = PrivateAttr(None)

    @field_validator("dialplan", mode="before")
    @classmethod
    def _dialplan_path(cls, v: Any, info: ValidationInfo) -> Any:
        return _resolve(v, info)

    @field_validator("database", mode="before")
    @classmethod
    def _db(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, str):
            return v
        if v.startswith(("postgresql://", "postgres://")):
            return v
        if not v.startswith("sqlite:///"):
            raise PydanticCustomError("database", "unsupported database URL '{v}'",
                                      {"v": v, "hint": "sqlite:///var/softswitch.db or postgresql://user@host/db"})
        rest = v[len("sqlite:///"):]
        base = (info.context or {}).get("base_dir")
        if rest and rest != ":memory:" and not Path(rest).is_absolute() and base is not None:
            rest = str(Path(base) / rest)
        return "sqlite:///" + rest

    def model_post_init(self, __context: Any) -> None:
        """Index users by id once."""
        self._users = {u.id: u for u in self.directory.users}

    @property
    def users_by_id(self) -> dict[str, User]:
        """Users keyed by id."""
        return self._users

    @property
    def queues_by_name(self) -> dict[str, QueueSettings]:
        """Queues keyed by name."""
        return {q.name: q for q in self.queues}

    @property
    def trunks_by_name(self) -> dict[str, Trunk]:
        """Trunks keyed by name."""
        return {t.name: t for t in self.trunks}

    @property
    def plan(self) -> Dialplan | None:
        """The validated dialplan loaded with this config (None when the config names none)."""
        return self._plan

    @property
    def path(self) -> Path | None:
        """The config file this was loaded from (None for built configs such as the demo)."""
        return self._path

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file of `database`, or None for PostgreSQL and in-memory databases."""
        if not self.database.startswith("sqlite:///"):
            return None
        rest = self.database[len("sqlite:///"):]
        return None if rest in ("", ":memory:") else Path(rest)

    def references(self) -> References:
        """What dialplans for this node may refer to."""
        return References(users=set(self._users), queues={q.name for q in self.queues},
                          trunks={t.name for t in self.trunks}, prompts_dir=self.media.prompts_dir)


def _cross_check(cfg: NodeConfig, located: Located) -> list[str]:
    errors: list[str] = []

    def err(path: tuple[str | int, ...], message: str, hint: str | None = None) -> None:
        errors.append(format_error(located.filename, located.position(path), path, message, hint))

    def dupes(items: list[str], path: tuple[str | int, ...], field: str, what: str) -> None:
        seen: set[str] = set()
        for i, name in enumerate(items):
            if name in seen:
                err((*path, i, field), f"duplicate {what} {name!r}")
            seen.add(name)

    dupes([u.id for u in cfg.directory.users], ("directory", "users"), "id", "user id")
    dupes([q.name for q in cfg.queues], ("queues",), "name", "queue name")
    dupes([t.name for t in cfg.trunks], ("trunks",), "name", "trunk name")
    queues = {q.name for q in cfg.queues}
    trunks = {t.name for t in cfg.trunks}

    def queue_ref(path: tuple[str | int, ...], name: str) -> None:
        if name not in queues:
            err(path, f"unknown queue {name!r}", did_you_mean(name, queues) or
                ("known queues: " + ", ".join(sorted(queues)) if queues else "define it under queues:"))

    for i, u in enumerate(cfg.directory.users):
        if u.agent is not None:
            for j, m in enumerate(u.agent.queues):
                queue_ref(("directory", "users", i, "agent", "queues", j, "queue"), m.queue)
    for i, q in enumerate(cfg.queues):
        for j, step in enumerate(q.escalation):
            for k, name in enumerate(step.add_queues):
                queue_ref(("queues", i, "escalation", j, "add_queues", k), name)
            o = step.overflow
            if o is not None:
                base = ("queues", i, "escalation", j, "overflow")
                if o.queue is not None:
                    queue_ref((*base, "queue"), o.queue)
                if o.trunk is not None and o.trunk not in trunks:
                    err((*base, "trunk"), f"unknown trunk {o.trunk!r}", did_you_mean(o.trunk, trunks))
                if o.voicemail is not None and o.voicemail not in cfg.users_by_id:
                    err((*base, "voicemail"), f"unknown user {o.voicemail!r}", did_you_mean(o.voicemail,
                                                                                             cfg.users_by_id))
    for i, tok in enumerate(cfg.api.tokens):
        if tok.agent is not None and tok.agent not in cfg.users_by_id:
            err(("api", "tokens", i, "agent"), f"unknown user {tok.agent!r}",
                did_you_mean(tok.agent, cfg.users_by_id))
    if cfg.dialplan is not None and not cfg.dialplan.is_file():
        err(("dialplan",), f"dialplan file {cfg.dialplan} not found",
            "paths are relative to the config file's folder")
    return errors


def _validate(located: Located, base_dir: Path) -> NodeConfig:
    data = located.data if located.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([format_error(located.filename, located.position(()), (), "a config is a mapping",
                                        "start with keys such as sip:, directory:, dialplan:")])
    try:
        cfg = NodeConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc, located, NodeConfig)) from None
    errors = _cross_check(cfg, located)
    if not errors and cfg.dialplan is not None:
        try:
            cfg._plan = parse_dialplan(load_yaml_file(cfg.dialplan), cfg.references())
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def load_config(path: str | Path) -> NodeConfig:
    """Load, validate and cross-check a node config and its dialplan; raises ConfigError."""
    p = Path(path)
    located = load_yaml_file(p)
    cfg = _validate(located, p.resolve().parent)
    cfg._path = p
    return cfg


def examples_dir() -> Path:
    """The folder of example dialplans in a source checkout."""
    return Path(__file__).resolve().parent.parent / "dialplans"


def demo_config(base_dir: Path) -> NodeConfig:
    """The demo node: 127.0.0.1:5060 (udp+tcp), users 1001..1004 (1003/1004 agents), the office dialplan."""
    base_dir = Path(base_dir)
    office = examples_dir() / "office.yaml"

    def user(uid: str, name: str, agent: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": uid, "password": f"secret{uid}", "display_name": name, "agent": agent}

    data: dict[str, Any] = {
        "sip": {"listen": ["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"], "domain": "demo.local"},
        "media": {"address": "127.0.0.1", "rtp_ports": "20000-20999",
                  "recordings_dir": str(base_dir / "recordings"), "tts_cache_dir": str(base_dir / "tts-cache"),
                  "prompts_dir": str(examples_dir() / "prompts")},
        "database": f"sqlite:///{base_dir / 'softswitch.db'}",
        # Demo tokens, printed in the README: never reuse them on a real node.
        "api": {"listen": "127.0.0.1:8080", "tokens": [
            {"token": "demo-admin-token", "role": "admin"},
            {"token": "demo-supervisor-token", "role": "supervisor"},
            {"token": "demo-agent-1003-token", "role": "agent", "agent": "1003"},
        ]},
        "directory": {"users": [
            user("1001", "Reception"), user("1002", "Sales"),
            user("1003", "Agent Sato", {"skills": {"japanese": 8, "support": 6}, "queues": ["support"]}),
            user("1004", "Agent Suzuki", {"skills": {"japanese": 6, "english": 7, "support": 8},
                                          "queues": ["support"]}),
        ]},
        "trunks": [{"name": "carrier", "host": "127.0.0.1", "port": 5080, "prefixes": ["0"]}],
        "queues": [{"name": "support", "skills": {"support": 1}, "wrap_up": 5}],
        "dialplan": str(office) if office.is_file() else None,
    }
    return _validate(Located(data=data, filename="<demo config>"), base_dir)


def _summary(cfg: NodeConfig) -> str:
    parts = [f"{len(cfg.directory.users)} users", f"{len(cfg.queues)} queues", f"{len(cfg.trunks)} trunks",
             "listen " + ", ".join(str(x) for x in cfg.sip.listen)]
    if cfg.plan is not None:
        routes = sum(len(c.routes) for c in cfg.plan.contexts.values())
        parts.append(f"dialplan {cfg.dialplan} ({len(cfg.plan.contexts)} contexts, {routes} routes)")
    return ", ".join(parts)


def check_main(file: str) -> int:
    """`softswitch check FILE`: validate a node config (with its dialplan) or a lone dialplan."""
    try:
        located = load_yaml_file(file)
        if isinstance(located.data, dict) and "contexts" in located.data:
            plan = parse_dialplan(located)  # a lone dialplan: names from a node config are not checked
            routes = sum(len(c.routes) for c in plan.contexts.values())
            print(f"OK {file}: dialplan with {len(plan.contexts)} contexts, {routes} routes "
                  "(users, queues, trunks and prompts are checked when a node config names it)")
            return 0
        cfg = _validate(located, Path(file).resolve().parent)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in {file}", file=sys.stderr)
        return 1
    print(f"OK {file}: {_summary(cfg)}")
    return 0


def schema_main(kind: str, output: str | None) -> int:
    """`softswitch schema`: write the JSON Schema of a node config or a dialplan."""
    models: dict[str, type[BaseModel]] = {"config": NodeConfig, "dialplan": Dialplan}
    if kind not in models:
        print(f"unknown schema kind {kind!r}: config or dialplan", file=sys.stderr)
        return 2
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **models[kind].model_json_schema(mode="validation")}
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
