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
