"""RabbitMQ connection settings, the choice of a cluster's node, and error mapping, shared by
the extractor and the applier."""

from __future__ import annotations

import logging
import ssl

import pika
import pika.exceptions

from shared.config import BrokerConfig
from shared.errors import BrokerUnavailable, CdcError, PermanentError, SetupError
from shared.nodes import Nodes
from shared.nodes import nodes_for as shared_nodes
from shared.secret import Secret

log = logging.getLogger(__name__)


def nodes_for(url: Secret) -> Nodes:
    """The one Nodes of this process for broker.url (shared by all its connections)."""
    return shared_nodes("broker", BrokerConfig.split(url))


def connect_blocking(cfg: BrokerConfig, name: str) -> tuple[pika.BlockingConnection, int]:
    """A blocking connection to the first node of broker.url that answers, and that node's
    index (for ``Nodes.lost``). Raises what pika raised for the last node tried; a refusal
    that no other node would answer differently (login, TLS verification) at once."""
    nodes = nodes_for(cfg.url)
    failure: BaseException | None = None
    for index in nodes.order():
        try:
            conn = pika.BlockingConnection(connection_parameters(cfg, name, index))
        except (pika.exceptions.AMQPError, OSError, ValueError) as e:
            where = str(nodes.urls[index])
            if isinstance(classify_broker_error(e, where), PermanentError):
                raise
            if len(nodes.urls) > 1:
                log.warning("broker_node_unreachable node=%s error=%r", where, e)
            failure = e
            continue
        nodes.worked(index)
        return conn, index
    if failure is None:
        raise BrokerUnavailable("broker.url names no node")
    raise failure


def queue_depth(conn: pika.BlockingConnection, queue: str) -> int | None:
    """The messages in ``queue``; None if it is not declared. A passive declare of a queue that
    does not exist closes its channel (404), so each look gets a channel of its own."""
    ch = conn.channel()
    try:
        frame = ch.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return None
        raise
    if ch.is_open:
        ch.close()
    return int(frame.method.message_count)


def connection_parameters(cfg: BrokerConfig, name: str, node: int = 0) -> pika.URLParameters:
    """pika's parameters for every RabbitMQ connection of both processes: the URL's (of the
    ``node``-th URL of broker.url), our timeouts where it is silent, and for amqps:// our TLS
    settings."""
    url = cfg.urls[node].reveal()
    params = pika.URLParameters(url)
    if params.ssl_options is not None and (
        cfg.ca_file or cfg.cert_file or "ssl_options=" not in url
    ):
        # pika's own context for amqps:// verifies against the system's CAs only; ours takes
        # broker.ca_file and a client certificate. A URL's own ssl_options are kept unless a
        # setting is given (the settings win).
        params.ssl_options = pika.SSLOptions(tls_context(cfg), server_hostname=params.host)
    if "heartbeat=" not in url:
        params.heartbeat = 30
    if "blocked_connection_timeout=" not in url:
        # A broker in a memory or disk alarm blocks publishers; after this long the session
        # restarts instead of hanging silently.
        params.blocked_connection_timeout = 300
    if "connection_attempts=" not in url:
        params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return params


def tls_context(cfg: BrokerConfig) -> ssl.SSLContext:
    """Verifies the broker's certificate chain and host name, against broker.ca_file or else
    the system's CA certificates; presents the client certificate if one is configured."""
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (ssl.SSLError, OSError) as e:
        # The files were fine at start; changed or removed since, they stay wrong.
        raise SetupError(
            f"cannot load the RabbitMQ TLS files (broker.ca_file / cert_file / key_file): {e}"
        ) from e
    return context


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error somewhere inside what pika raised (it wraps the socket's exceptions in
    its own, sometimes several deep, or lists them per connection attempt)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        todo.extend([item.__cause__, item.__context__, *item.args])
        todo.extend(getattr(item, "exceptions", None) or ())
        todo.append(getattr(item, "exception", None))
    return None


# A TLS handshake that fails like this fails the same way on every attempt: the certificate
# does not verify, the broker rejects ours, or the port does not speak TLS at all. A handshake
# cut short by a restarting broker (EOF, reset) is an outage, retried.
_TLS_SETUP_REASONS = {
    "CERTIFICATE_VERIFY_FAILED",
    "WRONG_VERSION_NUMBER",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "UNSUPPORTED_PROTOCOL",
}


def classify_broker_error(exc: BaseException, where: str, declaring: bool = False) -> CdcError:
    """pika's exceptions as ours: wrong credentials or vhost are permanent, the rest transient.

    A channel closed with 403/406 is a topology mismatch only while declaring; later the
    same codes mean e.g. an ack that took longer than RabbitMQ's ``consumer_timeout`` (a long
    MariaDB outage), after which reconnecting is the cure.
    """
    tls = _tls_failure(exc)
    reason = getattr(tls, "reason", None)  # set by the ssl module; None on one made by hand
    if tls is not None and (
        isinstance(tls, ssl.SSLCertVerificationError) or reason in _TLS_SETUP_REASONS
    ):
        detail = getattr(tls, "verify_message", None) or (reason or str(tls)).lower().replace(
            "_", " "
        )
        return SetupError(
            f"RabbitMQ TLS failed ({where}): {detail}: check broker.ca_file (the CA "
            "that signed the broker's certificate), that the URL's host is a name the "
            "certificate holds, and that its port is the broker's TLS port"
        )
    if isinstance(
        exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError
    ):
        return SetupError(f"RabbitMQ refused the login ({where}): check the user and password")
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return SetupError(
            f"RabbitMQ denied access to the virtual host ({where}): "
            "create the vhost or grant the user permissions on it"
        )
    if (
        declaring
        and isinstance(exc, pika.exceptions.ChannelClosedByBroker)
        and exc.reply_code in (403, 406)
    ):
        return SetupError(
            f"RabbitMQ refused the topology ({exc.reply_code} {exc.reply_text}): "
            "a queue or exchange of this name exists with other arguments; delete it or "
            "configure matching broker settings"
        )
    return BrokerUnavailable(f"RabbitMQ connection lost ({where}): {exc!r}")
