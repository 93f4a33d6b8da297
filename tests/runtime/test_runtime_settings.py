from __future__ import annotations

from pathlib import Path

import pytest

from autotuner.core.model import KnobKind, KnobRef, MetricQuery
from autotuner.core.rules import (
    Action,
    Budget,
    Change,
    ChangeMode,
    Comparison,
    Condition,
    KnobTemplate,
    Rule,
    RuleSet,
    SourceLocation,
    Template,
)
from autotuner.runtime.settings import (
    AllowList,
    AllowListError,
    SettingsError,
    check_ruleset,
    load_settings,
)


def test_defaults_need_nothing() -> None:
    settings = load_settings({}, {})
    assert settings.interval_seconds == 15.0
    assert settings.embedded
    assert not settings.dry_run


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("interval_seconds: 5\nhttp_port: 9000\nlog_level: debug\n")
    settings = load_settings(
        {"interval_seconds": 2.0, "http_port": None},
        {"AUTOTUNER_INTERVAL_SECONDS": "3", "AUTOTUNER_HTTP_PORT": "9100"},
        file,
    )
    assert settings.interval_seconds == 2.0
    assert settings.http_port == 9100
    assert settings.log_level == "DEBUG"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("dry_run: true\n")
    assert load_settings({}, {"AUTOTUNER_CONFIG": str(file)}).dry_run


def test_bad_flag_value_names_flag_and_field() -> None:
    with pytest.raises(SettingsError, match=r"flag --interval-seconds: field interval_seconds"):
        load_settings({"interval_seconds": 0}, {})


def test_bad_environment_value_names_variable() -> None:
    with pytest.raises(SettingsError, match=r"environment variable AUTOTUNER_HTTP_PORT.*http_port"):
        load_settings({}, {"AUTOTUNER_HTTP_PORT": "eighty"})


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"AUTOTUNER_INTERVALL: not a setting"):
        load_settings({}, {"AUTOTUNER_INTERVALL": "5"})


