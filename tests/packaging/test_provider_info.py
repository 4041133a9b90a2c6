"""Provider registration: schema validity, form parity with the hook, discovery by Airflow."""

from __future__ import annotations

import json
from importlib import metadata, resources
from typing import Any

import jsonschema
import pytest

from airflow_provider_redcap import get_provider_info

DIST = "airflow-provider-redcap"


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return get_provider_info()


def test_validates_against_airflows_schema(info: dict[str, Any]) -> None:
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)


def test_package_name_is_the_canonical_distribution_name(info: dict[str, Any]) -> None:
    assert info["package-name"] == DIST
    assert metadata.distribution(DIST).metadata["Name"] == DIST


def test_entry_point_points_at_get_provider_info() -> None:
    (entry_point,) = [
        ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.dist.name == DIST
    ]
    assert entry_point.load() is get_provider_info


def test_version_comes_from_the_package(info: dict[str, Any]) -> None:
    assert info["versions"] == [metadata.version(DIST)]


def test_connection_type(info: dict[str, Any]) -> None:
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "redcap"
    assert conn["hook-class-name"] == "airflow_provider_redcap.hooks.redcap.RedcapHook"
    assert conn["hook-name"] == "REDCap"
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"login", "port", "schema"}
    assert behaviour["relabeling"] == {"host": "REDCap API URL", "password": "API Token"}
    assert behaviour["placeholders"]["host"] == "https://redcap.example.org/api/"


def test_conn_fields(info: dict[str, Any]) -> None:
    fields = info["connection-types"][0]["conn-fields"]
    assert {"verify_ssl", "ca_bundle", "timeout", "max_retries", "requests_per_minute", "proxies"} <= set(
        fields
    )
    assert fields["verify_ssl"]["schema"]["default"] is True
    assert fields["requests_per_minute"]["schema"]["default"] == 300
    assert fields["requests_per_minute"]["schema"]["maximum"] < 600  # REDCap's ban threshold
    for name, field in fields.items():
        assert field["label"], name
        jsonschema.Draft7Validator.check_schema(field["schema"])


def test_conn_field_defaults_match_the_hook_defaults(info: dict[str, Any]) -> None:
    from airflow_provider_redcap.hooks import _connection

    fields = info["connection-types"][0]["conn-fields"]
    assert fields["timeout"]["schema"]["default"] == _connection.DEFAULT_TIMEOUT
    assert fields["max_retries"]["schema"]["default"] == _connection.DEFAULT_MAX_RETRIES
    assert fields["requests_per_minute"]["schema"]["default"] == _connection.DEFAULT_REQUESTS_PER_MINUTE
    assert set(fields) <= _connection.KNOWN_EXTRAS


def test_ui_field_behaviour_equals_the_hook_declaration(info: dict[str, Any]) -> None:
    from airflow_provider_redcap.hooks.redcap import RedcapHook

    declared = info["connection-types"][0]["ui-field-behaviour"]
    converted = {key.replace("-", "_"): value for key, value in declared.items()}
    assert converted == RedcapHook.get_ui_field_behaviour()


def test_declared_module_paths_are_well_formed(info: dict[str, Any]) -> None:
    for key in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[key]:
            assert entry["integration-name"] == "REDCap"
            for module in entry["python-modules"]:
                assert module.startswith(f"airflow_provider_redcap.{key}.")
    assert "airflow_provider_redcap.hooks.redcap" in info["hooks"][0]["python-modules"]


def test_providers_manager_discovers_the_package() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert DIST in manager.providers
    assert manager.providers[DIST].version == metadata.version(DIST)

    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    # Workers resolve conn_type -> hook through the task runtime's manager (ProvidersManager.hooks is
    # deprecated in 3.3 and forwards there).
    hook_info = ProvidersManagerTaskRuntime().hooks["redcap"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_redcap.hooks.redcap.RedcapHook"
    assert hook_info.connection_id_attribute_name == "redcap_conn_id"
    assert hook_info.package_name == DIST


def test_providers_manager_reads_the_declared_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviours = manager.field_behaviours
    assert behaviours["redcap"]["relabeling"]["host"] == "REDCap API URL"
    widgets = manager.connection_form_widgets
    assert "extra__redcap__verify_ssl" in widgets
    assert "extra__redcap__requests_per_minute" in widgets


def test_connection_get_hook_builds_a_redcap_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow's "Test connection" path: hook_class(**{conn_name_attr: conn_id}).test_connection().
    from airflow.sdk import Connection

    from airflow_provider_redcap.hooks.redcap import RedcapHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_REDCAP_PACKAGING",
        json.dumps({"conn_type": "redcap", "host": "https://redcap.example.org/api/", "password": "x" * 32}),
    )
    hook = Connection.get("redcap_packaging").get_hook()
    assert isinstance(hook, RedcapHook)
    assert hook.redcap_conn_id == "redcap_packaging"
