"""OpenADR 3.1 objects as typed models.

Field names follow Python style; the wire names are the specification's (camelCase), set as
aliases. Unknown properties are ignored on input, as the specification's model-extension rule
allows, so a newer peer does not break an older one. Verification of signed objects always works
on the received JSON, never on a model re-serialised from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from mashumaro import field_options
from mashumaro.config import BaseConfig
from mashumaro.exceptions import MissingField, SuitableVariantNotFoundError
from mashumaro.mixins.dict import DataClassDictMixin

from .timing import format_datetime, parse_datetime


class ObjectType(StrEnum):
    """Types of objects addressable through the API."""

    PROGRAM = "PROGRAM"
    EVENT = "EVENT"
    REPORT = "REPORT"
    SUBSCRIPTION = "SUBSCRIPTION"
    VEN = "VEN"
    RESOURCE = "RESOURCE"


class Operation(StrEnum):
    """Operations on objects that notifications announce."""

    CREATE = "CREATE"
    READ = "READ"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class EventPayloadType(StrEnum):
    """Event payload types this project acts on (the specification defines more)."""

    SIMPLE = "SIMPLE"
    PRICE = "PRICE"
    EXPORT_PRICE = "EXPORT_PRICE"
    IMPORT_CAPACITY_LIMIT = "IMPORT_CAPACITY_LIMIT"
    EXPORT_CAPACITY_LIMIT = "EXPORT_CAPACITY_LIMIT"
    DISPATCH_SETPOINT_RELATIVE = "DISPATCH_SETPOINT_RELATIVE"
    CONTROL_LEVEL_OFFSET = "CONTROL_LEVEL_OFFSET"
    GHG = "GHG"
    ALERT_GRID_EMERGENCY = "ALERT_GRID_EMERGENCY"
    ALERT_POSSIBLE_OUTAGE = "ALERT_POSSIBLE_OUTAGE"
    ALERT_OTHER = "ALERT_OTHER"


class ReportPayloadType(StrEnum):
    """Report payload types this project sends."""

    READING = "READING"
    USAGE = "USAGE"
    DEMAND = "DEMAND"
    BASELINE = "BASELINE"
    DELTA_USAGE = "DELTA_USAGE"
    OPERATING_STATE = "OPERATING_STATE"
    STORAGE_CHARGE_LEVEL = "STORAGE_CHARGE_LEVEL"


class OperatingState(StrEnum):
    """Operating states a report may carry."""

    NORMAL = "NORMAL"
    ERROR = "ERROR"
    RUNNING_NORMAL = "RUNNING_NORMAL"
    RUNNING_CURTAILED = "RUNNING_CURTAILED"
    IDLE_CURTAILED = "IDLE_CURTAILED"
    RUNNING_OPTED_OUT = "RUNNING_OPTED_OUT"
    IDLE_OPTED_OUT = "IDLE_OPTED_OUT"


AGGREGATED_REPORT = "AGGREGATED_REPORT"


class ModelError(ValueError):
    """A JSON body does not describe the expected OpenADR object; the message names the field."""


def _alias(name: str) -> Any:
    return field_options(alias=name)


class OpenADRModel(DataClassDictMixin):
    """Base of every model: wire aliases, nulls left out, RFC 3339 date-times."""

    class Config(BaseConfig):
        serialize_by_alias = True
        allow_deserialization_not_by_alias = False
        omit_none = True
        serialization_strategy = {  # noqa: RUF012 - mashumaro reads it as a class attribute
            datetime: {"serialize": format_datetime, "deserialize": parse_datetime},
        }

    @classmethod
    def parse(cls, data: object) -> Self:
        """Build the model from decoded JSON, or raise ModelError naming what is wrong."""
        if not isinstance(data, dict):
            raise ModelError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except MissingField as err:
            raise ModelError(
                f"{cls.__name__}: required field '{err.field_name}' is missing"
            ) from err
        except SuitableVariantNotFoundError as err:
            raise ModelError(f"{cls.__name__}: {err}") from err
        except (TypeError, ValueError) as err:
            raise ModelError(f"{cls.__name__}: {err}") from err

    def to_json_dict(self) -> dict[str, Any]:
        """The object as the specification's JSON (camelCase, nulls left out)."""
        return self.to_dict()


