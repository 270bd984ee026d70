"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as protocol.md's "Authentication" describes it.

The client's side of the ``authenticate`` exchange: no channel binding (the
GS2 header is ``n,,``), names with ``,`` as ``=2C`` and ``=`` as ``=3D``,
passwords hashed as their UTF-8 bytes. ``Connection`` runs ``authenticate``
right after the handshake when it is given a username; ``Client`` uses
``salted_password`` to create users without sending the password.
"""

import base64
import hashlib
import hmac
import os
from typing import Any, Callable, Dict, Tuple

SCRAM_SHA_256 = "SCRAM-SHA-256"
"""The SASL mechanism's name."""

DEFAULT_ITERATIONS = 4096
"""PBKDF2 iterations of a user this client creates (RFC 7677's and Kafka's default)."""

SALT_BYTES = 32
"""Length of the random salt of a user this client creates."""

_GS2_HEADER = "n,,"
_CHANNEL_BINDING = "biws"  # base64 of the GS2 header


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """``PBKDF2-HMAC-SHA-256(password, salt, iterations)``, 32 bytes."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations, 32)


def escape_name(name: str) -> str:
    """A name as it goes into ``n=``: ``=`` as ``=3D``, ``,`` as ``=2C``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _attributes(message: str, names: str) -> Tuple[str, ...]:
    """The values of ``message``'s attributes, which must be exactly ``names`` in order."""
    if message.startswith("e="):
        raise ValueError(f"the broker refused: {message[2:]}")
    parts = message.split(",")
    if len(parts) != len(names) or any(not p.startswith(n + "=") for p, n in zip(parts, names)):
        raise ValueError(f"not a SCRAM message with attributes {', '.join(names)}: {message!r}")
    return tuple(p[2:] for p in parts)


Call = Callable[[str, Dict[str, Any]], Dict[str, Any]]


def authenticate(call: Call, user: str, password: str) -> str:
    """Runs the exchange over ``call`` (a connection's request function);
    returns the principal the broker reports (``User:<name>``).

    Raises:
        HeraldError: SASL_AUTHENTICATION_FAILED (wrong password or unknown
            user), UNSUPPORTED_SASL_MECHANISM; the broker closes the
            connection after either.
        ValueError: the broker's messages are malformed, or its signature is
            wrong (it does not hold the user's keys).
    """
    client_nonce = base64.b64encode(os.urandom(24)).decode("ascii")
    first_bare = f"n={escape_name(user)},r={client_nonce}"

    def send(message: str) -> Dict[str, Any]:
        return call("authenticate", {"mechanism": SCRAM_SHA_256, "auth_bytes": message.encode("utf-8")})

    answer = send(_GS2_HEADER + first_bare)
    server_first = bytes(answer["auth_bytes"]).decode("utf-8")
    nonce, salt_b64, iterations_text = _attributes(server_first, "rsi")
    if not nonce.startswith(client_nonce) or nonce == client_nonce:
        raise ValueError("the broker's nonce does not extend this client's")
    salted = salted_password(password, base64.b64decode(salt_b64, validate=True), int(iterations_text))
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c={_CHANNEL_BINDING},r={nonce}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode("utf-8")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    answer = send(f"{without_proof},p={base64.b64encode(proof).decode('ascii')}")
    (server_signature,) = _attributes(bytes(answer["auth_bytes"]).decode("utf-8"), "v")
    expected = _hmac(_hmac(salted, b"Server Key"), auth_message)
    if not hmac.compare_digest(base64.b64decode(server_signature, validate=True), expected):
        raise ValueError("the broker's SCRAM signature is wrong: it does not hold this user's keys")
    principal = answer.get("principal")
    if not answer.get("complete") or not isinstance(principal, str):
        raise ValueError("the broker did not complete the SCRAM exchange")
    return principal
