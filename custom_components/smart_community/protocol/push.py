"""Messages of the bridge's WebSocket push channel (docs/protocol.md), both directions.

JSON text frames: the bridge opens with a ``welcome``, then sends ``signal`` frames, each an
OpenADR ``notification`` with the bridge's sequence number; the home answers ``ack`` once it has
applied or dropped a signal. A signal frame embeds the signed object's JSON as stored, never
re-encoded from a model. Unknown message types are ignored, so either side can grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import json
from typing import Any

from .validation import parse_json


class PushMessageError(ValueError):
    """A push frame is not a message of the protocol."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconnect:
    """How a home comes back after losing the channel, so a restart does not become a storm.

    Wait a random time in the upper half of ``initial * 2**failures`` seconds, at most
    ``maximum``; a connection that reached its welcome resets ``failures`` to 0.
    """

    initial: float
    maximum: float

    def delay(self, failures: int, uniform: Callable[[float, float], float]) -> float:
        """Seconds to wait after ``failures`` failed attempts (``uniform``: a random source)."""
        ceiling = min(self.maximum, self.initial * 2 ** min(failures, 32))
        return uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, kw_only=True, slots=True)
class Welcome:
    """The bridge's first message: who the home is and the bridge's last sequence."""

    home: str
    last_seq: int
    heartbeat: int | None
    reconnect: Reconnect | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Signal:
    """One pushed notification and its place in the bridge's ledger.

    The notification stays the decoded JSON it arrived as: signatures are verified over what was
    received, never over a model re-serialised from it.
    """

    seq: int
    notification: dict[str, Any]


def encode_welcome(welcome: Welcome) -> str:
    """The welcome frame."""
    message: dict[str, Any] = {
        "type": "welcome",
        "home": welcome.home,
        "last_seq": welcome.last_seq,
        "heartbeat": welcome.heartbeat,
    }
    if (reconnect := welcome.reconnect) is not None:
        message["reconnect"] = {"initial": reconnect.initial, "max": reconnect.maximum}
    return json.dumps(message)


def encode_signal(seq: int, object_type: str, operation: str, object_json: str) -> str:
    """A signal frame around an object's JSON text, embedded unchanged."""
    return (
        f'{{"type":"signal","seq":{int(seq)},"notification":{{"objectType":'
        f'{json.dumps(object_type)},"operation":{json.dumps(operation)},"object":{object_json}}}}}'
    )


def encode_ack(seq: int) -> str:
    """The home's acknowledgement of signal ``seq``."""
    return json.dumps({"type": "ack", "seq": seq})


def welcome_from(message: Mapping[str, Any]) -> Welcome:
    """Read a decoded welcome; PushMessageError if it is not one."""
    home, last_seq, heartbeat = (
        message.get("home"),
        message.get("last_seq"),
        message.get("heartbeat"),
    )
    if (
        message.get("type") != "welcome"
        or not isinstance(home, str)
        or type(last_seq) is not int
        or (heartbeat is not None and type(heartbeat) is not int)
    ):
        raise PushMessageError("the push channel did not start with a welcome")
    return Welcome(
        home=home,
        last_seq=last_seq,
        heartbeat=heartbeat,
        reconnect=_reconnect_from(message.get("reconnect")),
    )


def _reconnect_from(value: object) -> Reconnect | None:
    # Guidance is advice: a malformed one is ignored, and the home keeps its own defaults.
    if not isinstance(value, Mapping):
        return None
    initial, maximum = _number(value.get("initial")), _number(value.get("max"))
    if initial is None or maximum is None or not 0 < initial <= maximum:
        return None
    return Reconnect(initial=initial, maximum=maximum)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def signal_from(message: Mapping[str, Any]) -> Signal:
    """Read a decoded signal message; PushMessageError if it lacks its parts."""
    seq, notification = message.get("seq"), message.get("notification")
    if type(seq) is not int or not isinstance(notification, dict):
        raise PushMessageError("a signal needs an integer 'seq' and a 'notification' object")
    return Signal(seq=seq, notification=notification)


def encode_report(ref: int, report: Mapping[str, Any]) -> str:
    """A home's report (an OpenADR reportRequest), with a reference for the bridge's answer."""
    return json.dumps({"type": "report", "ref": ref, "report": report}, separators=(",", ":"))


def encode_report_result(ref: int, status: int, detail: str | None = None) -> str:
    """The bridge's answer to report ``ref``: 201 once stored, else an HTTP-like status and why."""
    return json.dumps({"type": "report_result", "ref": ref, "status": status, "detail": detail})


@dataclass(frozen=True, kw_only=True, slots=True)
class Ack:
    """A home has applied or dropped signal ``seq``."""

    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportFrame:
    """A home's report over the push channel."""

    ref: int
    report: dict[str, Any]


def home_message_from(text: str) -> Ack | ReportFrame | None:
    """A home's frame; None for types this side does not know (PushMessageError if malformed)."""
    try:
        message = parse_json(text)
    except ValueError as err:
        raise PushMessageError(f"frame is not JSON: {err}") from err
    if not isinstance(message, dict):
        raise PushMessageError("frame is not a JSON object")
    kind = message.get("type")
    if kind == "ack":
        seq = message.get("seq")
        if type(seq) is not int:
            raise PushMessageError("an ack needs an integer 'seq'")
        return Ack(seq=seq)
    if kind == "report":
        ref, report = message.get("ref"), message.get("report")
        if type(ref) is not int or not isinstance(report, dict):
            raise PushMessageError("a report needs an integer 'ref' and a 'report' object")
        return ReportFrame(ref=ref, report=report)
    return None
