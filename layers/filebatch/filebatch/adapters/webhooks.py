"""The webhook's network side (standard library only): resolving a host, and a POST pinned to an
address that was checked (services/webhooks.py decides which addresses may be called).

http.client, not urllib: urllib would follow redirects and honour proxy variables, either of which
would send the request somewhere that was not checked."""

from __future__ import annotations

import http.client
import socket
import ssl

from filebatch.services.ports import WebhookResponse, WebhookTarget

# The POST's timeouts (seconds): to connect, then for each read of the answer.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
# At most this many of the target's addresses are tried, one after the other, when connecting fails.
MAX_ADDRESSES_TRIED = 2
# What is read of the answer's body (it is not used; reading a little lets the connection close
# cleanly without downloading whatever a receiver sends back).
MAX_RESPONSE_BYTES = 4096


class SocketHostResolver:
    def resolve(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _pinned_socket(address: str, port: int, connect_timeout: float, read_timeout: float) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=connect_timeout)
    sock.settimeout(read_timeout)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to `address`, whatever `host` resolves to now; Host header from `host`."""

    def __init__(
        self, host: str, port: int, address: str, connect_timeout: float, read_timeout: float
    ) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self._address = address
        self._read_timeout = read_timeout

    def connect(self) -> None:
        self.sock = _pinned_socket(self._address, self.port, self.timeout, self._read_timeout)  # type: ignore[arg-type]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address`; the certificate is verified for `host` (SNI too), as for any https URL."""

    def __init__(
        self,
        host: str,
        port: int,
        address: str,
        connect_timeout: float,
        read_timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=connect_timeout, context=context)
        self._address = address
        self._read_timeout = read_timeout
        self._tls = context

    def connect(self) -> None:
        sock = _pinned_socket(self._address, self.port, self.timeout, self._read_timeout)  # type: ignore[arg-type]
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _retry_after(value: str | None) -> int | None:
    # Seconds only; an HTTP-date is ignored (the backoff applies).
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


class HttpWebhookTransport:
    def __init__(
        self,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._context = context or ssl.create_default_context()

    def _connection(self, target: WebhookTarget, address: str) -> http.client.HTTPConnection:
        if target.scheme == "https":
            return _PinnedHTTPSConnection(
                target.host, target.port, address, self._connect_timeout, self._read_timeout, self._context
            )
        return _PinnedHTTPConnection(
            target.host, target.port, address, self._connect_timeout, self._read_timeout
        )

    def post(self, target: WebhookTarget, headers: dict[str, str], body: bytes) -> WebhookResponse:
        error: OSError = ConnectionError(f"no address to connect to for {target.host}")
        for address in target.addresses[:MAX_ADDRESSES_TRIED]:
            connection = self._connection(target, address)
            try:
                connection.connect()
            except OSError as failed:  # refused, unreachable, timed out, TLS: try the next address
                connection.close()
                error = failed
                continue
            try:
                connection.request("POST", target.target, body=body, headers=headers)
                response = connection.getresponse()
                response.read(MAX_RESPONSE_BYTES)
                return WebhookResponse(response.status, _retry_after(response.getheader("Retry-After")))
            except http.client.HTTPException as failed:
                raise ConnectionError(f"bad HTTP answer: {failed!r}") from failed
            finally:
                connection.close()
        raise error
