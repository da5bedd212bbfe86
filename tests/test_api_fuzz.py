"""Invalid API input gets a 4xx with a JSON message, never a 500: seeded random bodies, paths and
headers against every endpoint of a running server."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from tests.test_api_common import api_node, auth

CASES = 400


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1.5, float("1e308")])
    if kind == 3:
        return rng.choice(["", "paused", "available", "offline", "listen", "barge", "support", "x" * 5000,
                           "山田", "\u0000", "../../etc/passwd", "<script>"])
    if kind == 4:
        return rng.choice(["reason", "state", "mode", "queue", "supervisor"])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["reason", "state", "mode", "queue", "supervisor", "extra", ""]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_segment(rng: random.Random) -> str:
    return rng.choice(["u0000", "u0001", "nobody", "%2F", "%00", "山田", "a" * 3000, "..", "call-1", " "])


async def test_random_bodies_paths_and_tokens_never_get_a_server_error(tmp_path):
    rng = random.Random(20261123)
    async with api_node(tmp_path) as (node, centre, api), httpx.AsyncClient(base_url=api.url) as http:
        centre.enqueue("call-1", "support", "0312345678")
        statuses: dict[int, int] = {}
        for _ in range(CASES):
            ep = rng.choice(api.endpoints)
            path = ep.path.replace("{agent}", random_segment(rng)).replace("{call_uuid}", random_segment(rng))
            headers = auth(rng.choice(["agent", "agent2", "supervisor", "admin"]))
            if rng.random() < 0.1:
                headers: dict[str, Any] = {"Authorization": rng.choice(["Bearer", "Bearer x y", "bearer tok-admin", "Token x", "Bearer \xe9".encode("latin-1")])}
            if rng.random() < 0.3:
                content = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            else:
                content = json.dumps(random_json(rng)).encode()
            method = ep.method if rng.random() < 0.9 else rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
            r = await http.request(method, path, content=content, headers=headers)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (method, path, content[:100], r.status_code, r.text[:300])
            if r.status_code >= 400:
                body = r.json()
                assert set(body) == {"error", "detail"} and body["error"], body
        assert any(s >= 400 for s in statuses) and any(s == 200 for s in statuses), statuses
        # The server is still serving, and the engine's invariants hold after all that.
        assert (await http.get("/api/me", headers=auth("admin"))).status_code == 200
        centre.engine.check_invariants()
