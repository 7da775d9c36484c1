"""Settings are read by explicit names: exactly the README's configuration table, nothing guessed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from purgewarden.config import ENVIRONMENT, ConfigError, Settings

README = Path(__file__).resolve().parents[2] / "README.md"
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def documented_variables() -> set[str]:
    """The names in the first column of the README's "Configuration (environment)" table."""
    text = README.read_text()
    section = text[text.index("### Configuration (environment)") :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append(line.split("|")[1])
    return {name for cell in rows[1:] for name in VARIABLE.findall(cell)}


def test_every_variable_read_is_documented_and_every_documented_one_is_read() -> None:
    documented = documented_variables()
    assert documented, "the README's configuration table was not found"
    assert not ENVIRONMENT.keys() - documented, "read but not in the README's table"
    assert not documented - ENVIRONMENT.keys(), "in the README's table but never read"


def test_every_variable_sets_its_own_setting() -> None:
    assert set(ENVIRONMENT.values()) <= Settings.model_fields.keys()
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT), "two variables set the same setting"


def test_vendor_settings_keep_the_vendors_names_and_ours_are_prefixed() -> None:
    vendors = {name for name in ENVIRONMENT if not name.startswith("PURGEWARDEN_")}
    assert vendors == {
        "KATAPULT_API_TOKEN",
        "KATAPULT_API_URL",
        "PVAULT_API_KEY",
        "PVAULT_URL",
        "PVAULT_MAX_PAGE_SIZE",
        "COCOON_ACCESS_TOKEN",
        "COCOON_ACCESS_SERVICE_URL",
        "COCOON_ORGANISATION_ID",
    }


def test_the_prefixed_page_concurrency_is_read_and_a_guessed_name_is_not() -> None:
    assert Settings.from_env({"PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY": "3"}).katapult_page_concurrency == 3
    default = Settings().katapult_page_concurrency
    assert Settings.from_env({"KATAPULT_PAGE_CONCURRENCY": "3"}).katapult_page_concurrency == default
    assert Settings.from_env({"KATAPULT_TASK_POLL_INTERVAL": "9"}) == Settings.from_env({})


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("PURGEWARDEN_TYPED_CONFIRMATION_OVER", "50", "typed_confirmation_over", 50),
        ("PURGEWARDEN_MAX_ITEMS", "5000", "max_items", 5000),
        ("PURGEWARDEN_WATCH_INTERVAL", "0.25", "watch_interval", 0.25),
        ("PURGEWARDEN_HTTP_TIMEOUT", "60", "http_timeout", 60.0),
        ("PURGEWARDEN_TOOLSETS", "cocoon, vault", "toolsets", ("vault", "cocoon")),
        ("PURGEWARDEN_ALLOWED_HOSTS", "a.example, b.example,", "allowed_hosts", ("a.example", "b.example")),
        ("PURGEWARDEN_READ_ONLY", "true", "read_only", True),
    ],
)
def test_variables_are_parsed_into_their_settings(
    variable: str, value: str, field: str, expected: object
) -> None:
    assert getattr(Settings.from_env({variable: value}), field) == expected


def test_unset_and_empty_variables_leave_the_defaults() -> None:
    assert Settings.from_env({}).max_items is None
    assert Settings.from_env({"PURGEWARDEN_MAX_ITEMS": "", "KATAPULT_API_TOKEN": ""}) == Settings.from_env({})


def test_flags_override_the_environment() -> None:
    settings = Settings.from_env({"PURGEWARDEN_READ_ONLY": "false"}, read_only=True, require_human=None)
    assert settings.read_only is True
    assert settings.require_human is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY", "many"),
        ("PURGEWARDEN_KATAPULT_PAGE_CONCURRENCY", "0"),
        ("PURGEWARDEN_MAX_ITEMS", "-1"),
        ("PURGEWARDEN_READ_ONLY", "perhaps"),
        ("PURGEWARDEN_TOOLSETS", "katapult,s3"),
        ("PVAULT_MAX_PAGE_SIZE", "100000"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: .*{re.escape(repr(value))}"):
        Settings.from_env({variable: value})


def test_a_bad_flag_names_its_setting() -> None:
    with pytest.raises(ConfigError, match=r"^setting max_items: "):
        Settings.from_env({}, max_items=-5)
