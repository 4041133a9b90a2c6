"""Provider metadata for Airflow's providers manager.

Airflow 3.2+ builds the connection form from ``ui-field-behaviour`` and ``conn-fields`` here (3.3
reads nothing else); Airflow 3.1 calls :meth:`RedcapHook.get_ui_field_behaviour`, which returns the
same values in snake_case. This module must stay cheap to import: it never imports the hook.
"""

from __future__ import annotations

from typing import Any

_INTEGRATION = "REDCap"


def _modules(*names: str) -> list[dict[str, Any]]:
    return [{"integration-name": _INTEGRATION, "python-modules": list(names)}]


def provider_info() -> dict[str, Any]:
    """The dict returned by ``get_provider_info()`` (entry point ``apache_airflow_provider``)."""
    from airflow_provider_redcap import __version__

    return {
        "package-name": "airflow-provider-redcap",
        "name": "REDCap",
        "description": (
            "`REDCap <https://projectredcap.org/>`__: import records, wait for stratification data "
            "and randomize participants through REDCap's API."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://projectredcap.org/",
                "tags": ["service"],
            }
        ],
        "hooks": _modules("airflow_provider_redcap.hooks.redcap"),
        "operators": _modules(
            "airflow_provider_redcap.operators.import_records",
            "airflow_provider_redcap.operators.randomize",
        ),
        "sensors": _modules("airflow_provider_redcap.sensors.stratification"),
        "triggers": _modules("airflow_provider_redcap.triggers.stratification"),
        "extra-links": ["airflow_provider_redcap.links.redcap.RedcapRecordLink"],
        "connection-types": [
            {
                "connection-type": "redcap",
                "hook-class-name": "airflow_provider_redcap.hooks.redcap.RedcapHook",
                "hook-name": "REDCap",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "port", "schema"],
                    "relabeling": {"host": "REDCap API URL", "password": "API Token"},
                    "placeholders": {
                        "host": "https://redcap.example.org/api/",
                        "password": "32-character REDCap API token",
                    },
                },
                "conn-fields": _CONN_FIELDS,
            }
        ],
    }


_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "verify_ssl": {
        "label": "Verify TLS certificate",
        "description": "Check the server's TLS certificate. Turn off only for a test server.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Path of a PEM CA bundle on the workers, for servers signed by a private CA.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Seconds to wait for REDCap to connect and to answer one request.",
        "schema": {"type": ["number", "null"], "default": 30, "exclusiveMinimum": 0},
    },
    "max_retries": {
        "label": "Max retries",
        "description": (
            "Retries after connection errors, timeouts and HTTP 408/500/502/503/504. Never used for "
            "HTTP 429, and never once a randomization may have reached the server."
        ),
        "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0, "maximum": 10},
    },
    "requests_per_minute": {
        "label": "Requests per minute",
        "description": (
            "Client-side limit per hook. REDCap permanently bans an IP that sends 600 requests in a minute."
        ),
        "schema": {"type": ["integer", "null"], "default": 300, "minimum": 1, "maximum": 599},
    },
    "proxies": {
        "label": "Proxies",
        "description": 'Proxy map for requests, e.g. {"https": "http://proxy.example.org:3128"}.',
        "schema": {"type": ["object", "null"]},
    },
}