@dataclass(kw_only=True, slots=True)
class Point(OpenADRModel):
    """A pair of floats, e.g. a point of a volt-var curve."""

    x: float
    y: float


type PayloadValue = float | int | str | bool | Point


@dataclass(kw_only=True, slots=True)
class ValuesMap(OpenADRModel):
    """One or more values associated with a type."""

    type: str
    values: list[PayloadValue]


@dataclass(kw_only=True, slots=True)
class IntervalPeriod(OpenADRModel):
    """Start, duration and randomisation of intervals."""

    start: datetime | None = None
    duration: str | None = None
    randomize_start: str | None = field(default=None, metadata=_alias("randomizeStart"))


@dataclass(kw_only=True, slots=True)
class Interval(OpenADRModel):
    """A temporal window and its payloads."""

    id: int
    payloads: list[ValuesMap]
    interval_period: IntervalPeriod | None = field(default=None, metadata=_alias("intervalPeriod"))


@dataclass(kw_only=True, slots=True)
class EventPayloadDescriptor(OpenADRModel):
    """Context (units, currency) for event payload values."""

    payload_type: str = field(metadata=_alias("payloadType"))
    object_type: str = field(default="EVENT_PAYLOAD_DESCRIPTOR", metadata=_alias("objectType"))
    units: str | None = None
    currency: str | None = None


@dataclass(kw_only=True, slots=True)
class ReportPayloadDescriptor(OpenADRModel):
    """Context (units, reading type) for report payload values."""

    payload_type: str = field(metadata=_alias("payloadType"))
    object_type: str = field(default="REPORT_PAYLOAD_DESCRIPTOR", metadata=_alias("objectType"))
    reading_type: str | None = field(default=None, metadata=_alias("readingType"))
    units: str | None = None
    accuracy: float | None = None
    confidence: int | None = None


@dataclass(kw_only=True, slots=True)
class ReportDescriptor(OpenADRModel):
    """A request, carried by an event, for reports from VENs."""

    payload_type: str = field(metadata=_alias("payloadType"))
    reading_type: str | None = field(default=None, metadata=_alias("readingType"))
    units: str | None = None
    targets: list[str] | None = None
    aggregate: bool = False
    start_interval: int = field(default=-1, metadata=_alias("startInterval"))
    num_intervals: int = field(default=-1, metadata=_alias("numIntervals"))
    historical: bool = True
    frequency: int = -1
    repeat: int = 1
    report_intervals: str = field(default="INTERVALS", metadata=_alias("reportIntervals"))


@dataclass(kw_only=True, slots=True)
class ObjectMetadata(OpenADRModel):
    """What the VTN provisions on every addressable object."""

    id: str
    created_date_time: datetime = field(metadata=_alias("createdDateTime"))
    modification_date_time: datetime = field(metadata=_alias("modificationDateTime"))
    object_type: ObjectType = field(metadata=_alias("objectType"))


@dataclass(kw_only=True, slots=True)
class ProgramDescription(OpenADRModel):
    """A link to a human or machine readable description."""

    url: str = field(metadata=_alias("URL"))


@dataclass(kw_only=True, slots=True)
class Program(ObjectMetadata):
    """A demand-response program or tariff."""

    program_name: str = field(metadata=_alias("programName"))
    interval_period: IntervalPeriod | None = field(default=None, metadata=_alias("intervalPeriod"))
    program_descriptions: list[ProgramDescription] | None = field(
        default=None, metadata=_alias("programDescriptions")
    )
    payload_descriptors: list[EventPayloadDescriptor | ReportPayloadDescriptor] | None = field(
        default=None, metadata=_alias("payloadDescriptors")
    )
    attributes: list[ValuesMap] | None = None
    targets: list[str] | None = None


@dataclass(kw_only=True, slots=True)
class Event(ObjectMetadata):
    """A demand-response or price signal."""

    program_id: str = field(metadata=_alias("programID"))
    event_name: str | None = field(default=None, metadata=_alias("eventName"))
    duration: str | None = None
    priority: int | None = None
    targets: list[str] | None = None
    report_descriptors: list[ReportDescriptor] | None = field(
        default=None, metadata=_alias("reportDescriptors")
    )
    payload_descriptors: list[EventPayloadDescriptor] | None = field(
        default=None, metadata=_alias("payloadDescriptors")
    )
    interval_period: IntervalPeriod | None = field(default=None, metadata=_alias("intervalPeriod"))
    intervals: list[Interval] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class ReportResource(OpenADRModel):
    """Report data of one resource."""

    resource_name: str = field(metadata=_alias("resourceName"))
    intervals: list[Interval]
    interval_period: IntervalPeriod | None = field(default=None, metadata=_alias("intervalPeriod"))


