"""Signing and verification: every valid signal accepted, every altered one rejected."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest
import rfc8785

from smart_community_protocol import (
    SIGNATURE_FIELD,
    Claims,
    KeyFormatError,
    Operation,
    PublicKey,
    RejectReason,
    ReplayGuard,
    SignalRejected,
    Signer,
    Verifier,
    jwks,
    keys_from_jwks,
)
from smart_community_protocol.signing import b64url, b64url_decode, decode_header

NOW = 1_800_000_000
HOME_TARGETS = frozenset({"community:c1", "feeder:c1/f1", "transformer:c1/t1", "home:c1/h1"})


def make_event(event_id: str = "e1", price: float = 0.17, name: str = "peak") -> dict[str, Any]:
    """A plain OpenADR event as the grid publishes it."""
    return {
        "id": event_id,
        "objectType": "EVENT",
        "createdDateTime": "2027-01-15T08:00:00Z",
        "modificationDateTime": "2027-01-15T08:00:00Z",
        "programID": "p1",
        "eventName": name,
        "targets": ["community:c1"],
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "PRICE",
                "units": "KWH",
                "currency": "CNY",
            }
        ],
        "intervalPeriod": {
            "start": "2027-01-15T09:00:00Z",
            "duration": "PT1H",
            "randomizeStart": "PT5M",
        },
        "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [price, 0.3]}]}],
    }


@pytest.fixture(name="signer")
def signer_fixture() -> Signer:
    return Signer.generate("grid-1")


def sign(signer: Signer, obj: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": signer.issuer,
        "aud": ("community:c1",),
        "iat": NOW - 10,
        "nbf": NOW - 60,
        "exp": NOW + 3600,
        "seq": signer.next_seq(),
        "op": Operation.CREATE,
    } | overrides
    return signer.sign_with_claims(obj, Claims(**claims))


def verifier_for(*signers: Signer, guard: ReplayGuard | None = None) -> Verifier:
    return Verifier(
        [s.public_key for s in signers], audience=HOME_TARGETS, clock=lambda: NOW, guard=guard
    )


def rejection(verifier: Verifier, obj: Any, operation: Operation | None = None) -> RejectReason:
    with pytest.raises(SignalRejected) as caught:
        verifier.verify(obj, operation=operation)
    assert caught.value.message  # every rejection explains itself
    return caught.value.reason


def test_valid_signature_is_accepted_and_survives_reencoding(signer: Signer) -> None:
    signed = sign(signer, make_event())
    relayed = json.loads(json.dumps(signed, indent=2, sort_keys=True))  # a relay re-encodes JSON
    verified = verifier_for(signer).verify(relayed)
    assert verified.object_id == "e1"
    assert verified.claims.iss == "grid-1"
    assert verified.kid == signer.public_key.kid
    assert decode_header(signed[SIGNATURE_FIELD])["typ"] == "openadr+jws"


def test_sign_sets_claims_and_rising_sequence(signer: Signer) -> None:
    first = signer.sign(make_event(), audience=["community:c1"], not_before=NOW, expires=NOW + 60)
    second = signer.sign(make_event(), audience=["community:c1"], not_before=NOW, expires=NOW + 60)
    one, two = decode_header(first[SIGNATURE_FIELD]), decode_header(second[SIGNATURE_FIELD])
    assert two["seq"] > one["seq"]
    assert one["aud"] == ["community:c1"]
    assert (one["nbf"], one["exp"], one["op"]) == (NOW, NOW + 60, "UPDATE")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": ("community:other",)}, RejectReason.WRONG_AUDIENCE),
        ({"aud": ()}, RejectReason.WRONG_AUDIENCE),
        ({"exp": NOW - 61}, RejectReason.EXPIRED),
        ({"nbf": NOW + 61}, RejectReason.NOT_YET_VALID),
        ({"iat": NOW + 61}, RejectReason.ISSUED_IN_FUTURE),
        ({"iss": "someone-else"}, RejectReason.WRONG_ISSUER),
        ({"op": Operation.DELETE}, RejectReason.OPERATION_MISMATCH),
        ({"op": Operation.READ}, RejectReason.OPERATION_MISMATCH),
    ],
)
def test_claims_are_enforced(
    signer: Signer, overrides: dict[str, Any], reason: RejectReason
) -> None:
    assert rejection(verifier_for(signer), sign(signer, make_event(), **overrides)) is reason


def test_clock_skew_within_leeway_is_tolerated(signer: Signer) -> None:
    signed = sign(signer, make_event(), exp=NOW - 30, nbf=NOW + 30, iat=NOW + 30)
    assert verifier_for(signer).verify(signed).object_id == "e1"


def test_delete_needs_a_delete_signature(signer: Signer) -> None:
    verifier = verifier_for(signer)
    update = sign(signer, make_event())
    assert rejection(verifier, update, Operation.DELETE) is RejectReason.OPERATION_MISMATCH
    deletion = sign(signer, make_event(), op=Operation.DELETE)
    assert verifier.verify(deletion, operation=Operation.DELETE).claims.op is Operation.DELETE


def test_replayed_and_older_versions_are_rejected(signer: Signer) -> None:
    verifier = verifier_for(signer)
    old = sign(signer, make_event(price=0.1))
    new = sign(signer, make_event(price=0.2))
    verifier.verify(new)
    assert rejection(verifier, new) is RejectReason.REPLAYED
    assert rejection(verifier, old) is RejectReason.OLDER_VERSION
    # Another object of the same issuer is independent of the first one's version.
    assert verifier.verify(sign(signer, make_event("e2"))).object_id == "e2"


def test_replay_guard_survives_export_and_prunes_expired(signer: Signer) -> None:
    verifier = verifier_for(signer)
    signed = sign(signer, make_event(), exp=NOW + 100)
    verifier.verify(signed)
    restored = ReplayGuard()
    restored.load(json.loads(json.dumps(verifier.guard.export())))
    assert rejection(verifier_for(signer, guard=restored), signed) is RejectReason.REPLAYED
    assert restored.prune(NOW + 101) == 1
    assert restored.export() == []


def test_verify_without_record_leaves_guard_alone(signer: Signer) -> None:
    verifier = verifier_for(signer)
    signed = sign(signer, make_event())
    verifier.verify(signed, record=False)
    assert verifier.verify(signed).object_id == "e1"


def test_unknown_key_and_algorithm_confusion(signer: Signer) -> None:
    intruder = Signer.generate("grid-1")  # same issuer name, different key
    assert rejection(verifier_for(signer), sign(intruder, make_event())) is RejectReason.UNKNOWN_KEY
    signed = sign(signer, make_event())
    header_b64, _, signature = signed[SIGNATURE_FIELD].split(".")
    header = json.loads(b64url_decode(header_b64))
    for algorithm in ("none", "HS256", "RS256", None):
        forged = dict(signed)
        forged[SIGNATURE_FIELD] = (
            f"{b64url(json.dumps(header | {'alg': algorithm}).encode())}..{signature}"
        )
        assert rejection(verifier_for(signer), forged) is RejectReason.ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize(
    "signature",
    [None, 42, "", "abc", "a.b.c", "a..b", "!!!..sig", "e30..", ["x"], {"a": 1}],
)
def test_malformed_signatures(signer: Signer, signature: Any) -> None:
    obj = make_event()
    obj[SIGNATURE_FIELD] = signature
    reason = rejection(verifier_for(signer), obj)
    expected = {RejectReason.MALFORMED, RejectReason.ALGORITHM_NOT_ALLOWED}
    assert reason in (expected | {RejectReason.UNSIGNED} if signature is None else expected)


def test_non_objects_and_unsigned(signer: Signer) -> None:
    verifier = verifier_for(signer)
    assert rejection(verifier, ["not", "an", "object"]) is RejectReason.MALFORMED
    assert rejection(verifier, make_event()) is RejectReason.UNSIGNED


def test_missing_claims(signer: Signer) -> None:
    signed = sign(signer, make_event())
    header = decode_header(signed[SIGNATURE_FIELD])
    for claim in ("iss", "aud", "iat", "nbf", "exp", "seq", "op"):
        altered = {k: v for k, v in header.items() if k != claim}
        token = signer_with_header(signer, make_event(), altered)
        assert rejection(verifier_for(signer), token) is RejectReason.MISSING_CLAIM, claim
    wrong_types = {"iat": "soon", "seq": True, "aud": "community:c1", "op": ["CREATE"], "iss": ""}
    for claim, value in wrong_types.items():
        token = signer_with_header(signer, make_event(), header | {claim: value})
        assert rejection(verifier_for(signer), token) is RejectReason.MISSING_CLAIM, claim


def signer_with_header(
    signer: Signer, obj: dict[str, Any], header: dict[str, Any]
) -> dict[str, Any]:
    """Sign with an arbitrary protected header (to build objects a careless issuer might make)."""
    import jwt

    from smart_community_protocol.signing import canonical_payload

    extra = {k: v for k, v in header.items() if k not in {"alg", "b64", "crit"}}
    token = jwt.api_jws.encode(
        canonical_payload(obj),
        signer.private_key,
        algorithm="EdDSA",
        headers=extra,
        is_payload_detached=True,
    )
    return {**obj, SIGNATURE_FIELD: token}


def test_canonicalisation_failure_is_malformed(signer: Signer) -> None:
    signed = sign(signer, make_event())
    signed["intervals"][0]["payloads"][0]["values"][0] = 2**60  # outside RFC 8785's number domain
    assert rejection(verifier_for(signer), signed) is RejectReason.MALFORMED


def test_jwks_roundtrip_and_bad_keys(signer: Signer) -> None:
    document = jwks([signer.public_key])
    (key,) = keys_from_jwks(json.loads(json.dumps(document)))
    assert key == PublicKey(kid=signer.public_key.kid, issuer="grid-1", key=key.key)
    good = document["keys"][0]
    for bad in (
        {**good, "kty": "RSA"},
        {**good, "crv": "Ed448"},
        {**good, "x": "not base64!"},
        {**good, "x": b64url(b"short")},
        {**good, "kid": "not-the-thumbprint"},
        {k: v for k, v in good.items() if k != "iss"},
    ):
        with pytest.raises(KeyFormatError):
            PublicKey.from_jwk(bad)
    with pytest.raises(KeyFormatError):
        keys_from_jwks({"keys": []})
    reloaded = Signer.from_pem("grid-1", signer.private_pem())
    assert reloaded.public_key.kid == signer.public_key.kid


# --- property-based: every field and the signature itself -------------------------------------


def leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a scalar in a JSON tree (the signature property excluded)."""
    if isinstance(node, dict):
        return [
            p for k, v in node.items() if k != SIGNATURE_FIELD for p in leaf_paths(v, (*path, k))
        ]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaf_paths(v, (*path, i))]
    return [path]


