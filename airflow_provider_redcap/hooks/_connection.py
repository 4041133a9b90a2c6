"""Turn an Airflow connection into validated, immutable REDCap client settings.

Pure except for :func:`settings_from_connection`, which registers the token with Airflow's secret
masker. Shared by the sync hook (requests) and the async hook (httpx).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_redcap.exceptions import RedcapConfigurationError

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_REQUESTS_PER_MINUTE = 300
DEFAULT_RETRY_WAIT = 1.0
#: REDCap bans a client IP permanently at 600 requests in a minute.
REDCAP_BAN_THRESHOLD = 600

TOKEN_LENGTH = 32
_TOKEN_RE = re.compile(r"[A-Za-z0-9]{32}")
_VERSIONED_API_RE = re.compile(r"^(?P<prefix>.*?)/redcap_v\d+(?:\.\d+)*/api/?$", re.IGNORECASE)
_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}

KNOWN_EXTRAS = frozenset(
    {"verify_ssl", "ca_bundle", "timeout", "max_retries", "requests_per_minute", "proxies", "retry_wait"}
)


@dataclass(frozen=True)
class RedcapSettings:
    """Everything a client needs to talk to one REDCap project.

    :param url: the API URL, always ending in ``/``.
    :param token: the 32-character API token (excluded from ``repr``).
    :param verify: ``True``/``False``, or the path of a CA bundle.
    :param timeout: seconds per request (connect and read).
    :param max_retries: retries after transient failures (attempts = ``max_retries + 1``).
    :param requests_per_minute: client-side throttle limit.
    :param proxies: scheme -> proxy URL, or ``None``.
    :param retry_wait: base of the exponential back-off, in seconds.
    """

    url: str
    token: str = field(repr=False)
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    proxies: Mapping[str, str] | None = field(default=None, repr=False)
    retry_wait: float = DEFAULT_RETRY_WAIT


class ConnectionLike(Protocol):
    """The part of ``airflow.sdk.Connection`` the settings are built from."""

    host: str | None
    password: str | None
    schema: str | None
    port: int | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def is_loopback_host(hostname: str) -> bool:
    """Whether ``hostname`` is ``localhost`` or a loopback address (127.0.0.0/8, ``::1``)."""
    name = hostname.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_api_url(host: str | None, *, schema: str | None = None, port: int | None = None) -> str:
    """Return the normalised API URL (with a trailing slash) or raise :class:`RedcapConfigurationError`.

    ``host`` should be the full URL. For URI-style connections, where Airflow splits
    ``redcap://:TOKEN@redcap.example.org/api/`` into host ``redcap.example.org`` and schema ``api/``,
    a scheme-less host is rebuilt as ``https://host[:port]/schema`` (a path in the host wins over
    ``schema``). ``port`` goes into the URL when the URL names none.
    """
    raw = (host or "").strip()
    if not raw:
        raise RedcapConfigurationError(
            "The REDCap connection has no host. Set it to the full API URL, e.g. "
            "https://redcap.example.org/api/."
        )
    if "://" not in raw:
        netloc, slash, host_path = raw.partition("/")
        path = host_path if slash else (schema or "").strip().lstrip("/")
        raw = f"https://{netloc}/{path}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RedcapConfigurationError(
            f"The REDCap API URL must be an http(s) URL such as https://redcap.example.org/api/; "
            f"got scheme {parts.scheme!r}."
        )
    if parts.username or parts.password:
        raise RedcapConfigurationError(
            "The REDCap API URL must not contain credentials; put the API token in the password field."
        )
    if parts.query or parts.fragment:
        raise RedcapConfigurationError("The REDCap API URL must not have a query string or fragment.")
    netloc = parts.netloc
    try:
        url_port = parts.port
    except ValueError:
        raise RedcapConfigurationError(f"The REDCap API URL has an invalid port: {netloc!r}.") from None
    if port and url_port is None:
        netloc = f"{netloc}:{port}"
    elif port and url_port != port:
        raise RedcapConfigurationError(
            f"The REDCap API URL says port {url_port} but the connection's port field says {port}; "
            "remove one."
        )
    path = parts.path or "/"
    versioned = _VERSIONED_API_RE.match(path)
    if versioned:
        right = urlunsplit((scheme, netloc, versioned.group("prefix") + "/api/", "", ""))
        raise RedcapConfigurationError(
            f"The URL points at REDCap's versioned API documentation folder ({path}); the API "
            f"endpoint is the lowercase .../api/ folder: {right}"
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise RedcapConfigurationError(
            "Plain http:// is refused for a REDCap server that is not on this machine: the API token "
            "and clinical data would cross the network unencrypted. Use https:// (http:// is allowed "
            "only for localhost/127.0.0.0/8/::1, e.g. the local emulator)."
        )
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def api_url_warning(url: str) -> str | None:
    """A warning for an API URL whose path does not end in ``/api/``, else ``None``.

    Not an error: a proxy may rewrite paths. But a REDCap base URL answers the API's POST with 501.
    """
    if urlsplit(url).path.rstrip("/").lower().endswith("/api"):
        return None
    return (
        f"The REDCap API URL {url} does not end in /api/; REDCap's API answers at "
        "https://<server>/<redcap folder>/api/ (other paths typically answer HTTP 501). Check the "
        "connection's host unless a proxy rewrites the path."
    )


def validate_token(password: str | None) -> str:
    """Return the stripped token or raise; the error names the expected shape, never a character."""
    token = (password or "").strip()
    if not token:
        raise RedcapConfigurationError(
            "The REDCap connection has no API token: put the project's 32-character API token in "
            "the connection's password field."
        )
    if not _TOKEN_RE.fullmatch(token):
        length = len(token)
        what = "letters and digits only" if token.isalnum() and token.isascii() else "other characters"
        raise RedcapConfigurationError(
            f"The REDCap API token must be exactly {TOKEN_LENGTH} ASCII letters or digits "
            f"(A-Z, a-z, 0-9); the connection's password has {length} characters ({what}). "
            "A 64-character super token cannot be used for project methods."
        )
    return token


def coerce_bool(value: Any, name: str) -> bool:
    """Accept real booleans and the strings URI-style connections produce (``"true"``, ``"0"``...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise RedcapConfigurationError(f"Connection extra {name!r} must be true or false; got {value!r}.")


def coerce_number(
    value: Any, name: str, *, integer: bool, minimum: float, maximum: float | None = None
) -> Any:
    """Coerce an extra (possibly a string) to int/float within bounds."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if not isinstance(value, int | float) else value
        if integer:
            if float(number) != int(float(number)):
                raise ValueError
            number = int(float(number))
        else:
            number = float(number)
    except (TypeError, ValueError):
        kind = "a whole number" if integer else "a number"
        raise RedcapConfigurationError(f"Connection extra {name!r} must be {kind}; got {value!r}.") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"at least {minimum:g}" + (f" and at most {maximum:g}" if maximum is not None else "")
        raise RedcapConfigurationError(f"Connection extra {name!r} must be {bounds}; got {value!r}.")
    return number


def _coerce_proxies(value: Any) -> dict[str, str] | None:
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RedcapConfigurationError(
                'Connection extra "proxies" must be a JSON object such as '
                '{"https": "http://proxy.example.org:3128"}.'
            ) from None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RedcapConfigurationError(
            'Connection extra "proxies" must map schemes to proxy URLs, e.g. {"https": "http://proxy:3128"}.'
        )
    return dict(value)


def _present(value: Any) -> bool:
    return value is not None and value != ""


def build_settings(
    host: str | None,
    password: str | None,
    extra: Mapping[str, Any] | None = None,
    *,
    schema: str | None = None,
    port: int | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    requests_per_minute: int | None = None,
    retry_wait: float | None = None,
) -> RedcapSettings:
    """Validate connection fields and extras; keyword overrides win over extras. Pure (no masking).

    :raises RedcapConfigurationError: for a malformed URL, token or extra.
    """
    extra = dict(extra or {})
    url = validate_api_url(host, schema=schema, port=port)
    token = validate_token(password)

    verify_ssl = coerce_bool(extra["verify_ssl"], "verify_ssl") if _present(extra.get("verify_ssl")) else True
    ca_bundle = str(extra["ca_bundle"]).strip() if _present(extra.get("ca_bundle")) else None
    if ca_bundle and not verify_ssl:
        raise RedcapConfigurationError(
            "Connection extras verify_ssl=false and ca_bundle contradict each other; remove one."
        )
    verify: bool | str = ca_bundle or verify_ssl

    def pick(override: Any, key: str, default: Any) -> Any:
        if override is not None:
            return override
        return extra[key] if _present(extra.get(key)) else default

    return RedcapSettings(
        url=url,
        token=token,
        verify=verify,
        timeout=coerce_number(
            pick(timeout, "timeout", DEFAULT_TIMEOUT), "timeout", integer=False, minimum=0.001
        ),
        max_retries=coerce_number(
            pick(max_retries, "max_retries", DEFAULT_MAX_RETRIES),
            "max_retries",
            integer=True,
            minimum=0,
            maximum=10,
        ),
        requests_per_minute=coerce_number(
            pick(requests_per_minute, "requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE),
            "requests_per_minute",
            integer=True,
            minimum=1,
            maximum=REDCAP_BAN_THRESHOLD - 1,
        ),
        proxies=_coerce_proxies(extra.get("proxies")),
        retry_wait=coerce_number(
            pick(retry_wait, "retry_wait", DEFAULT_RETRY_WAIT), "retry_wait", integer=False, minimum=0
        ),
    )


def settings_from_connection(conn: ConnectionLike, **overrides: Any) -> RedcapSettings:
    """Build settings from an Airflow connection and register the token (and proxy URLs) as secrets.

    :param overrides: ``timeout``, ``max_retries``, ``requests_per_minute``, ``retry_wait``; ``None``
        values fall back to the connection's extras, then to the defaults.
    """
    from airflow.sdk.log import mask_secret

    # Mask before validating, so even a malformed token is redacted if anything echoes it later.
    if conn.password and conn.password.strip():
        mask_secret(conn.password.strip())
    settings = build_settings(
        conn.host,
        conn.password,
        conn.extra_dejson,
        schema=conn.schema,
        port=conn.port,
        **overrides,
    )
    for proxy in (settings.proxies or {}).values():
        if "@" in proxy:
            mask_secret(proxy)
    return settings


def unknown_extras(extra: Mapping[str, Any]) -> list[str]:
    """Extra keys this provider does not use (reported as a warning; never an error)."""
    return sorted(k for k in extra if k not in KNOWN_EXTRAS)
