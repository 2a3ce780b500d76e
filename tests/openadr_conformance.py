"""The OpenADR 3.1 specification as a test oracle: requests and responses checked against
openadr3-3.1.0.yaml with openapi-core.

The specification is reference material outside the repository (../shared/openadr3); tests
that use it are skipped where it is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import copy
from pathlib import Path
import re
from typing import Any, Protocol
import warnings

from multidict import MultiDict
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import ImmutableMultiDict
import yaml
from yarl import URL

SPEC = Path(__file__).resolve().parents[2] / "shared" / "openadr3" / "openadr3-3.1.0.yaml"


class Answer(Protocol):
    """What a server answered, as far as the check needs it."""

    status: int
    headers: dict[str, str]
    raw: bytes
    content_type: str


def load_spec() -> dict[str, Any] | None:
    """The specification as a dict, with its known quirks repaired; None where it is absent."""
    if not SPEC.exists():
        return None
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    # A stray "-" after "default: null" makes that default the string "null          -".
    schemas = document["components"]["schemas"]
    schemas["BlVenRequest"]["properties"]["targets"]["default"] = None
    # Two discriminators name no mapping, so their values (objectType: EVENT_PAYLOAD_DESCRIPTOR,
    # EVENT ...) would have to be schema names, which they are not. Map them as intended.
    descriptors = schemas["programRequest"]["properties"]["payloadDescriptors"]["items"]
    descriptors["discriminator"]["mapping"] = {
        "EVENT_PAYLOAD_DESCRIPTOR": "#/components/schemas/eventPayloadDescriptor",
        "REPORT_PAYLOAD_DESCRIPTOR": "#/components/schemas/reportPayloadDescriptor",
    }
    # A ven (resource) is all of objectMetadata and BlVenRequest (BlResourceRequest), whose
    # objectType enums (VEN; BL_VEN_REQUEST) exclude each other: the metadata's is meant.
    for stored, request in (("ven", "BlVenRequest"), ("resource", "BlResourceRequest")):
        content = copy.deepcopy(schemas[request])
        del content["properties"]["objectType"]
        content["required"].remove("objectType")
        schemas[stored]["allOf"][1] = content
    # venName "is expected to be unique within the scope of a VTN": updateVen answers a clash
    # with 409 Conflict, createVen lists no such answer. The grid answers both alike.
    document["paths"]["/vens"]["post"]["responses"]["409"] = {
        "$ref": "#/components/responses/conflict"
    }
    notified = schemas["notification"]["properties"]["object"]
    notified["discriminator"]["mapping"] = {
        kind.upper(): f"#/components/schemas/{kind}"
        for kind in ("program", "report", "event", "subscription", "ven", "resource")
    }
    return dict(document)


class Conformance:
    """Checks every call a Grid makes against the specification."""

    def __init__(self, spec: dict[str, Any], base_url: str) -> None:
        """Validate against ``spec`` with its servers pointing at the grid under test."""
        document = copy.deepcopy(spec)
        # The file names SwaggerHub's mock server; requests here go to the test server.
        document["servers"] = [{"url": base_url}]
        self.api = OpenAPI.from_dict(document)
        self.base_url = base_url
        self.templates = {
            path: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for path in document["paths"]
        }
        self.checked: set[tuple[str, str, int]] = set()
        self.errors: list[str] = []
        self.outside: set[tuple[str, str]] = set()
        self._request_is_invalid = False
        self.notification = OAS30Validator(
            {"$ref": "#/components/schemas/notification", "components": document["components"]}
        )

    @contextlib.contextmanager
    def invalid_requests(self) -> Iterator[None]:
        """Calls that break the specification on purpose: only their responses are checked."""
        self._request_is_invalid = True
        try:
            yield
        finally:
            self._request_is_invalid = False

    def template(self, path: str) -> str | None:
        """The specification's path template that matches ``path``."""
        return next((t for t, rx in self.templates.items() if rx.match(path)), None)

    def observe(  # noqa: PLR0917 - the Grid observer signature
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        content_type: str | None,
        reply: Answer,
    ) -> None:
        """Validate one call (the signature of a test Grid's observers)."""
        parsed = URL(url)
        template = self.template(parsed.path)
        if template is None:
            self.outside.add((method, parsed.path))
            return
        request = MockRequest(
            self.base_url,
            method,
            parsed.path,
            args=ImmutableMultiDict(list(MultiDict(parsed.query).items())),
            headers=headers,
            data=body,
            content_type=content_type or "application/json",
        )
        response = MockResponse(
            reply.raw, reply.status, headers=reply.headers, content_type=reply.content_type
        )
        label = f"{method} {parsed.path}?{parsed.query_string} -> {reply.status}"
        with warnings.catch_warnings():
            # openapi-core cannot check oauth2 security itself and says so; the tests do.
            warnings.filterwarnings("ignore", message="Unsupported scheme type")
            if not self._request_is_invalid:
                self._record(label + " (request)", self.api.validate_request, request)
            self._record(label + " (response)", self.api.validate_response, request, response)
        self.checked.add((method, template, reply.status))

    def _record(self, label: str, check: Any, *args: Any) -> None:
        try:
            check(*args)
        except Exception as err:  # noqa: BLE001 - every validation failure is collected
            causes = getattr(err, "schema_errors", None) or [err.__cause__ or err]
            self.errors.append(f"{label}: {err}: {'; '.join(str(c)[:300] for c in causes)}")