def different(value: Any, rng: random.Random) -> Any:
    """A JSON value that canonicalises differently from value."""
    candidates: list[Any] = [7, f"{value}x", None, True, [], {}, round(rng.uniform(-5, 5), 3), ""]
    return rng.choice([c for c in candidates if rfc8785.dumps(c) != rfc8785.dumps(value)])


def mutate(signed: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One alteration: a value, a key, an added or removed property, or the signature."""
    forged = copy.deepcopy(signed)
    kind = rng.randrange(6)
    if kind == 0:  # change one leaf
        *parents, last = rng.choice(leaf_paths(forged))
        node = forged
        for step in parents:
            node = node[step]
        node[last] = different(node[last], rng)
    elif kind == 1:  # drop a property
        forged.pop(rng.choice([k for k in forged if k != SIGNATURE_FIELD]))
    elif kind == 2:  # add a property
        forged[f"X_extra{rng.randrange(100)}"] = rng.choice([0, "x", None, [1]])
    elif kind == 3:  # rename a property
        key = rng.choice([k for k in forged if k != SIGNATURE_FIELD])
        forged[key + "_"] = forged.pop(key)
    elif kind == 4:  # flip one character of the signature value (header or signature part)
        token = forged[SIGNATURE_FIELD]
        index = rng.choice([i for i, c in enumerate(token) if c != "."])
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        forged[SIGNATURE_FIELD] = (
            token[:index] + rng.choice(alphabet.replace(token[index], "")) + token[index + 1 :]
        )
    else:  # rewrite a claim in the header, keeping the old signature
        header_b64, _, sig = forged[SIGNATURE_FIELD].split(".")
        header = json.loads(b64url_decode(header_b64))
        claim = rng.choice(["aud", "exp", "nbf", "seq", "iss", "op", "kid"])
        header[claim] = {
            "aud": ["home:c1/h1"],
            "exp": header["exp"] + 10**6,
            "nbf": 0,
            "seq": header["seq"] + 1,
            "iss": "grid-2",
            "op": "DELETE",
            "kid": "x",
        }[claim]
        forged[SIGNATURE_FIELD] = f"{b64url(json.dumps(header).encode())}..{sig}"
    return forged


event_objects = st.builds(
    make_event,
    event_id=st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True),
    price=st.floats(min_value=-10, max_value=10, allow_nan=False).map(lambda p: round(p, 4)),
    name=st.text(max_size=40),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=event_objects, seed=st.integers(min_value=0, max_value=2**32))
def test_property_valid_accepted_every_mutation_rejected(
    signer: Signer, obj: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    signed = sign(signer, obj)
    for _ in range(20):
        forged = mutate(signed, rng)
        with pytest.raises(SignalRejected):
            verifier_for(signer).verify(forged)
    assert verifier_for(signer).verify(signed).object_id == obj["id"]


def test_forgery_corpus_zero_accepted(signer: Signer) -> None:
    """Over 10,000 mutated, forged, replayed, expired signals: none accepted, all valid ones are."""
    rng = random.Random(20261127)
    intruder = Signer.generate(signer.issuer)
    rejected = accepted_valid = 0
    verifier = verifier_for(signer)
    for index in range(2_600):
        obj = make_event(f"e{index}", price=round(rng.uniform(0, 2), 3))
        signed = sign(signer, obj)
        attempts = [mutate(signed, rng) for _ in range(2)]
        attempts.append(sign(intruder, obj))  # forged with a key that is not pinned
        attempts.append(sign(signer, obj, exp=NOW - 3_600))  # expired
        attempts.append(sign(signer, obj, aud=("home:c1/h2",)))  # another home's
        for attempt in attempts:
            with pytest.raises(SignalRejected):
                verifier.verify(attempt)
            rejected += 1
        verifier.verify(signed)
        accepted_valid += 1
        with pytest.raises(SignalRejected):  # the same valid signal again: a replay
            verifier.verify(signed)
        rejected += 1
    assert accepted_valid == 2_600
    assert rejected >= 10_000
