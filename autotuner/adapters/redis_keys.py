"""The Redis config-key actuator: numeric settings held in plain keys or hash fields.

Applications read these keys (a cache TTL, a connection pool size); the controller changes them.
Every write is a compare-and-set done by one Lua script, so it is atomic on the server: the value
is written only if the key still holds the value the decision was computed from (or is still
absent, when the decision started from the rule's default). A key that changed meanwhile is left
as it is and the outcome says from what to what it changed; the next tick decides again from the
new value. Because the script is atomic there is no optimistic-locking conflict to retry; the
bounded retry covers a connection lost before the reply, and a retried write that finds its own
value already in place reports it as applied instead of as a concurrent change.

Nothing here raises to the caller: unreachable servers, refused commands and odd values become
`KnobUnreadable` readings or `FAILED`/`SKIPPED` outcomes that name the key and the value.

The least an ACL user needs: `~<key prefix>* &<channel> +get +hget +eval +evalsha` plus
`+set +hset` (called from the script) and `+publish` when publishing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from autotuner.control.actuation import failed_unexpectedly, writable
from autotuner.core.model import (
    Decision,
    KnobKind,
    KnobReading,
    KnobRef,
    KnobUnreadable,
    KnobValue,
    Outcome,
    OutcomeStatus,
    usable,
)

_T = TypeVar("_T")

# Errors after which the same command may be sent again on a fresh connection.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)

# KEYS[1] the key; ARGV: [1] hash field ("" for a plain key), [2] "absent" or "value" (what the
# decision expects to find), [3] the expected number, [4] the new value, [5] the channel to
# publish on ("" for none), [6] the message.
# Numbers are compared as numbers so that "300" and "300.0" are the same value. SET keeps the
# key's TTL so that a write never changes how long an operator meant the key to live.
_COMPARE_AND_SET = """
local current
if ARGV[1] == '' then
  current = redis.call('GET', KEYS[1])
else
  current = redis.call('HGET', KEYS[1], ARGV[1])
end
if current == false then
  if ARGV[2] ~= 'absent' then
    return {'absent'}
  end
else
  local found = tonumber(current)
  if ARGV[2] == 'absent' or found == nil or found ~= tonumber(ARGV[3]) then
    if found ~= nil and found == tonumber(ARGV[4]) then
      return {'already', current}
    end
    return {'conflict', current}
  end
end
if ARGV[1] == '' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return {'written'}
"""
# The numbers both Python and the script's Lua `tonumber` read alike: no hex, no digit
# separators, no words like "inf".
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
_COMPARE_AND_SET_SHA = hashlib.sha1(_COMPARE_AND_SET.encode()).hexdigest()


class RedisSettingsError(ValueError):
    """A Redis actuator option is wrong; the message says which one and what to do."""


@dataclass(frozen=True, slots=True)
class RedisKeySettings:
    """How to reach the Redis that holds the config keys.

    Secrets are never held here, only where to find them (a file, re-read on every new
    connection so a rotated Kubernetes Secret is picked up, or an environment variable), so that
    printing the settings never prints a password.
    """

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None  # ACL user, when not given in the URL or a file
    username_file: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    ca_file: str | None = None  # CA bundle for rediss:// (the system's when unset)
    connect_timeout: float = 2.0
    command_timeout: float = 2.0
    key_prefix: str = ""  # prepended to every key name a rule gives
    publish_channel: str | None = None  # publish {key, old, new, rule} here after each write
    write_attempts: int = 3
    retry_delay: float = 0.05

    def validate(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss"):
            raise RedisSettingsError(
                f"Redis URL must start with redis:// or rediss://, got {scheme or 'no'} scheme "
                f"in {redacted_url(self.url)}"
            )
        if self.password_file and self.password_env:
            raise RedisSettingsError(
                "give the Redis password once: either a password file or an environment variable"
            )
        if self.username and self.username_file:
            raise RedisSettingsError(
                "give the Redis ACL user once: either a user name or a file holding it"
            )
        for label, path in (("password", self.password_file), ("user", self.username_file)):
            if path and not Path(path).is_file():
                raise RedisSettingsError(f"Redis {label} file {path} does not exist")
        if self.password_env and self.password_env not in os.environ:
            raise RedisSettingsError(
                f"Redis password environment variable {self.password_env} is not set"
            )
        if self.ca_file and not Path(self.ca_file).is_file():
            raise RedisSettingsError(f"Redis CA bundle {self.ca_file} does not exist")
        if self.ca_file and scheme != "rediss":
            raise RedisSettingsError("a Redis CA bundle needs a rediss:// URL")
        for name, seconds in (
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
        ):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise RedisSettingsError(f"Redis {name} must be a positive number of seconds")
        if self.write_attempts < 1:
            raise RedisSettingsError("Redis write_attempts must be at least 1")
        if self.retry_delay < 0:
            raise RedisSettingsError("Redis retry_delay must not be negative")


def redacted_url(url: str) -> str:
    """The URL without user and password, fit for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    path = parts.path if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{host}{port}{path}"


