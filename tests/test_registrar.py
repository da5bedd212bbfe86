"""The location service with a fake clock: RFC 3261 section 10.3 rule by rule."""

from __future__ import annotations

from softswitch.events import RegistrationChanged
from softswitch.registrar import Registrar
from softswitch.sip.message import Request, parse_message
from softswitch.sip.transaction import Addr

DOMAIN = "example.jp"
SRC = Addr("udp", "192.0.2.10", 5060)


def register(
    user: str = "1001",
    *,
    contacts: list[str] | None = None,
    expires: int | None = 3600,
    call_id: str = "reg-1",
    cseq: int = 1,
    to_user: str | None = None,
) -> Request:
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1",
        f"From: <sip:{user}@{DOMAIN}>;tag=f1",
        f"To: <sip:{to_user or user}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
    ]
    for c in contacts if contacts is not None else [f"<sip:{user}@192.0.2.10:5060>"]:
        lines.append(f"Contact: {c}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines.append("Content-Length: 0")
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def make(events: list | None = None, **kw) -> Registrar:
    sink = events if events is not None else []
    return Registrar(DOMAIN, min_expires=60, max_expires=7200, default_expires=3600, publish=sink.append, **kw)


def test_register_binds_contact_and_answers_200_with_its_expiry():
    events: list = []
    reg = make(events)
    resp = reg.handle_register(register(), SRC, "1001", now=1000.0)
    assert resp.status == 200
    assert resp.headers.get_all("Contact") == ["<sip:1001@192.0.2.10:5060>;expires=3600"]
    assert resp.to.tag
    (b,) = reg.lookup("1001", 1000.0)
    assert b.expires_at == 4600.0 and b.source == SRC and not b.behind_nat
    assert isinstance(events[0], RegistrationChanged) and events[0].action == "bound"


def test_contact_expires_parameter_overrides_the_expires_header():
    reg = make()
    reg.handle_register(register(contacts=["<sip:1001@192.0.2.10:5060>;expires=120"], expires=3600), SRC, "1001", 0.0)
    assert reg.lookup("1001", 0.0)[0].expires_at == 120.0


def test_missing_expires_uses_the_default_and_long_ones_are_clamped():
    reg = make()
    reg.handle_register(register(expires=None), SRC, "1001", 0.0)
    assert reg.lookup("1001", 0.0)[0].expires_at == 3600.0
    reg.handle_register(register(expires=999999, cseq=2), SRC, "1001", 0.0)
    assert reg.lookup("1001", 0.0)[0].expires_at == 7200.0


def test_interval_below_min_expires_gets_423_with_min_expires_and_binds_nothing():
    reg = make()
    resp = reg.handle_register(register(expires=30), SRC, "1001", 0.0)
    assert resp.status == 423 and resp.headers.get("Min-Expires") == "60"
    assert reg.lookup("1001", 0.0) == []


def test_several_contacts_per_address_of_record():
    reg = make()
    contacts = ["<sip:1001@192.0.2.10:5060>", "<sip:1001@192.0.2.11:5062>;q=0.5"]
    resp = reg.handle_register(register(contacts=contacts), SRC, "1001", 0.0)
    assert len(resp.headers.get_all("Contact")) == 2
    found = reg.lookup("1001", 0.0)
    assert [b.contact for b in found] == ["sip:1001@192.0.2.10:5060", "sip:1001@192.0.2.11:5062"]


def test_refresh_with_higher_cseq_extends_and_out_of_order_cseq_is_refused():
    reg = make()
    reg.handle_register(register(cseq=5), SRC, "1001", 0.0)
    assert reg.handle_register(register(cseq=6, expires=600), SRC, "1001", 100.0).status == 200
    assert reg.lookup("1001", 100.0)[0].expires_at == 700.0
    assert reg.handle_register(register(cseq=4, expires=60), SRC, "1001", 100.0).status == 400
    assert reg.lookup("1001", 100.0)[0].expires_at == 700.0


def test_expires_zero_removes_one_contact():
    reg = make()
    reg.handle_register(register(), SRC, "1001", 0.0)
    resp = reg.handle_register(register(expires=0, cseq=2), SRC, "1001", 1.0)
    assert resp.status == 200 and resp.headers.get_all("Contact") == []
    assert reg.lookup("1001", 1.0) == []


def test_wildcard_unregisters_everything_but_only_with_expires_zero():
    reg = make()
    reg.handle_register(register(contacts=["<sip:1001@192.0.2.10>", "<sip:1001@192.0.2.11>"]), SRC, "1001", 0.0)
    assert reg.handle_register(register(contacts=["*"], expires=3600, cseq=2), SRC, "1001", 1.0).status == 400
    assert len(reg.lookup("1001", 1.0)) == 2
    assert reg.handle_register(register(contacts=["*"], expires=0, cseq=3), SRC, "1001", 1.0).status == 200
    assert reg.lookup("1001", 1.0) == []


def test_query_without_contact_lists_bindings_and_changes_nothing():
    reg = make()
    reg.handle_register(register(), SRC, "1001", 0.0)
    resp = reg.handle_register(register(contacts=[], cseq=2), SRC, "1001", 10.0)
    assert resp.status == 200
    assert resp.headers.get_all("Contact") == ["<sip:1001@192.0.2.10:5060>;expires=3590"]


def test_registering_someone_elses_address_is_forbidden():
    reg = make()
    resp = reg.handle_register(register(to_user="1002"), SRC, "1001", 0.0)
    assert resp.status == 403
    assert reg.lookup("1002", 0.0) == []


def test_contact_behind_nat_is_reached_at_the_source_address():
    reg = make()
    nat_source = Addr("udp", "203.0.113.7", 40123)
    reg.handle_register(register(contacts=["<sip:1001@192.168.1.20:5060>"]), nat_source, "1001", 0.0)
    (b,) = reg.lookup("1001", 0.0)
    assert b.behind_nat and b.target() == nat_source
    assert b.contact == "sip:1001@192.168.1.20:5060"


def test_contact_reachable_directly_is_reached_at_its_uri():
    reg = make()
    reg.handle_register(register(contacts=["<sip:1001@192.0.2.10:5070;transport=udp>"]),
                        Addr("udp", "192.0.2.10", 5070), "1001", 0.0)
    assert reg.lookup("1001", 0.0)[0].target() == Addr("udp", "192.0.2.10", 5070)


def test_bindings_expire_on_time_and_publish_an_event():
    events: list = []
    reg = make(events)
    reg.handle_register(register(expires=60), SRC, "1001", 0.0)
    assert reg.next_deadline() == 60.0
    assert reg.expire(59.0) == 0 and reg.lookup("1001", 59.0)
    assert reg.expire(60.0) == 1
    assert reg.lookup("1001", 60.0) == [] and reg.count(60.0) == 0
    assert events[-1].action == "expired"


def test_a_refreshed_binding_does_not_expire_at_its_old_deadline():
    reg = make()
    reg.handle_register(register(expires=60), SRC, "1001", 0.0)
    reg.handle_register(register(expires=120, cseq=2), SRC, "1001", 30.0)
    assert reg.expire(60.0) == 0
    assert reg.lookup("1001", 60.0)[0].expires_at == 150.0
    assert reg.expire(150.0) == 1


def test_bad_expires_value_is_refused():
    reg = make()
    assert reg.handle_register(register(contacts=["<sip:1001@192.0.2.10>;expires=abc"]), SRC, "1001", 0.0).status == 400