def test_bad_file_value_names_file_line_and_field(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("dry_run: false\nallow:\n  namespaces: [crm]\n  workloads: 3\n")
    with pytest.raises(SettingsError, match=r"s.yaml:4: field allow.workloads"):
        load_settings({}, {}, file)


def test_unknown_file_key_is_reported_with_line(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("interval_seconds: 5\ninterval: 3\n")
    with pytest.raises(SettingsError, match=r"s.yaml:2: field interval: not a setting"):
        load_settings({}, {}, file)


def test_file_that_is_not_yaml(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("a: [1, 2\n")
    with pytest.raises(SettingsError, match=r"not valid YAML"):
        load_settings({}, {}, file)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read it"):
        load_settings({}, {}, tmp_path / "absent.yaml")


def test_secret_refused_in_file_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("redis_password: hunter2\n")
    with pytest.raises(SettingsError, match="secrets are not accepted in the settings file"):
        load_settings({}, {}, file)
    with pytest.raises(SettingsError, match="secrets are not accepted as flags"):
        load_settings({"prometheus_token": "abc"}, {})


def test_secrets_from_environment_and_files_never_show(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token\n")
    settings = load_settings(
        {"prometheus_token_file": str(token_file)},
        {
            "AUTOTUNER_REDIS_PASSWORD": "hunter2",
            "AUTOTUNER_DATABASE_URL": "postgresql://app:dbpass@db/audit",
            "AUTOTUNER_REDIS_URL": "redis://:urlpass@cache:6379/0",
        },
    )
    assert settings.prometheus_token_file == token_file
    assert "s3cr3t-token" in settings.secret_values()
    assert "dbpass" in settings.secret_values()
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "hunter2"
    shown = repr(settings) + str(settings) + str(settings.redacted())
    for secret in ("s3cr3t-token", "hunter2", "dbpass", "urlpass"):
        assert secret not in shown
    assert settings.redacted()["database_url"] == "postgresql://app:***@db/audit"


def test_the_database_url_comes_from_a_file_and_never_shows(tmp_path: Path) -> None:
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://app:dbpass@db/audit\n")
    for flags, environ in (
        ({"database_url_file": str(url_file)}, {}),
        # Also over a URL from the environment, as the image sets a default one.
        ({}, {"AUTOTUNER_DATABASE_URL_FILE": str(url_file), "AUTOTUNER_DATABASE_URL": "sqlite://"}),
    ):
        settings = load_settings(flags, environ)
        assert settings.database_url.get_secret_value() == "postgresql://app:dbpass@db/audit"
        assert "dbpass" in settings.secret_values()
        shown = repr(settings) + str(settings) + str(settings.redacted())
        assert "dbpass" not in shown
    with pytest.raises(SettingsError, match=r"AUTOTUNER_DATABASE_URL_FILE.*cannot read"):
        load_settings({}, {"AUTOTUNER_DATABASE_URL_FILE": str(tmp_path / "absent")})


def test_the_audit_commands_read_the_database_url_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from autotuner.cli.main import main

    url_file = tmp_path / "database-url"
    url_file.write_text(f"sqlite:///{tmp_path / 'audit.sqlite'}\n")
    monkeypatch.setenv("AUTOTUNER_DATABASE_URL_FILE", str(url_file))
    monkeypatch.delenv("AUTOTUNER_DATABASE_URL", raising=False)
    main(["history"])
    # The file's database (absent here) is the one looked for, not the default.
    assert str(tmp_path / "audit.sqlite") in capsys.readouterr().err


def test_empty_or_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match=r"AUTOTUNER_REDIS_PASSWORD_FILE.*is empty"):
        load_settings({}, {"AUTOTUNER_REDIS_PASSWORD_FILE": str(empty)})
    with pytest.raises(SettingsError, match=r"flag --prometheus-token-file.*cannot read"):
        load_settings({"prometheus_token_file": str(tmp_path / "absent")}, {})


def test_a_secret_given_twice_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text("one")
    with pytest.raises(SettingsError, match=r"given both directly and as redis_password_file"):
        load_settings({"redis_password_file": str(file)}, {"AUTOTUNER_REDIS_PASSWORD": "two"})


def test_allow_list_from_environment_and_flags() -> None:
    settings = load_settings(
        {"allow_workloads": ["api", "ml-*"]},
        {"AUTOTUNER_ALLOW_NAMESPACES": "crm, ops", "AUTOTUNER_ALLOW_KEY_PREFIXES": "crm:"},
    )
    assert settings.allow == AllowList(
        namespaces=("crm", "ops"), workloads=("api", "ml-*"), key_prefixes=("crm:",)
    )


ALLOW = AllowList(namespaces=("crm",), workloads=("api", "ml-*"), key_prefixes=("crm:",))


@pytest.mark.parametrize(
    ("knob", "allowed"),
    [
        (KnobRef(KnobKind.DEPLOYMENT, "api", "crm"), True),
        (KnobRef(KnobKind.DEPLOYMENT, "ml-worker", "crm"), True),
        (KnobRef(KnobKind.STATEFULSET, "api", "kube-system"), False),
        (KnobRef(KnobKind.DEPLOYMENT, "billing", "crm"), False),
        (KnobRef(KnobKind.CONFIG_KEY, "crm:cache:ttl:users"), True),
        (KnobRef(KnobKind.CONFIG_KEY, "billing:ttl"), False),
    ],
)
def test_allow_list_decides_each_knob(knob: KnobRef, allowed: bool) -> None:
    assert ALLOW.permits(knob) is allowed
    refusal = ALLOW.refusal(knob)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert knob.id in refusal


def test_empty_allow_list_allows_nothing_and_says_how_to_fix() -> None:
    refusal = AllowList().refusal(KnobRef(KnobKind.CONFIG_KEY, "crm:x"))
    assert refusal is not None
    assert "AUTOTUNER_ALLOW_" in refusal


def _rule(name: str, knob: KnobTemplate, line: int = 1) -> Rule:
    return Rule(
        name=name,
        metric="m",
        condition=Condition(Comparison.ABOVE, 1.0, 1.0),
        action=Action(knob=knob, change=Change(ChangeMode.FACTOR, 1.5), minimum=1, maximum=10),
        location=SourceLocation("rules/x.yaml", line),
    )


def _static(kind: KnobKind, name: str, namespace: str = "") -> KnobTemplate:
    return KnobTemplate(kind, Template.parse(name), Template.parse(namespace))


def _ruleset(*rules: Rule, budgets: tuple[Budget, ...] = ()) -> RuleSet:
    return RuleSet(metrics=(MetricQuery("m", "up"),), rules=rules, budgets=budgets)


def test_ruleset_inside_allow_list_passes() -> None:
    check_ruleset(
        _ruleset(
            _rule("scale", _static(KnobKind.DEPLOYMENT, "api", "crm")),
            _rule("ttl", _static(KnobKind.CONFIG_KEY, "crm:cache:ttl:{{ labels.cache }}")),
            _rule("ns", _static(KnobKind.DEPLOYMENT, "ml-{{ labels.d }}", "{{ labels.ns }}")),
        ),
        ALLOW,
    )


def test_ruleset_reaching_outside_is_rejected_with_every_violation() -> None:
    with pytest.raises(AllowListError) as caught:
        check_ruleset(
            _ruleset(
                _rule("good", _static(KnobKind.DEPLOYMENT, "api", "crm"), line=1),
                _rule("other-ns", _static(KnobKind.DEPLOYMENT, "api", "payments"), line=10),
                _rule("other-key", _static(KnobKind.CONFIG_KEY, "pay:{{ labels.c }}"), line=20),
            ),
            ALLOW,
        )
    text = str(caught.value)
    assert "rules/x.yaml:10: rule 'other-ns'" in text
    assert "rules/x.yaml:20: rule 'other-key'" in text
    assert "'good'" not in text
    assert len(caught.value.violations) == 2


def test_budget_knobs_are_checked() -> None:
    budget = Budget(
        "connections",
        100,
        ((KnobRef(KnobKind.CONFIG_KEY, "other:pool"), KnobRef(KnobKind.DEPLOYMENT, "api", "crm")),),
    )
    with pytest.raises(AllowListError, match="budget 'connections'"):
        check_ruleset(_ruleset(budgets=(budget,)), ALLOW)


def test_templated_key_is_checked_again_when_rendered() -> None:
    template = _static(KnobKind.CONFIG_KEY, "{{ labels.prefix }}:ttl")
    assert ALLOW.template_refusal(template) is None
    assert ALLOW.permits(template.render({"prefix": "crm"}))
    assert not ALLOW.permits(template.render({"prefix": "billing"}))


# ---- connection options -------------------------------------------------------------------


def test_extra_headers_from_file_environment_and_flag(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("prometheus_extra_headers:\n  X-Scope-OrgID: 42\n  X-Team: crm\n")
    assert load_settings({}, {}, file).prometheus_extra_headers == (
        ("X-Scope-OrgID", "42"),
        ("X-Team", "crm"),
    )
    from_env = load_settings(
        {}, {"AUTOTUNER_PROMETHEUS_EXTRA_HEADERS": "X-Scope-OrgID=a|b, X-Team = crm"}
    )
    assert from_env.prometheus_extra_headers == (("X-Scope-OrgID", "a|b"), ("X-Team", "crm"))
    from_flag = load_settings({"prometheus_extra_headers": "X-Scope-OrgID=tenant-a"}, {}, file)
    assert from_flag.prometheus_extra_headers == (("X-Scope-OrgID", "tenant-a"),)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("X-Scope-OrgID", r"expected NAME=VALUE pairs"),
        ("Bad Name=x", r"'Bad Name' is not a valid HTTP header name"),
        ("Authorization=Bearer abc", r"header 'Authorization' carries credentials.*TOKEN_FILE"),
        ("X-A=1,x-a=2", r"header 'x-a' is given twice"),
    ],
)
def test_bad_extra_headers_name_the_variable(given: str, problem: str) -> None:
    with pytest.raises(
        SettingsError,
        match=r"environment variable AUTOTUNER_PROMETHEUS_EXTRA_HEADERS: "
        r"field prometheus_extra_headers: " + problem,
    ):
        load_settings({}, {"AUTOTUNER_PROMETHEUS_EXTRA_HEADERS": given})


def test_extra_header_that_is_not_text_names_file_line(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("dry_run: true\nprometheus_extra_headers:\n  X-Scope-OrgID: [a]\n")
    with pytest.raises(SettingsError, match=r"s.yaml:2: field prometheus_extra_headers: .*quote"):
        load_settings({}, {}, file)


def test_connection_option_defaults() -> None:
    settings = load_settings({}, {})
    assert settings.prometheus_verify_tls
    assert settings.prometheus_max_concurrency == 4
    assert settings.prometheus_extra_headers == ()
    assert settings.redis_key_prefix == ""
    assert settings.redis_publish_channel is None
    assert settings.redis_write_attempts == 3


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AUTOTUNER_PROMETHEUS_MAX_CONCURRENCY", "11", r"less than or equal to 10"),
        ("AUTOTUNER_PROMETHEUS_MAX_CONCURRENCY", "0", r"greater than or equal to 1"),
        ("AUTOTUNER_PROMETHEUS_VERIFY_TLS", "maybe", r"valid boolean"),
        ("AUTOTUNER_PROMETHEUS_TIMEOUT_SECONDS", "inf", r"finite number"),
        ("AUTOTUNER_REDIS_CONNECT_TIMEOUT_SECONDS", "0", r"greater than 0"),
        ("AUTOTUNER_REDIS_COMMAND_TIMEOUT_SECONDS", "nan", r"finite number"),
        ("AUTOTUNER_REDIS_WRITE_ATTEMPTS", "0", r"greater than or equal to 1"),
        ("AUTOTUNER_REDIS_URL", "http://cache:6379", r"expected redis://"),
        ("AUTOTUNER_PROMETHEUS_URL", "prometheus:9090", r"expected http\(s\)://"),
        ("AUTOTUNER_PROMETHEUS_URL", "http://u:pw@prometheus:9090", r"credentials in the URL"),
        ("AUTOTUNER_PROMETHEUS_URL", "http://prometheus:9090/?org=a", r"query string"),
        ("AUTOTUNER_PROMETHEUS_CA_BUNDLE", "/nonexistent/ca.pem", r"cannot read CA file"),
        ("AUTOTUNER_REDIS_CA_FILE", "/", r"cannot read CA file /: Is a directory"),
    ],
)
def test_bad_connection_option_names_variable_and_field(
    variable: str, value: str, problem: str
) -> None:
    field_name = variable.removeprefix("AUTOTUNER_").lower()
    with pytest.raises(
        SettingsError, match=rf"environment variable {variable}: field {field_name}: .*{problem}"
    ):
        load_settings({}, {variable: value})


def test_options_wrong_together_name_every_source(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    file = tmp_path / "s.yaml"
    file.write_text(f"prometheus_ca_bundle: {ca}\n")
    with pytest.raises(
        SettingsError,
        match=r"s.yaml:1 \(field prometheus_ca_bundle\) and environment variable "
        r"AUTOTUNER_PROMETHEUS_VERIFY_TLS \(field prometheus_verify_tls\): a CA bundle is used "
        r"only when TLS is verified",
    ):
        load_settings({}, {"AUTOTUNER_PROMETHEUS_VERIFY_TLS": "false"}, file)
    with pytest.raises(
        SettingsError,
        match=r"flag --redis-ca-file \(field redis_ca_file\): a Redis CA file is used only with TLS",
    ):
        load_settings({"redis_ca_file": str(ca)}, {})
    assert load_settings({"redis_ca_file": str(ca), "redis_url": "rediss://cache:6380/0"}, {})


def test_basic_auth_needs_user_and_password_and_excludes_a_token(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError,
        match=r"flag --prometheus-basic-auth-username \(field prometheus_basic_auth_username\): "
        r"basic auth needs both",
    ):
        load_settings({"prometheus_basic_auth_username": "me"}, {})
    with pytest.raises(SettingsError, match=r"PROMETHEUS_BASIC_AUTH_PASSWORD.*basic auth needs"):
        load_settings({}, {"AUTOTUNER_PROMETHEUS_BASIC_AUTH_PASSWORD": "pw"})
    with pytest.raises(SettingsError, match=r"either a Prometheus bearer token or basic auth"):
        load_settings(
            {"prometheus_basic_auth_username": "me"},
            {
                "AUTOTUNER_PROMETHEUS_BASIC_AUTH_PASSWORD": "pw",
                "AUTOTUNER_PROMETHEUS_TOKEN": "t",
            },
        )


def test_redis_user_plain_or_from_a_file_not_both(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.write_text("autotuner\n")
    assert load_settings({"redis_username": "autotuner"}, {}).redis_username == "autotuner"
    assert load_settings({"redis_username_file": str(user)}, {}).redis_username_file == user
    with pytest.raises(SettingsError, match=r"ACL user is given both directly and as a file"):
        load_settings({"redis_username_file": str(user)}, {"AUTOTUNER_REDIS_USERNAME": "x"})
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(SettingsError, match=r"--redis-username-file: .*is empty"):
        load_settings({"redis_username_file": str(empty)}, {})


def test_basic_auth_password_is_a_secret(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("prometheus_basic_auth_password: hunter2\n")
    with pytest.raises(SettingsError, match="secrets are not accepted in the settings file"):
        load_settings({}, {}, file)
    with pytest.raises(SettingsError, match="--prometheus-basic-auth-password-file"):
        load_settings({"prometheus_basic_auth_password": "hunter2"}, {})


def test_new_secrets_and_header_values_never_show(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("file-pa55\n")
    from_file = load_settings(
        {
            "prometheus_url": "http://prometheus:9090",
            "prometheus_basic_auth_username": "me",
            "prometheus_basic_auth_password_file": str(password_file),
        },
        {"AUTOTUNER_PROMETHEUS_EXTRA_HEADERS": "X-Api-Key=k3y-value"},
    )
    from_env = load_settings(
        {"prometheus_url": "http://prometheus:9090", "prometheus_basic_auth_username": "me"},
        {"AUTOTUNER_PROMETHEUS_BASIC_AUTH_PASSWORD": "env-pa55"},
    )
    assert "file-pa55" in from_file.secret_values()
    assert "env-pa55" in from_env.secret_values()
    for settings in (from_file, from_env):
        shown = repr(settings) + str(settings) + str(settings.redacted())
        for secret in ("file-pa55", "env-pa55", "k3y-value"):
            assert secret not in shown
    assert from_file.redacted()["prometheus_extra_headers"] == {"X-Api-Key": "***"}
    assert from_env.redacted()["prometheus_basic_auth_password"] == "***"