class _FileOrEnvCredentials(CredentialProvider):
    """Reads the user and password each time a connection is opened."""

    def __init__(self, settings: RedisKeySettings, url_username: str | None) -> None:
        self._settings = settings
        self._url_username = url_username

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        settings = self._settings
        password = ""
        try:
            if settings.password_file:
                password = Path(settings.password_file).read_text(encoding="utf-8").strip()
            elif settings.password_env:
                password = os.environ.get(settings.password_env, "")
            username = settings.username or self._url_username or ""
            if settings.username_file:
                username = Path(settings.username_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise RedisConnectionError(f"cannot read a Redis credential file: {err}") from err
        return (username, password) if username else (password,)


def format_number(value: float) -> str:
    """How a value is written to Redis: integers without a fraction, others exactly."""
    value = float(value)  # an int passes the float annotation, and int has no is_integer in 3.11
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _json_number(value: float | None) -> int | float | None:
    if value is None:
        return None
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


class RedisKeyActuator:
    """Reads and writes numeric config keys (`ConfigKey` knobs) in one Redis database."""

    def __init__(self, settings: RedisKeySettings) -> None:
        settings.validate()
        self._settings = settings
        self._where = redacted_url(settings.url)
        url_username = urlsplit(settings.url).username
        has_secret = bool(
            settings.password_file
            or settings.password_env
            or settings.username
            or settings.username_file
        )
        options: dict[str, object] = {
            "socket_connect_timeout": settings.connect_timeout,
            "socket_timeout": settings.command_timeout,
            # Retries are done here, where a retried write can be told apart from a first one.
            "retry": Retry(NoBackoff(), 0),
            "retry_on_error": [],
        }
        if has_secret:
            options["credential_provider"] = _FileOrEnvCredentials(settings, url_username)
        if settings.ca_file:
            options["ssl_ca_certs"] = settings.ca_file
        self._client = redis.Redis.from_url(settings.url, **options)

    @property
    def settings(self) -> RedisKeySettings:
        return self._settings

    def close(self) -> None:
        self._client.close()

    def key_of(self, knob: KnobRef) -> str:
        """The Redis key a knob names, with the configured prefix."""
        return self._settings.key_prefix + knob.name

    def handles(self, knob: KnobRef) -> bool:
        return knob.kind is KnobKind.CONFIG_KEY

    def read(self, knobs: Sequence[KnobRef]) -> Mapping[KnobRef, KnobReading]:
        wanted = [knob for knob in dict.fromkeys(knobs) if self.handles(knob)]
        readings: dict[KnobRef, KnobReading] = {
            knob: KnobUnreadable(
                f"{knob.id} is not a config key; the Redis actuator reads only keys"
            )
            for knob in knobs
            if not self.handles(knob)
        }
        if not wanted:
            return readings

        def fetch() -> list[object]:
            pipe = self._client.pipeline(transaction=False)
            for knob in wanted:
                if knob.field:
                    pipe.hget(self.key_of(knob), knob.field)
                else:
                    pipe.get(self.key_of(knob))
            return list(pipe.execute(raise_on_error=False))

        try:
            # One retry: a pooled connection may have died since the last tick.
            replies = self._with_retries(fetch, min(2, self._settings.write_attempts))
        except (RedisError, OSError) as err:
            reason = f"Redis at {self._where} did not answer: {err}"
            readings.update({knob: KnobUnreadable(reason) for knob in wanted})
            return readings
        except Exception as error:  # the port never raises: an unforeseen error is data too
            reason = f"reading from Redis at {self._where} failed unexpectedly: {error!r}"
            readings.update({knob: KnobUnreadable(reason) for knob in wanted})
            return readings
        for knob, reply in zip(wanted, replies, strict=True):
            readings[knob] = self._reading(knob, reply)
        return readings

    def _describe(self, knob: KnobRef) -> str:
        key = self.key_of(knob)
        return f"hash field {knob.field} of key {key}" if knob.field else f"key {key}"

    def _reading(self, knob: KnobRef, reply: object) -> KnobReading:
        where = self._describe(knob)
        if reply is None:
            return KnobUnreadable(f"{where} does not exist", missing=True)
        if isinstance(reply, Exception):
            return KnobUnreadable(f"Redis refused to read {where}: {reply}")
        if not isinstance(reply, bytes | str):
            return KnobUnreadable(f"{where} gave an unexpected reply {reply!r}")
        text = _text(reply)
        if not _DECIMAL.fullmatch(text):
            return KnobUnreadable(f"{where} holds {text[:80]!r}, which is not a number")
        value = float(text)
        if not usable(value):
            return KnobUnreadable(f"{where} holds {text[:80]!r}, which is not a finite number")
        return KnobValue(value)

    def apply(self, decision: Decision) -> Outcome:
        checked = self._check(decision)
        if isinstance(checked, Outcome):
            return checked
        current, final = checked
        try:
            return self._write(decision, current, final)
        except Exception as error:
            return failed_unexpectedly(decision, f"writing {self._describe(decision.knob)}", error)

    def _write(self, decision: Decision, current: float, final: float) -> Outcome:
        knob = decision.knob
        expected = None if decision.from_default else current
        where = self._describe(knob)
        key = self.key_of(knob)
        channel = self._settings.publish_channel or ""
        message = self._notification(decision, key, expected, final) if channel else ""
        args = [
            knob.field,
            "absent" if expected is None else "value",
            "" if expected is None else format_number(expected),
            format_number(final),
            channel,
            message,
        ]
        extra = {"key": key} | ({"field": knob.field} if knob.field else {})
        if channel:
            extra["channel"] = channel

        before = "absent" if expected is None else format_number(expected)
        after = format_number(final)
        attempts_made = 0
        timed_out = False

        def compare_and_set() -> list[object]:
            nonlocal attempts_made, timed_out
            attempts_made += 1
            try:
                return self._compare_and_set(key, args)
            except (RedisTimeoutError, TimeoutError) as error:
                # Sent, and no answer: the server may run it yet (a paused or busy server runs
                # queued commands once it resumes). Only a connection never opened sent nothing.
                timed_out = timed_out or "connecting" not in str(error)
                raise

        try:
            reply = self._with_retries(compare_and_set, self._settings.write_attempts)
        except (RedisError, OSError) as err:
            if timed_out:
                return Outcome(
                    OutcomeStatus.UNCERTAIN,
                    f"no answer from Redis {self._where} within "
                    f"{self._settings.command_timeout:g}s to the write of {where} from {before} "
                    f"to {after} ({err}); it may have taken effect: the cooldown starts as if "
                    "it had, and the next cycle reads the key again before acting",
                    old=expected,
                    new=final,
                    extra=extra | {"uncertain": "true"},
                )
            return Outcome(
                OutcomeStatus.FAILED,
                f"could not write {where} at Redis {self._where}: {err}",
                old=expected,
                extra=extra,
            )
        status = _text(reply[0]) if reply and isinstance(reply[0], bytes | str) else ""
        found = _text(reply[1]) if len(reply) > 1 and isinstance(reply[1], bytes | str) else None
        if status == "written":
            detail = (
                f"set {where} from {before} to {after}"
                if expected is not None
                else f"created {where} with {after} (it was absent; the rule's default "
                f"{format_number(current)} was the starting point)"
            )
            return Outcome(OutcomeStatus.APPLIED, detail, old=expected, new=final, extra=extra)
        if status == "already" and attempts_made > 1:
            # The first attempt's reply was lost after the server had written the value.
            return Outcome(
                OutcomeStatus.APPLIED,
                f"set {where} from {before} to {after} "
                "(confirmed after the connection was re-established)",
                old=expected,
                new=final,
                extra=extra,
            )
        if status in ("already", "conflict", "absent"):
            now = "absent" if found is None else repr(found)
            return Outcome(
                OutcomeStatus.SKIPPED,
                f"{where} changed concurrently from {before} to {now}; "
                "nothing written, the next tick decides again from the new value",
                old=expected,
                extra=extra,
            )
        return Outcome(
            OutcomeStatus.FAILED,
            f"unexpected reply {reply!r} from the compare-and-set of {where}",
            old=expected,
            extra=extra,
        )

    def _compare_and_set(self, key: str, args: Sequence[str]) -> list[object]:
        # EVALSHA first and EVAL when the server does not know the script yet (after a restart);
        # unlike redis-py's Script this needs no SCRIPT LOAD right, only EVAL and EVALSHA.
        try:
            reply = self._client.evalsha(_COMPARE_AND_SET_SHA, 1, key, *args)
        except NoScriptError:
            reply = self._client.eval(_COMPARE_AND_SET, 1, key, *args)
        return list(reply)

    @staticmethod
    def _notification(decision: Decision, key: str, expected: float | None, final: float) -> str:
        note: dict[str, object] = {"key": key}
        if decision.knob.field:
            note["field"] = decision.knob.field
        note.update(old=_json_number(expected), new=_json_number(final), rule=decision.rule)
        return json.dumps(note, sort_keys=True)

    def _check(self, decision: Decision) -> Outcome | tuple[float, float]:
        """The outcome of a decision that must not be written, or its (current, final)."""
        knob = decision.knob
        if not self.handles(knob):
            return Outcome(
                OutcomeStatus.FAILED,
                f"{knob.id} is not a config key; the Redis actuator writes only keys",
            )
        where = self._describe(knob)
        checked = writable(decision, where)
        if isinstance(checked, Outcome):
            return checked
        if decision.dry_run:
            return Outcome(
                OutcomeStatus.DRY_RUN,
                f"dry run: would set {where} from {format_number(checked[0])} "
                f"to {format_number(checked[1])}",
                old=checked[0],
                new=checked[1],
            )
        return checked

    def _with_retries(self, operation: Callable[[], _T], attempts: int) -> _T:
        for attempt in range(1, attempts):
            try:
                return operation()
            except _TRANSIENT_ERRORS:
                time.sleep(self._settings.retry_delay * attempt)
        return operation()
