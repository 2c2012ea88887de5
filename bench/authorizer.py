"""The authorizer's warm decision time: one process, the handler warmed up, then N decisions.

The decisions mix what API Gateway sends it: allowed tokens, tokens that lack the route's resource
or site (403), revoked and forged tokens (401). Each is a call of the handler with its REQUEST
event, timed inside the process; the revocation lookup goes to DynamoDB (moto, over HTTP on
127.0.0.1), the public key is fetched once and cached, as in Lambda.
"""

from __future__ import annotations

from pathlib import Path

from bench.cold_start import SAMPLE_SITE_NAME, spawn
from bench.local_aws import LocalAws, Request
from bench.report import machine, median, percentile, table

NAME = "authorizer"
COMMAND = "python -m bench authorizer"
DECISIONS = 300
WARMUP_ROUNDS = 5
OTHER_SITE = "bench-elsewhere"


def mix(aws: LocalAws) -> list[tuple[str, Request, int, int]]:
    """(what, event, expected status, how many of the decisions) for each kind of request."""
    site = SAMPLE_SITE_NAME
    admin = aws.mint("bench-admin", ["*"], ["*"])
    meter = aws.mint("bench-meter", ["sensors", "ingest"], [site])
    revoked = aws.mint("bench-revoked", ["sensors"], [site])
    status, reply = aws.call("POST", "/api/v1/tokens/revoke", admin, {"token": revoked})
    if status != 200:
        raise RuntimeError(f"could not revoke the bench token: {status} {reply}")
    head, payload, signature = meter.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    return [
        ("allowed: admin token, GET /api/v1/sites", aws.authorizer_request("GET", "/api/v1/sites", admin), 200, 90),
        ("allowed: site token, GET /api/v1/sensors?site=", aws.authorizer_request(
            "GET", "/api/v1/sensors", meter, f"site={site}"), 200, 90),
        ("403: token lacks the resource (GET /api/v1/tokens)", aws.authorizer_request(
            "GET", "/api/v1/tokens", meter), 403, 30),
        ("403: token lacks the site", aws.authorizer_request(
            "GET", "/api/v1/sensors", meter, f"site={OTHER_SITE}"), 403, 30),
        ("401: revoked token", aws.authorizer_request("GET", "/api/v1/sensors", revoked), 401, 30),
        ("401: forged signature", aws.authorizer_request("GET", "/api/v1/sensors", forged), 401, 30),
    ]  # fmt: skip


def run(aws: LocalAws, scratch: Path, samples: int | None = None) -> str:
    decisions = samples or DECISIONS
    kinds = mix(aws)
    weights = [count for *_rest, count in kinds]
    # Interleave the kinds in proportion (a fixed order, so every run sends the same sequence).
    order: list[int] = []
    credit = [0.0] * len(kinds)
    for _ in range(decisions):
        credit = [c + w / sum(weights) for c, w in zip(credit, weights, strict=True)]
        pick = max(range(len(kinds)), key=lambda i: credit[i])
        credit[pick] -= 1
        order.append(pick)
    spec = {
        **aws.function_spec("AuthorizerFunction"), "mode": "warm", "warmup_rounds": WARMUP_ROUNDS,
        "events": [request.event for _what, request, _status, _count in kinds], "order": order,
    }  # fmt: skip
    _wall, out = spawn(spec, aws.function_env("AuthorizerFunction"), scratch)
    by_kind: dict[int, list[float]] = {i: [] for i in range(len(kinds))}
    for index, status, elapsed_ms in out["timings"]:
        if status != kinds[index][2]:
            raise RuntimeError(f"{kinds[index][0]}: answered {status}, expected {kinds[index][2]}")
        by_kind[index].append(elapsed_ms)
    every = [ms for _i, _s, ms in out["timings"]]
    rows = [
        [
            what,
            str(status),
            str(len(by_kind[i])),
            f"{median(by_kind[i]):.2f}",
            f"{percentile(by_kind[i], 99):.2f}",
        ]
        for i, (what, _request, status, _count) in enumerate(kinds)
    ]
    rows.append(
        [
            "**all decisions**",
            "",
            str(len(every)),
            f"**{median(every):.2f}**",
            f"**{percentile(every, 99):.2f}**",
        ]
    )
    return f"""## Authorizer, warm (`{NAME}`)

**Command:** `{COMMAND}` (`--samples N` to change the {DECISIONS} decisions)

{machine()}

**What:** one process (`python -I bench/sample.py`, the authorizer's environment from the template,
`AWS_ENDPOINT_URL` of a moto server on 127.0.0.1) imports the authorizer's handler, calls it
{WARMUP_ROUNDS} times with each kind of request (warm-up: the signing key's public half is fetched
and cached, connections open), then times {len(every)} calls of the handler, the kinds interleaved
in the proportions below, each a REQUEST payload 2.0 event built by the local cloud's API Gateway
code. Every answer is checked (200, 403, or the 401 "Unauthorized" error). Each allowed or 403
decision, and the revoked one, makes one DynamoDB GetItem (the revocation check) to moto over HTTP:
that round trip, not the authorizer's own work, is most of the time, and moto is slower than
DynamoDB. A forged signature is refused before any call. p50 = median, p99 nearest rank.

{table(["request", "status", "decisions", "p50 ms", "p99 ms"], rows)}
"""  # fmt: skip