@dataclass(kw_only=True, slots=True)
class ReportRequest(OpenADRModel):
    """A report as a VEN posts it."""

    event_id: str = field(metadata=_alias("eventID"))
    client_name: str = field(metadata=_alias("clientName"))
    resources: list[ReportResource]
    program_id: str | None = field(default=None, metadata=_alias("programID"))
    report_name: str | None = field(default=None, metadata=_alias("reportName"))
    payload_descriptors: list[ReportPayloadDescriptor] | None = field(
        default=None, metadata=_alias("payloadDescriptors")
    )


@dataclass(kw_only=True, slots=True)
class Report(ObjectMetadata):
    """A report as the VTN stores it."""

    client_id: str = field(metadata=_alias("clientID"))
    event_id: str = field(metadata=_alias("eventID"))
    client_name: str = field(metadata=_alias("clientName"))
    resources: list[ReportResource]
    program_id: str | None = field(default=None, metadata=_alias("programID"))
    report_name: str | None = field(default=None, metadata=_alias("reportName"))
    payload_descriptors: list[ReportPayloadDescriptor] | None = field(
        default=None, metadata=_alias("payloadDescriptors")
    )


@dataclass(kw_only=True, slots=True)
class ObjectOperation(OpenADRModel):
    """Objects and operations a subscription is notified of, and where."""

    objects: list[ObjectType]
    operations: list[Operation]
    callback_url: str = field(metadata=_alias("callbackUrl"))
    bearer_token: str | None = field(default=None, metadata=_alias("bearerToken"))


@dataclass(kw_only=True, slots=True)
class SubscriptionRequest(OpenADRModel):
    """A subscription as a client posts it."""

    client_name: str = field(metadata=_alias("clientName"))
    object_operations: list[ObjectOperation] = field(metadata=_alias("objectOperations"))
    program_id: str | None = field(default=None, metadata=_alias("programID"))
    targets: list[str] | None = None


@dataclass(kw_only=True, slots=True)
class Subscription(ObjectMetadata):
    """A subscription as the VTN stores it."""

    client_id: str = field(metadata=_alias("clientID"))
    client_name: str = field(metadata=_alias("clientName"))
    object_operations: list[ObjectOperation] = field(metadata=_alias("objectOperations"))
    program_id: str | None = field(default=None, metadata=_alias("programID"))
    targets: list[str] | None = None


@dataclass(kw_only=True, slots=True)
class Ven(ObjectMetadata):
    """A VEN as the VTN stores it."""

    ven_name: str = field(metadata=_alias("venName"))
    client_id: str | None = field(default=None, metadata=_alias("clientID"))
    targets: list[str] | None = None
    attributes: list[ValuesMap] | None = None


@dataclass(kw_only=True, slots=True)
class Resource(ObjectMetadata):
    """A resource of a VEN (a device, a PV system, a home)."""

    resource_name: str = field(metadata=_alias("resourceName"))
    ven_id: str = field(metadata=_alias("venID"))
    client_id: str | None = field(default=None, metadata=_alias("clientID"))
    targets: list[str] | None = None
    attributes: list[ValuesMap] | None = None


@dataclass(kw_only=True, slots=True)
class Notification(OpenADRModel):
    """What a VTN sends a subscriber: an operation on an object."""

    object_type: ObjectType = field(metadata=_alias("objectType"))
    operation: Operation
    object: dict[str, Any]
    targets: list[str] | None = None


@dataclass(kw_only=True, slots=True)
class Problem(OpenADRModel):
    """The specification's error body."""

    title: str
    status: int
    detail: str | None = None
    type: str = "about:blank"
    instance: str | None = None


def payload_values(payloads: list[ValuesMap], payload_type: str) -> list[PayloadValue] | None:
    """The values of the payload of the given type, if the interval carries one."""
    for payload in payloads:
        if payload.type == payload_type:
            return payload.values
    return None
