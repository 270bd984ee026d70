"""``Connection``: one TCP connection to a broker, handshaken, one request at a time.

Speaks protocol.md's framing: a 4-byte big-endian length, then a MessagePack
map with ``correlation_id`` and ``op``. The first request is the handshake,
which offers every protocol version this client speaks and keeps the
broker's answer (its operations and limits); requests the broker would
refuse for their operation or size are refused before being sent. ``Client``
adds a method per operation on top.
"""

import socket
import ssl
import struct
from typing import Any, Dict, Optional, TypeVar, Union

import msgpack

from .auth import authenticate
from .errors import (FRAME_TOO_LARGE, HANDSHAKE_REQUIRED, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED,
                     UNKNOWN_OPERATION, UNSUPPORTED_SASL_MECHANISM, UNSUPPORTED_VERSION, HeraldError)

MIN_PROTOCOL_VERSION = 1
"""The lowest protocol version this client speaks."""

PROTOCOL_VERSION = 1
"""The highest protocol version this client speaks."""

_FRAME_LENGTH = struct.Struct(">I")
_ENVELOPE_FIELDS = ("correlation_id", "error_code", "error_message", "throttle_time_ms")
_CONNECTION_CLOSING_CODES = frozenset((UNSUPPORTED_VERSION, HANDSHAKE_REQUIRED, FRAME_TOO_LARGE,
                                       SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE))

_Self = TypeVar("_Self", bound="Connection")


