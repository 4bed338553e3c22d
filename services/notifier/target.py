"""Where a webhook goes and with which credentials: ``WebhookTarget``.

A target is read from a secret shaped like Flux's notification-controller provider secret: a
YAML mapping with ``address``, ``proxy``, ``token`` and ``headers`` (itself a YAML-encoded
map, or a nested mapping), and Waveline's own ``signing_key`` (an HMAC key apart from the
bearer token, so that the receiver's credential and the key proving the body differ).
Everything in it is treated as secret, not only the token: Slack
and Teams webhook addresses carry their credential in the path, a proxy URL may carry a
user and password, and headers often carry ``Authorization``. So ``repr``/``str`` show only
the address's origin and header names, and no error raised here quotes a value.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from waveline.shared.errors import ConfigError

logger = logging.getLogger(__name__)

SECRET_KEYS = ("address", "proxy", "token", "signing_key", "headers")
# What YAML means by null; BaseLoader hands them over as these strings.
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_MASK = "***"
# Values shorter than this are not credentials, and masking them would garble messages.
_MIN_SECRET_LEN = 4
# RFC 9110 field-name: a token.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the library owns: the body's framing and type, the signature, the hop to a proxy.
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-type",
        "host",
        "proxy-authorization",
        "transfer-encoding",
        "x-signature",
    }
)


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _check_url(value: str, what: str) -> str:
    """``value`` stripped, if it is an absolute http(s) URL with a host; messages omit it."""
    value = value.strip()
    if _has_control(value) or any(c.isspace() for c in value):
        raise ValueError(f"{what} must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"{what} must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{what} must name a host")
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        raise ValueError(f"{what} has an invalid port") from None
    return value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookTarget(BaseModel):
    """One webhook endpoint: ``address`` to POST to, optional ``proxy``, ``token``, ``headers``.

    - ``address``: absolute http(s) URL, without credentials (use ``token`` or ``headers``).
    - ``proxy``: optional http(s) proxy URL; ``user:password@`` in it becomes
      ``Proxy-Authorization: Basic``.
    - ``token``: when set, sent as ``Authorization: Bearer`` (unless ``headers`` sets
      ``Authorization``) and, without a ``signing_key``, used as the HMAC key of
      ``X-Signature`` (as Flux's generic-hmac provider does).
    - ``signing_key``: when set, the HMAC key of ``X-Signature`` instead of the token, which
      is then only the bearer credential (a receiver can check the body's origin without
      holding a credential that also lets it call anyone who accepts the token).
    - ``headers``: extra request headers. ``Content-Type``, ``Content-Length``, ``Host``,
      ``Connection``, ``Transfer-Encoding``, ``Proxy-Authorization`` and ``X-Signature`` are
      set by the library and refused here.
    - ``timeout_s``: the whole attempt's time limit (connect, send, response).
    """

    # hide_input_in_errors: a ValidationError must never echo a token or header value.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    address: str
    proxy: str | None = None
    token: SecretStr | None = None
    signing_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = _check_url(value, "address")
        if "@" in urlsplit(value).netloc:
            raise ValueError("address must not contain credentials; use token or headers")
        return value

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _check_url(value, "proxy") if value.strip() else None
        return value

    @field_validator("token", "signing_key", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value  # pydantic reports the wrong type, without the input
        # Surrounding whitespace is a copy-paste artefact (a trailing newline from a file).
        raw = raw.strip()
        if not raw:
            return None
        if _has_control(raw):
            raise ValueError("must not contain control characters")
        return SecretStr(raw)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        clean: dict[str, str] = {}
        for name, header_value in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP field name")
            lowered = name.lower()
            if lowered in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by Waveline and cannot be overridden")
            if lowered in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(lowered)
            # CR/LF would let a value inject further headers; the value itself is not quoted.
            if _has_control(header_value.replace("\t", " ")):
                raise ValueError(f"header {name!r} has a value with control characters")
            clean[name] = header_value.strip()
        return clean

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the address: safe to log."""
        return _origin(self.address)

    @property
    def signature_key(self) -> str | None:
        """The HMAC key of ``X-Signature``: ``signing_key``, else ``token``, else none
        (the body goes unsigned)."""
        key = self.signing_key or self.token
        return None if key is None else key.get_secret_value()

    @property
    def proxy_url(self) -> str | None:
        """The proxy URL without its credentials (those go in ``proxy_authorization``)."""
        if self.proxy is None:
            return None
        parts = urlsplit(self.proxy)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))

    @property
    def proxy_authorization(self) -> str | None:
        """``Basic ...`` for a proxy URL with ``user[:password]@``, else ``None``."""
        if self.proxy is None:
            return None
        parts = urlsplit(self.proxy)
        if parts.username is None:
            return None
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")

    def secret_values(self) -> tuple[str, ...]:
        """Every value that must not reach a log or an error: feed it to a redacting filter."""
        values: list[str] = []
        for secret in (self.token, self.signing_key):
            if secret is not None:
                values.append(secret.get_secret_value())
        values.extend(self.headers.values())
        if self.proxy is not None:
            userinfo = urlsplit(self.proxy).netloc.rpartition("@")[0]
            values.extend([userinfo, *userinfo.split(":", 1)] if userinfo else [])
        parts = urlsplit(self.address)
        values.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        return tuple(v for v in values if len(v) >= _MIN_SECRET_LEN)

    def redact(self, text: str) -> str:
        """``text`` with the address reduced to its origin and every secret value masked.

        The origins (shown by ``repr`` anyway) are set aside while masking, so that a short
        header value such as ``https`` does not garble ``https://host``.
        """
        kept = [self.origin + "/" + _MASK, self.origin]
        if self.proxy is not None:
            kept.append(_origin(self.proxy))
        text = text.replace(self.address, "\x00 0\x00")
        for index, origin in enumerate(kept[1:], start=1):
            text = text.replace(origin, f"\x00 {index}\x00")
        for secret in sorted(set(self.secret_values()), key=len, reverse=True):
            text = text.replace(secret, _MASK)
        for index, origin in enumerate(kept):
            text = text.replace(f"\x00 {index}\x00", origin)
        return text

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        yield "address", self.origin + "/" + _MASK
        yield "proxy", None if self.proxy is None else _origin(self.proxy)
        yield "token", None if self.token is None else _MASK
        yield "signing_key", None if self.signing_key is None else _MASK
        yield "headers", dict.fromkeys(self.headers, _MASK)
        yield "timeout_s", self.timeout_s

    @classmethod
    def from_secret(
        cls,
        text: str,
        *,
        timeout_s: float = 10.0,
        address: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WebhookTarget:
        """Parse a provider secret (a YAML mapping of ``address``, ``proxy``, ``token``,
        ``signing_key``, ``headers``) into a target.

        ``headers`` is a YAML-encoded map in a string (as Flux stores it) or a nested mapping.
        Scalars are read as written (``token: 0123`` stays ``"0123"``, never the number 83);
        an empty or null (``~``, ``null``) ``address``, ``proxy``, ``token`` or
        ``signing_key`` means unset.
        Give the secret text itself: a ``yaml.safe_load``/``safe_dump`` round trip would already
        have turned such values into other strings.

        ``address`` and ``headers`` are defaults from the (non-secret) config: the secret's
        address wins, and its headers override same-named ones (case-insensitively).
        Raises ``ConfigError`` (permanent) naming the bad key and why, never quoting a value.
        """
        raw = _load_yaml(text, "webhook secret")
        if raw is None or raw == "":
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError("webhook secret must be a YAML mapping of " + ", ".join(SECRET_KEYS))
        unknown = sorted(set(raw) - set(SECRET_KEYS))
        if unknown:
            raise ConfigError(
                f"webhook secret has unknown keys {unknown}; allowed: {', '.join(SECRET_KEYS)}"
            )
        fields: dict[str, Any] = {}
        for key in ("address", "proxy", "token", "signing_key"):
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"webhook secret: {key} must be a string")
            if value is not None and value.strip() not in _YAML_NULLS:
                fields[key] = value
        fields.setdefault("address", address)
        if not fields["address"]:
            raise ConfigError("webhook secret has no address (and no default address is set)")
        own = _parse_headers(raw.get("headers"))
        overridden = {name.lower() for name in own}
        defaults = {k: v for k, v in (headers or {}).items() if k.lower() not in overridden}
        fields["headers"] = {**defaults, **own}
        fields["timeout_s"] = timeout_s
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def _load_yaml(text: str, what: str) -> Any:
    """YAML with every scalar kept as the string written (BaseLoader: no int/bool/null)."""
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (BaseLoader builds no objects)
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending line, which may hold the token: give the position only.
        where = ""
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
            if exc.problem:
                where += f" ({exc.problem})"
        elif isinstance(exc, yaml.reader.ReaderError):
            where = f" (a character YAML does not allow, at offset {exc.position})"
        raise ConfigError(f"{what} is not valid YAML{where}") from None


def _parse_headers(value: Any) -> dict[str, str]:
    if value is None or (isinstance(value, str) and value.strip() in _YAML_NULLS):
        return {}
    if isinstance(value, str):
        value = _load_yaml(value, "webhook secret headers")
        if value is None or (isinstance(value, str) and value.strip() in _YAML_NULLS):
            return {}
    if not isinstance(value, dict):
        raise ConfigError("webhook secret: headers must be a mapping of header name to value")
    for name, header_value in value.items():
        if not isinstance(header_value, str):
            raise ConfigError(f"webhook secret: header {name!r} must have a string value")
    return dict(value)


def _describe(error: ValidationError) -> str:
    lines = ["invalid webhook secret:"]
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)
