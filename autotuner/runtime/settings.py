"""The daemon's configuration: flags over environment variables over an optional YAML file.

Every value is validated by pydantic; a bad one is reported with the place it came from (the
flag, the environment variable, or the file and line) and the field it was meant for.
Secrets (the Redis password, the Prometheus token and basic-auth password) are accepted only
from the environment or from files, and are held as `SecretStr` so that no repr or log line can
show them.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from autotuner.core.model import KnobKind, KnobRef
from autotuner.core.rules import KnobTemplate, RuleSet, Template

ENV_PREFIX = "AUTOTUNER_"

# Settings that hold secrets: never from a flag or the settings file, where they would end up in
# shell history, process listings or a ConfigMap.
SECRET_FIELDS = ("redis_password", "prometheus_token", "prometheus_basic_auth_password")

# The most queries the Prometheus adapter runs at once: the size of its connection pool.
PROMETHEUS_MAX_CONCURRENCY = 10

# An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Credentials have settings of their own, read from the environment or files only.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names its source and field."""


class _Conflict(ValueError):
    """Settings that are each valid but wrong together; `fields` are the ones involved."""

    def __init__(self, fields: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.fields = fields


class AllowList(BaseModel):
    """What any rule may touch. Empty lists allow nothing of that kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = ()
    # fnmatch patterns over workload names, e.g. "api", "ml-*".
    workloads: tuple[str, ...] = ()
    key_prefixes: tuple[str, ...] = ()

    @field_validator("namespaces", "workloads", "key_prefixes", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("namespaces", "workloads", "key_prefixes")
    @classmethod
    def _no_blank_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not entry.strip() for entry in value):
            raise ValueError("entries must not be empty strings")
        return value

    def refusal(self, knob: KnobRef) -> str | None:
        """Why `knob` is outside the allow-list, or None when it is inside."""
        if knob.is_workload:
            if knob.namespace not in self.namespaces:
                return (
                    f"{knob.id}: namespace {knob.namespace!r} is not in the allow-list "
                    f"(allowed: {_listing(self.namespaces)})"
                )
            if not any(fnmatch.fnmatchcase(knob.name, p) for p in self.workloads):
                return (
                    f"{knob.id}: workload name {knob.name!r} matches no allowed pattern "
                    f"(allowed: {_listing(self.workloads)})"
                )
            return None
        if not any(knob.name.startswith(prefix) for prefix in self.key_prefixes):
            return (
                f"{knob.id}: key {knob.name!r} starts with no allowed prefix "
                f"(allowed: {_listing(self.key_prefixes)})"
            )
        return None

    def permits(self, knob: KnobRef) -> bool:
        return self.refusal(knob) is None

    def template_refusal(self, knob: KnobTemplate) -> str | None:
        """Why no rendering of `knob` could be allowed, or None when some rendering could be.

        Static parts are checked now; a templated part is checked again for each rendered knob
        at decision time (`refusal`).
        """
        if knob.is_static:
            return self.refusal(knob.render({}))
        if knob.kind is not KnobKind.CONFIG_KEY:
            if knob.namespace.is_static and knob.namespace.parts[0] not in self.namespaces:
                return (
                    f"{knob.kind.value} namespace {knob.namespace.parts[0]!r} is not in the "
                    f"allow-list (allowed: {_listing(self.namespaces)})"
                )
            if knob.name.is_static and not any(
                fnmatch.fnmatchcase(knob.name.parts[0], p) for p in self.workloads
            ):
                return (
                    f"{knob.kind.value} name {knob.name.parts[0]!r} matches no allowed pattern "
                    f"(allowed: {_listing(self.workloads)})"
                )
            return None
        literal_start = knob.name.parts[0]
        # A rendering can be allowed only if its fixed start agrees with some allowed prefix.
        if not any(
            literal_start.startswith(prefix) or prefix.startswith(literal_start)
            for prefix in self.key_prefixes
        ):
            return (
                f"key {_template_text(knob.name)!r} can never start with an allowed prefix "
                f"(allowed: {_listing(self.key_prefixes)})"
            )
        return None


def _listing(values: Iterable[str]) -> str:
    shown = ", ".join(repr(v) for v in values)
    return shown or "nothing; set AUTOTUNER_ALLOW_* or `allow:` in the settings file"


def _template_text(template: Template) -> str:
    return "".join(
        part if index % 2 == 0 else "{{ labels." + part + " }}"
        for index, part in enumerate(template.parts)
    )


@dataclass(frozen=True, slots=True)
class AllowListViolation:
    # "rule 'name'" or "budget 'name'", with the file and line when known.
    subject: str
    where: str | None
    problem: str

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.subject}: {self.problem}"


class AllowListError(ValueError):
    """A rule set reaches outside the allow-list; it is rejected as a whole."""

    def __init__(self, violations: tuple[AllowListViolation, ...]) -> None:
        self.violations = violations
        lines = "\n  ".join(str(v) for v in violations)
        super().__init__(f"rules reach outside the allow-list:\n  {lines}")


def check_ruleset(ruleset: RuleSet, allow: AllowList) -> None:
    """Raise AllowListError when any rule's or budget's knob reaches outside `allow`."""
    violations: list[AllowListViolation] = []
    for rule in ruleset.rules:
        problem = allow.template_refusal(rule.action.knob)
        if problem is not None:
            where = str(rule.location) if rule.location else None
            violations.append(AllowListViolation(f"rule {rule.name!r}", where, problem))
    for budget in ruleset.budgets:
        for knob in sorted(budget.knobs):
            problem = allow.refusal(knob)
            if problem is not None:
                violations.append(AllowListViolation(f"budget {budget.name!r}", None, problem))
    if violations:
        raise AllowListError(tuple(violations))


class Settings(BaseModel):
    """Everything `autotuner run` needs to know, validated."""

    # No infinite or NaN numbers: no timeout, interval or limit means anything as one.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # No Prometheus URL: run against the bundled simulated system in process.
    prometheus_url: str | None = None
    prometheus_token: SecretStr | None = None
    # A file holding the token, re-read by the adapter so that a rotated token is picked up.
    prometheus_token_file: Path | None = None
    prometheus_basic_auth_username: str | None = None
    prometheus_basic_auth_password: SecretStr | None = None
    # Re-read by the adapter when it changes, like the token file.
    prometheus_basic_auth_password_file: Path | None = None
    # PEM file of the CAs to trust instead of the system's.
    prometheus_ca_bundle: Path | None = None
    prometheus_verify_tls: bool = True
    # Sent with every query, e.g. X-Scope-OrgID for Mimir, Cortex or Thanos. Pairs, not a dict,
    # so that the settings stay hashable; values are hidden in reprs and logs.
    prometheus_extra_headers: tuple[tuple[str, str], ...] = ()
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0)
    prometheus_max_concurrency: int = Field(default=4, ge=1, le=PROMETHEUS_MAX_CONCURRENCY)
    # An answer declaring a larger size is refused unread: the query matches too many series.
    prometheus_max_response_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    # ACL user, plain or from a file (re-read with the password on every new connection).
    redis_username: str | None = None
    redis_username_file: Path | None = None
    # CA bundle for a rediss:// URL; the system's when unset.
    redis_ca_file: Path | None = None
    redis_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    redis_command_timeout_seconds: float = Field(default=2.0, gt=0)
    # Prepended to every key a rule names; the allow-list sees the rule's name without it.
    redis_key_prefix: str = ""
    # After each write, {key, old, new, rule} is published here so applications reload at once.
    redis_publish_channel: str | None = None
    redis_write_attempts: int = Field(default=3, ge=1)
    # SQLAlchemy URL of the audit and state store. Its password, if any, is hidden in reprs.
    database_url: SecretStr = SecretStr("sqlite:///autotuner-audit.sqlite")
    # A file holding the URL (it carries the PostgreSQL password), as a mounted Secret; used
    # instead of database_url, also over the image's default AUTOTUNER_DATABASE_URL.
    database_url_file: Path | None = None
    retention_days: float = Field(default=30.0, gt=0)
    rules: tuple[Path, ...] = (Path("rules"),)
    interval_seconds: float = Field(default=15.0, gt=0)
    dry_run: bool = False
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # /readyz fails when the metric source last answered longer ago than this.
    ready_max_age_seconds: float = Field(default=120.0, gt=0)
    # How long a stopping daemon lets the cycle in flight finish before abandoning it.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Kubernetes access: a kubeconfig file, else the in-cluster service account inside a pod.
    kubeconfig: Path | None = None
    kube_context: str | None = None
    leader_election: bool = False
    lease_name: str = "autotuner"
    lease_namespace: str = "autotuner"
    identity: str = Field(default_factory=lambda: os.environ.get("HOSTNAME", "autotuner"))
    allow: AllowList = AllowList()
    # Simulated seconds per real second in the embedded (no Prometheus) mode.
    sim_speed: float = Field(default=60.0, gt=0)
    # A scenario file for the embedded mode; the built-in flash crowd when unset.
    sim_scenario: Path | None = None

    @field_validator(
        "prometheus_token_file",
        "prometheus_basic_auth_password_file",
        "redis_password_file",
        "redis_username_file",
        "database_url_file",
    )
    @classmethod
    def _readable_secret_file(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            content = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"cannot read file {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"file {path} is not UTF-8 text") from None
        if not content:
            raise ValueError(f"file {path} is empty")
        return path

    @field_validator("prometheus_ca_bundle", "redis_ca_file")
    @classmethod
    def _readable_ca_file(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ValueError(f"cannot read CA file {path}: {error.strerror}") from None
        return path

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise ValueError(
                "credentials in the URL would end up in logs; use "
                "prometheus_basic_auth_username and prometheus_basic_auth_password_file"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host[:port][/path], got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(
                "the URL must not carry a query string or fragment; a tenant id goes in "
                "prometheus_extra_headers"
            )
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss") or not urlsplit(url).hostname:
            raise ValueError(
                f"expected redis://host[:port]/db or rediss://host[:port]/db, got "
                f"{redact_url(url)!r}"
            )
        return url

    @field_validator("prometheus_extra_headers", mode="before")
    @classmethod
    def _header_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            return _parse_header_pairs(value)
        if isinstance(value, Mapping):
            pairs = []
            for name, header_value in value.items():
                # YAML reads a numeric tenant id as a number.
                if isinstance(header_value, int) and not isinstance(header_value, bool):
                    header_value = str(header_value)
                if not isinstance(header_value, str):
                    raise ValueError(f"the value of header {name!r} must be a string; quote it")
                pairs.append((name, header_value))
            return tuple(pairs)
        return value

    @field_validator("prometheus_extra_headers")
    @classmethod
    def _valid_headers(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        seen: set[str] = set()
        for name, value in pairs:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break")
            if name.lower() in _CREDENTIAL_HEADERS:
                raise ValueError(
                    f"header {name!r} carries credentials, which are not accepted here; use "
                    f"{ENV_PREFIX}PROMETHEUS_TOKEN_FILE or the basic-auth settings"
                )
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice")
            seen.add(name.lower())
        return pairs

    @model_validator(mode="before")
    @classmethod
    def _database_url_from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("database_url_file") is None:
            return data
        try:
            url = Path(str(data["database_url_file"])).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return data  # the field's own validator says what is wrong with the file
        return {**data, "database_url": url} if url else data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        for name in SECRET_FIELDS:
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise _Conflict(
                    (name, f"{name}_file"),
                    f"{name} is given both directly and as {name}_file; keep one of the two",
                )
        if self.redis_username is not None and self.redis_username_file is not None:
            raise _Conflict(
                ("redis_username", "redis_username_file"),
                "the Redis ACL user is given both directly and as a file; keep one of the two",
            )
        if self.redis_ca_file is not None and urlsplit(self.redis_url).scheme != "rediss":
            raise _Conflict(
                ("redis_ca_file", "redis_url"),
                "a Redis CA file is used only with TLS; give a rediss:// URL or drop the CA file",
            )
        has_password = (
            self.prometheus_basic_auth_password is not None
            or self.prometheus_basic_auth_password_file is not None
        )
        if has_password != (self.prometheus_basic_auth_username is not None):
            raise _Conflict(
                (
                    "prometheus_basic_auth_username",
                    "prometheus_basic_auth_password",
                    "prometheus_basic_auth_password_file",
                ),
                "basic auth needs both prometheus_basic_auth_username and a password "
                f"({ENV_PREFIX}PROMETHEUS_BASIC_AUTH_PASSWORD or "
                "prometheus_basic_auth_password_file)",
            )
        has_token = self.prometheus_token is not None or self.prometheus_token_file is not None
        if has_token and has_password:
            raise _Conflict(
                ("prometheus_basic_auth_username", "prometheus_token", "prometheus_token_file"),
                "use either a Prometheus bearer token or basic auth, not both",
            )
        if self.prometheus_ca_bundle is not None and not self.prometheus_verify_tls:
            raise _Conflict(
                ("prometheus_ca_bundle", "prometheus_verify_tls"),
                "a CA bundle is used only when TLS is verified; drop prometheus_ca_bundle or "
                "turn prometheus_verify_tls back on",
            )
        return self

    def secret_values(self) -> tuple[str, ...]:
        """Every secret's value, for the log redactor to hide wherever it might appear."""
        values = [
            secret.get_secret_value()
            for secret in (
                self.redis_password,
                self.prometheus_token,
                self.prometheus_basic_auth_password,
            )
            if secret is not None
        ]
        for path in (
            self.redis_password_file,
            self.prometheus_token_file,
            self.prometheus_basic_auth_password_file,
        ):
            if path is not None:
                try:
                    values.append(path.read_text(encoding="utf-8").strip())
                except OSError:
                    continue
        password = _url_password(self.database_url.get_secret_value())
        if password:
            values.append(password)
        return tuple(v for v in values if v)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rules", mode="before")
    @classmethod
    def _split_rule_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # URLs may carry a password in their user part: show them redacted.
        for name, value in super().__repr_args__():
            if name in ("redis_url", "prometheus_url") and isinstance(value, str):
                yield name, redact_url(value)
            elif name == "prometheus_extra_headers":
                yield name, self.hidden_headers()
            else:
                yield name, value

    @property
    def embedded(self) -> bool:
        return self.prometheus_url is None

    def hidden_headers(self) -> dict[str, str]:
        """The extra headers' names, values hidden: a gateway's API key may be among them."""
        return {name: "***" for name, _ in self.prometheus_extra_headers}

    def redacted(self) -> dict[str, Any]:
        """The settings as a JSON-friendly mapping fit for a log line: secrets hidden."""
        shown = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            if shown.get(name) is not None:
                shown[name] = "***"
        shown["prometheus_extra_headers"] = self.hidden_headers()
        shown["database_url"] = redact_url(self.database_url.get_secret_value())
        shown["redis_url"] = redact_url(self.redis_url)
        if self.prometheus_url is not None:
            shown["prometheus_url"] = redact_url(self.prometheus_url)
        return shown


def _parse_header_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """`NAME=VALUE` pairs separated by commas or line breaks, as given in a flag or variable."""
    pairs = []
    for item in re.split(r"[,\n]", text):
        if not item.strip():
            continue
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(
                f"expected NAME=VALUE pairs separated by commas, e.g. X-Scope-OrgID=tenant-a; "
                f"got {item.strip()!r}"
            )
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def _url_password(url: str) -> str | None:
    _, sep, rest = url.partition("://")
    userinfo, at, _ = rest.partition("@")
    if not sep or not at or "/" in userinfo:
        return None
    _, has_password, password = userinfo.partition(":")
    return password if has_password else None


def redact_url(url: str) -> str:
    """`scheme://user:secret@host/...` with the password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user, has_password, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"


# ---- loading from the three sources -------------------------------------------------------

# (field name, how the value was given) for each value, to name the source in an error.
_Origin = dict[str, str]

_ALLOW_ENV = {
    "AUTOTUNER_ALLOW_NAMESPACES": "namespaces",
    "AUTOTUNER_ALLOW_WORKLOADS": "workloads",
    "AUTOTUNER_ALLOW_KEY_PREFIXES": "key_prefixes",
}


def load_settings(
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> Settings:
    """Merge defaults < settings file < environment < flags, then validate.

    `flags` holds only the flags that were given (None values are ignored). The settings file
    is `file`, else `--config`/AUTOTUNER_CONFIG when set. Raises SettingsError.
    """
    environ = os.environ if environ is None else environ
    given_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    merged: dict[str, Any] = {}
    origin: _Origin = {}

    config_path = file or given_flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    given_flags.pop("config", None)
    if config_path:
        file_values, file_origin = _read_settings_file(Path(str(config_path)))
        merged.update(file_values)
        origin.update(file_origin)

    env_values, env_origin = _read_environment(environ)
    _merge(merged, env_values)
    origin.update(env_origin)

    for name in given_flags:
        if name in SECRET_FIELDS:
            raise SettingsError(
                f"flag --{name.replace('_', '-')}: secrets are not accepted as flags; use "
                f"{ENV_PREFIX}{name.upper()} or --{name.replace('_', '-')}-file"
            )
    flag_values = dict(given_flags)
    flag_allow = {
        key: flag_values.pop(f"allow_{key}")
        for key in ("namespaces", "workloads", "key_prefixes")
        if f"allow_{key}" in flag_values
    }
    if flag_allow:
        flag_values["allow"] = flag_allow
        for key in flag_allow:
            origin[f"allow.{key}"] = f"flag --allow-{key.replace('_', '-')}"
    _merge(merged, flag_values)
    for name in flag_values:
        if name != "allow":
            origin[name] = f"flag --{name.replace('_', '-')}"

    try:
        return Settings.model_validate(merged)
    except ValidationError as error:
        raise SettingsError(_describe(error, origin)) from None


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if key == "allow" and isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            into[key] = {**into[key], **value}
        else:
            into[key] = value


def _read_settings_file(path: Path) -> tuple[dict[str, Any], _Origin]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"settings file {path}: cannot read it: {error.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise SettingsError(f"settings file {where}: not valid YAML: {problem}") from None
    if values is None:
        return {}, {}
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise SettingsError(f"settings file {path}:1: expected a mapping of setting: value")
    origin: _Origin = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        origin[key] = f"settings file {path}:{key_node.start_mark.line + 1}"
        if key == "allow" and isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                origin[f"allow.{sub_key.value}"] = (
                    f"settings file {path}:{sub_key.start_mark.line + 1}"
                )
        if key in SECRET_FIELDS:
            raise SettingsError(
                f"{origin[key]}: field {key}: secrets are not accepted in the settings file; "
                f"use {ENV_PREFIX}{key.upper()} or `{key}_file: /path/to/secret`"
            )
    return values, origin


def _read_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], _Origin]:
    values: dict[str, Any] = {}
    origin: _Origin = {}
    allow: dict[str, str] = {}
    known = set(Settings.model_fields)
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable == ENV_PREFIX + "CONFIG":
            continue
        if variable in _ALLOW_ENV:
            allow[_ALLOW_ENV[variable]] = raw
            origin[f"allow.{_ALLOW_ENV[variable]}"] = f"environment variable {variable}"
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name not in known or name == "allow":
            raise SettingsError(
                f"environment variable {variable}: not a setting; known settings are "
                + ", ".join(sorted(ENV_PREFIX + k.upper() for k in known if k != "allow"))
                + ", "
                + ", ".join(sorted(_ALLOW_ENV))
            )
        values[name] = raw
        origin[name] = f"environment variable {variable}"
    if allow:
        values["allow"] = allow
    return values, origin


def _describe(error: ValidationError, origin: _Origin) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        conflict = item.get("ctx", {}).get("error")
        if isinstance(conflict, _Conflict):
            given = [f"{origin[name]} (field {name})" for name in conflict.fields if name in origin]
            problems.append(f"{' and '.join(given) or 'defaults'}: {message}")
            continue
        if not location:
            problems.append(message)
            continue
        field_name = ".".join(location[:2]) if location[:1] == ["allow"] else location[0]
        source = origin.get(field_name) or origin.get(location[0]) or "default"
        if item["type"] == "extra_forbidden":
            message = "not a setting"
        problems.append(f"{source}: field {field_name}: {message}")
    return "invalid settings:\n  " + "\n  ".join(problems)
