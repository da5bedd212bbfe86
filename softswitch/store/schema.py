"""Versioned schema migrations, shared by PostgreSQL and SQLite.

Each migration is a list of statements written in the SQL both engines accept (TEXT, BIGINT,
DOUBLE PRECISION, BOOLEAN, partial indexes). A migration is applied in one transaction together with
its row in `schema_migrations`, so a node never runs on a half-applied version. Add new versions at
the end; never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: statements applied in order inside one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""

_V1 = (
    # One row per call; id is the CDR event's id, the idempotency key of replays.
    """CREATE TABLE cdrs (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        call_uuid TEXT NOT NULL,
        caller TEXT NOT NULL,
        callee TEXT NOT NULL,
        start_ts DOUBLE PRECISION NOT NULL,
        answer_ts DOUBLE PRECISION,
        end_ts DOUBLE PRECISION NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        billable BIGINT NOT NULL,
        disposition TEXT NOT NULL,
        hangup_cause TEXT NOT NULL,
        hangup_side TEXT NOT NULL,
        trunk TEXT NOT NULL DEFAULT '',
        did TEXT NOT NULL DEFAULT '',
        queue TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL DEFAULT '',
        customer_id TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX cdrs_caller_start ON cdrs (caller, start_ts)",
    "CREATE INDEX cdrs_customer_start ON cdrs (customer_id, start_ts) WHERE customer_id <> ''",
    "CREATE INDEX cdrs_queue_answer ON cdrs (queue, answer_ts) WHERE queue <> ''",
    "CREATE INDEX cdrs_call_uuid ON cdrs (call_uuid)",
    """CREATE TABLE call_legs (
        cdr_id TEXT NOT NULL REFERENCES cdrs (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        call_uuid TEXT NOT NULL,
        call_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        peer TEXT NOT NULL,
        PRIMARY KEY (cdr_id, idx)
    )""",
    # Call progress events and any event kind without a table of its own, as JSON text.
    """CREATE TABLE event_log (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        call_uuid TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL
    )""",
    "CREATE INDEX event_log_call ON event_log (call_uuid, ts) WHERE call_uuid <> ''",
    # One row per ACD event, like a queue log.
    """CREATE TABLE queue_events (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        queue TEXT NOT NULL,
        call_uuid TEXT NOT NULL,
        event TEXT NOT NULL,
        agent TEXT NOT NULL DEFAULT '',
        caller TEXT NOT NULL DEFAULT '',
        wait DOUBLE PRECISION NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX queue_events_queue_ts ON queue_events (queue, ts)",
    "CREATE INDEX queue_events_call ON queue_events (call_uuid)",
    """CREATE TABLE agent_states (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        agent TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        previous TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX agent_states_agent_ts ON agent_states (agent, ts)",
    # Caller-to-agent affinity, kept up to date from answered CDRs that name an agent.
    """CREATE TABLE affinity (
        caller TEXT NOT NULL,
        agent TEXT NOT NULL,
        last_handled DOUBLE PRECISION NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (caller, agent)
    )""",
    # Registrar bindings; a removal keeps the row with expires_at = removal time so that an older
    # event replayed later cannot resurrect it (updates apply only when newer).
    """CREATE TABLE registrations (
        aor TEXT NOT NULL,
        contact TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT '',
        updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (aor, contact)
    )""",
    "CREATE INDEX registrations_expires ON registrations (expires_at)",
    """CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        call_uuid TEXT NOT NULL,
        path TEXT NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        sha256 TEXT NOT NULL,
        channels INTEGER NOT NULL
    )""",
    "CREATE INDEX recordings_call ON recordings (call_uuid)",
    """CREATE TABLE security_events (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL,
        username TEXT NOT NULL,
        method TEXT NOT NULL,
        banned BOOLEAN NOT NULL
    )""",
    "CREATE INDEX security_events_source_ts ON security_events (source, ts)",
    # Users and agents when they are managed through the API rather than the config file.
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL DEFAULT '',
        secret TEXT NOT NULL DEFAULT '',
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        updated DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        skills TEXT NOT NULL DEFAULT '{}',
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        updated DOUBLE PRECISION NOT NULL
    )""",
)

_V2 = (
    # Outbound campaigns. schedule and settings are JSON text (no JSON type both engines share).
    """CREATE TABLE campaigns (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        mode TEXT NOT NULL,
        queue TEXT NOT NULL,
        trunk TEXT NOT NULL DEFAULT '',
        caller_id TEXT NOT NULL DEFAULT '',
        schedule TEXT NOT NULL DEFAULT '{}',
        settings TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'draft',
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        owner TEXT NOT NULL DEFAULT '',
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
    # owner/lease_until: the node that dials the campaign holds a lease it renews, so that two
    # nodes sharing the database never dial one list at once.
    # A campaign's call list. seq keeps import order (neither engine's autoincrement syntax is
    # shared, so the store numbers rows per campaign); updated guards against stale writes.
    """CREATE TABLE campaign_records (
        campaign TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        number TEXT NOT NULL,
        customer_id TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        last_result TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL DEFAULT '',
        updated DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign, id)
    )""",
    "CREATE INDEX campaign_records_seq ON campaign_records (campaign, seq)",
    "CREATE INDEX campaign_records_state ON campaign_records (campaign, state, seq)",
    # One row per CampaignAttempt event; id is the event's id, the idempotency key of replays.
    # Kept when its campaign is deleted: it is the history of who was dialled, like the CDRs.
    """CREATE TABLE campaign_attempts (
        id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        campaign TEXT NOT NULL,
        record_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        number TEXT NOT NULL,
        result TEXT NOT NULL,
        customer_id TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL DEFAULT '',
        call_uuid TEXT NOT NULL DEFAULT '',
        started DOUBLE PRECISION NOT NULL DEFAULT 0,
        answered DOUBLE PRECISION,
        ended DOUBLE PRECISION
    )""",
    "CREATE INDEX campaign_attempts_record ON campaign_attempts (campaign, record_id, started)",
    "CREATE INDEX campaign_attempts_started ON campaign_attempts (campaign, started)",
    # The do-not-call list, shared by every campaign.
    """CREATE TABLE dnc (
        number TEXT PRIMARY KEY,
        reason TEXT NOT NULL DEFAULT '',
        added DOUBLE PRECISION NOT NULL
    )""",
    # Callbacks booked by an agent or through the IVR, offered when due.
    """CREATE TABLE scheduled_callbacks (
        id TEXT PRIMARY KEY,
        number TEXT NOT NULL,
        due DOUBLE PRECISION NOT NULL,
        queue TEXT NOT NULL,
        agent TEXT NOT NULL DEFAULT '',
        customer_id TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending',
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        call_uuid TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX scheduled_callbacks_state_due ON scheduled_callbacks (state, due)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1),
    Migration(2, "outbound campaigns, do-not-call list, scheduled callbacks", _V2),
)

LATEST = MIGRATIONS[-1].version
