"""The bridge towards its homes is an OpenADR 3.1 VTN: every endpoint it serves that the
specification defines, in success and in the errors it answers, checked request and response
against openadr3-3.1.0.yaml (skipped where the specification is absent), so that an OpenADR 3.1
client can talk to it as to any VTN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient
import pytest
from yarl import URL

from smart_community_bridge.state import INTAKE
from smart_community_protocol import Signer, format_datetime
from tests.openadr_conformance import SPEC, Conformance, load_spec

from .conftest import COMMUNITY, auth, event, signed

PV = {
    "objectType": "VEN_RESOURCE_REQUEST",
    "venID": "a",
    "resourceName": "roof",
    "attributes": [
        {"type": "MAX_POWER_EXPORT", "values": [5]},
        {"type": "X_INVERTER", "values": ["Acme", "PV-5000", "SN123"]},
    ],
}


@dataclass
class Answer:
    """What the bridge answered."""

    status: int
    headers: dict[str, str]
    raw: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.raw)


@pytest.fixture(name="spec", scope="module")
def spec_fixture() -> dict[str, Any]:
    if (document := load_spec()) is None:
        pytest.skip(f"OpenADR 3.1 specification not found at {SPEC}")
    return document


class Home:
    """Calls the bridge as one of its homes, each call checked against the specification."""

    def __init__(self, bridge: TestClient[Any, Any], conformance: Conformance, credential: str):
        self.bridge = bridge
        self.conformance = conformance
        self.credential = credential

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: list[tuple[str, str]] | None = None,
        anonymous: bool = False,
    ) -> Answer:
        headers = {} if anonymous else auth(self.credential)
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.bridge.request(
            method, path, params=params, data=data, headers=headers
        ) as response:
            answer = Answer(
                response.status,
                dict(response.headers),
                await response.read(),
                response.content_type,
            )
        url = URL(self.conformance.base_url + path).with_query(params or [])
        self.conformance.observe(
            method, str(url), headers, data, "application/json" if data else None, answer
        )
        return answer

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        answer = await self.call(method, path, **kwargs)
        assert answer.status == status, answer.raw
        return answer.json()


def _program() -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC))
    return {
        "id": "dr",
        "objectType": "PROGRAM",
        "createdDateTime": now,
        "modificationDateTime": now,
        "programName": "demand response",
        "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "SIMPLE"}],
        "targets": [f"community:{COMMUNITY}"],
    }


def _telemetry() -> dict[str, Any]:
    return {
        "eventID": "X_TELEMETRY",
        "clientName": "a",
        "reportName": "telemetry",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DEMAND", "units": "KW"}
        ],
        "resources": [
            {
                "resourceName": "a",
                "intervalPeriod": {
                    "start": format_datetime(datetime.fromtimestamp(time.time() - 300, UTC)),
                    "duration": "PT5M",
                },
                "intervals": [{"id": 0, "payloads": [{"type": "DEMAND", "values": [1.5]}]}],
            }
        ],
    }


async def test_the_downstream_vtn_conforms(
    bridge: TestClient[Any, Any],
    credentials: dict[str, str],
    signer: Signer,
    spec: dict[str, Any],
) -> None:
    conformance = Conformance(spec, f"http://{bridge.host}:{bridge.port}")
    home = Home(bridge, conformance, credentials["a"])
    intake = bridge.app[INTAKE]
    assert await intake.accept(signed(signer, _program())) is not None
    assert await intake.accept(signed(signer, event("peak"))) is not None

    # Programs and events, as the grid signed them (the signature rides along as X_signature).
    programs = await home.ok("GET", "/programs")
    assert [p["id"] for p in programs] == ["dr"]
    events = await home.ok("GET", "/events")
    assert [e["id"] for e in events] == ["peak"]
    assert [e["id"] for e in await home.ok("GET", "/events", params=[("active", "true")])] == [
        "peak"
    ]
    assert (await home.call("GET", "/events", anonymous=True)).status == 401
    assert (await home.call("GET", "/programs", anonymous=True)).status == 401

    # Reports: stored and echoed as the specification's report; a bad one refused with a problem.
    stored = await home.ok("POST", "/reports", 201, body=_telemetry())
    assert stored["objectType"] == "REPORT"
    with conformance.invalid_requests():
        refused = await home.call("POST", "/reports", body={"eventID": "X_TELEMETRY"})
    assert refused.status == 400
    assert refused.json()["status"] == 400  # a problem body, as the specification's

    # The home's own VEN and resources (a PV grid connection request).
    (ven,) = await home.ok("GET", "/vens")
    assert ven["id"] == "a"
    resource = await home.ok("POST", "/resources", 201, body=PV)
    assert [r["id"] for r in await home.ok("GET", "/resources")] == [resource["id"]]
    assert (await home.ok("GET", f"/resources/{resource['id']}"))["resourceName"] == "roof"
    assert (await home.call("GET", "/resources/nobody")).status == 404
    await home.ok("DELETE", f"/resources/{resource['id']}")
    assert (await home.call("DELETE", f"/resources/{resource['id']}")).status == 404

    assert conformance.errors == []
    # What the push channel carries is the specification's notification.
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    assert (await ws.receive_json())["type"] == "welcome"
    frames = [await ws.receive_json() for _ in range(2)]  # the replay: the program, the event
    await ws.close()
    assert [f["notification"]["object"]["id"] for f in frames] == ["dr", "peak"]
    for frame in frames:
        errors = [e.message for e in conformance.notification.iter_errors(frame["notification"])]
        assert errors == []

    served = {
        (route.method, route.resource.canonical)
        for route in bridge.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    in_spec = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    covered = {(method, template) for method, template, _ in conformance.checked}
    assert served & in_spec == covered