def _tls_context(tls: Union[bool, ssl.SSLContext], cafile: Optional[str], certfile: Optional[str],
                 keyfile: Optional[str], on: bool) -> Optional[ssl.SSLContext]:
    """The TLS context a connection wraps its socket in; ``None`` for plain TCP."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if not (tls or on or cafile is not None or certfile is not None):
        return None
    context = ssl.create_default_context(cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


class Connection:
    """One synchronous, handshaken connection to a Herald broker.

    The constructor connects and sends the handshake. One request is in
    flight at a time (each call waits for its response), so a connection must
    not be shared between threads.

    Errors: a non-zero ``error_code`` raises ``HeraldError``. A socket error or
    timeout raises ``OSError`` (``ConnectionError``, ``socket.timeout``) and
    closes the connection, because the stream may be left mid-frame; so do the
    errors after which the broker closes the connection (HANDSHAKE_REQUIRED,
    UNSUPPORTED_VERSION, FRAME_TOO_LARGE). A request the broker would refuse
    for its operation or its size is refused here instead, without being
    sent: UNKNOWN_OPERATION for an operation the broker does not list,
    FRAME_TOO_LARGE for a request over its ``max_frame_bytes``.

    Attributes (from the handshake response):
        features: the whole handshake answer, as a dict: ``protocol_version``
            (the version of this connection), ``operations`` (each with its
            ``op``, ``min_version`` and ``max_version``), ``assignors``, the
            limits (``max_frame_bytes``, ``max_in_flight``,
            ``min_session_timeout_ms``, ``max_session_timeout_ms``,
            ``default_session_timeout_ms``, ``max_message_bytes``),
            ``broker_version`` and ``principal`` (who the broker takes the
            connection to be: ``User:ANONYMOUS``, or ``User:`` and the subject
            of a verified TLS client certificate).
        broker_version: the broker's version string, e.g. ``"0.1.0"``.
        max_frame_bytes: the largest request payload the broker accepts;
            larger requests are refused locally with FRAME_TOO_LARGE.
        max_in_flight: how many requests the broker reads ahead per
            connection (relevant only to pipelining clients; this one sends
            one request at a time).
        principal: who the broker takes this connection to be:
            ``User:<name>`` once it authenticated with ``username``,
            ``User:`` and the subject of a TLS client certificate, else
            ``User:ANONYMOUS``; None from a broker that reports none.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092,
                 client_id: str = "herald-python", timeout: float = 30.0,
                 username: Optional[str] = None, password: Optional[str] = None, *,
                 tls: Union[bool, ssl.SSLContext] = False, cafile: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 server_hostname: Optional[str] = None):
        """Connects to ``host:port`` and performs the handshake; with
        ``username`` and ``password``, then authenticates (SCRAM-SHA-256,
        the broker's signature checked).

        ``timeout`` (seconds) bounds connecting and each request; a fetch
        waits up to its ``max_wait_ms`` longer.

        TLS, for a broker whose listener speaks it: ``tls=True`` verifies the
        broker's certificate against ``cafile`` (PEM; the system's CAs when
        ``None``) and, with ``certfile`` (and ``keyfile`` unless the key is in
        ``certfile``), shows the broker a client certificate (mutual TLS:
        ``features["principal"]`` is then ``User:`` and its subject). An
        ``ssl.SSLContext`` is used as given. The certificate must name
        ``server_hostname`` (default ``host``). Any of ``cafile``,
        ``certfile`` or ``server_hostname`` turns TLS on.

        Raises:
            HeraldError: UNSUPPORTED_VERSION if the broker speaks none of the
                versions MIN_PROTOCOL_VERSION to PROTOCOL_VERSION.
            HeraldError: SASL_AUTHENTICATION_FAILED for a wrong password or an
                unknown user (after the broker's delay).
            ValueError: ``username`` without ``password``, or a broker whose
                SCRAM signature is wrong.
            OSError: if the broker cannot be reached.
        """
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self.features: Optional[Dict[str, Any]] = None  # the broker's answer, once handshaken
        self.max_frame_bytes: Optional[int] = None  # no limit known before the handshake
        self._next_correlation_id = 1
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = _tls_context(tls, cafile, certfile, keyfile,
                               on=server_hostname is not None)
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self._sock: Optional[socket.socket] = sock
        try:
            # protocol_version too, for a broker that reads no range.
            response = self._call("handshake", {"client_id": client_id,
                                                "protocol_version": MIN_PROTOCOL_VERSION,
                                                "min_protocol_version": MIN_PROTOCOL_VERSION,
                                                "max_protocol_version": PROTOCOL_VERSION})
            version = response["protocol_version"]
            if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
                raise HeraldError(UNSUPPORTED_VERSION,
                                  f"broker chose protocol version {version}, outside the "
                                  f"{MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION} offered")
        except BaseException:
            self.close()
            raise
        self.features = {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}
        self.broker_version: str = response["broker_version"]
        self.max_frame_bytes = response["max_frame_bytes"]
        self.max_in_flight: int = response["max_in_flight"]
        self.principal: Optional[str] = self.features.get("principal")
        if username is not None and password is not None:
            try:
                self.principal = authenticate(self._call, username, password)
            except BaseException:
                self.close()
                raise

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection; calling it again does nothing."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by ``close`` or after a socket error)."""
        return self._sock is None

    def supports(self, op: str) -> bool:
        """Whether the broker serves ``op`` in this connection's protocol version.

        True before the handshake, and for a broker whose answer lists no
        operations (one older than feature discovery).
        """
        operations = (self.features or {}).get("operations")
        if not operations:
            return True
        version = (self.features or {}).get("protocol_version")
        return any(o.get("op") == op and o.get("min_version", 0) <= version <= o.get("max_version", 0)
                   for o in operations)

    # -- framing -----------------------------------------------------------------

    def _call(self, op: str, fields: Dict[str, Any], wait_s: float = 0.0,
              expect_response: bool = True) -> Dict[str, Any]:
        """Sends one request and returns its successful response map.

        ``wait_s`` extends the socket timeout for a fetch's long poll.
        """
        if self._sock is None:
            raise ConnectionError("client is closed")
        if not self.supports(op):
            raise HeraldError(UNKNOWN_OPERATION, f"not sent: the broker does not list operation "
                                                 f"{op!r} for protocol version "
                                                 f"{(self.features or {}).get('protocol_version')} in its handshake")
        correlation_id = self._take_correlation_id()
        payload = msgpack.packb({"correlation_id": correlation_id, "op": op, **fields},
                                use_bin_type=True)
        if self.max_frame_bytes is not None and len(payload) > self.max_frame_bytes:
            # Checked here because the broker would close the connection.
            raise HeraldError(FRAME_TOO_LARGE, f"not sent: a request of {len(payload)} bytes exceeds "
                                               f"the broker's max_frame_bytes {self.max_frame_bytes}")
        try:
            self._sock.settimeout(self.timeout + wait_s)
            self._sock.sendall(_FRAME_LENGTH.pack(len(payload)) + payload)
            if not expect_response:
                return {}
            response = self._receive(correlation_id)
        except OSError:
            self.close()
            raise
        code = response.get("error_code", 0)
        if code in _CONNECTION_CLOSING_CODES:
            self.close()
        if code:
            raise HeraldError(code, response.get("error_message"),
                              response.get("first_damaged_offset"), response.get("next_valid_offset"))
        return response

    def _take_correlation_id(self) -> int:
        """Returns the next correlation id, cycling through 1..2**32-1.

        0 is never used: the broker reserves it for errors it cannot attribute
        to a request (it refuses a request with id 0), and such an answer must
        not match a later request.
        """
        correlation_id = self._next_correlation_id
        self._next_correlation_id = correlation_id % 0xFFFFFFFF + 1
        return correlation_id

    def _receive(self, correlation_id: int) -> Dict[str, Any]:
        """Reads frames until the response to ``correlation_id`` arrives.

        A response with another id is stale (an error answering an ``acks=0``
        produce, whose success is never answered) and is skipped. A response
        with id 0 and an error is the broker's answer to a request whose id it
        could not read; with one request outstanding it is this one.
        """
        while True:
            response = self._read_frame()
            received_id = response.get("correlation_id")
            if received_id == correlation_id:
                return response
            if received_id == 0 and response.get("error_code"):
                return response

    def _read_frame(self) -> Dict[str, Any]:
        """Reads one frame and decodes its MessagePack map."""
        (length,) = _FRAME_LENGTH.unpack(self._read_exact(_FRAME_LENGTH.size))
        payload = self._read_exact(length)
        try:
            response = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ConnectionError(f"broker sent a frame that is not MessagePack: {exc}") from exc
        if not isinstance(response, dict):
            raise ConnectionError(f"broker sent a {type(response).__name__}, not a map")
        return response

    def _read_exact(self, n: int) -> bytes:
        """Reads exactly ``n`` bytes, raising ConnectionError on end of stream."""
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)


