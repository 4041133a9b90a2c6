"""Read randomization models from REDCap's project XML (CDISC ODM with ``redcap:`` extensions).

REDCap's API export adds one ``<redcap:Randomization .../>`` per model inside
``<redcap:RandomizationGroup>``, ordered by randomization id but without the id itself. Parsed with
defusedxml because the XML comes from a server.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from airflow_provider_redcap.exceptions import RedcapResponseError
from airflow_provider_redcap.models import RandomizationModel, StratumField

MAX_STRATA = 15


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attrs(element: Element) -> dict[str, str]:
    return {_local(key): value for key, value in element.attrib.items()}


def parse_randomization_models(xml_text: str) -> list[RandomizationModel]:
    """Models in document order, ``position`` 1-based; ``[]`` when the project has none.

    :raises RedcapResponseError: the text is not well-formed XML (or uses forbidden XML features).
    """
    try:
        root = ElementTree.fromstring(xml_text)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise RedcapResponseError(f"REDCap's project XML could not be parsed: {exc}") from None
    models: list[RandomizationModel] = []
    for element in root.iter():
        if _local(element.tag) != "Randomization":
            continue
        attrs = _attrs(element)
        target = attrs.get("target_field", "").strip()
        if not target:
            continue
        strata = tuple(
            StratumField(attrs[f"source_field{n}"].strip(), attrs.get(f"source_event{n}", "").strip() or None)
            for n in range(1, MAX_STRATA + 1)
            if attrs.get(f"source_field{n}", "").strip()
        )
        models.append(
            RandomizationModel(
                position=len(models) + 1,
                target_field=target,
                target_event=attrs.get("target_event", "").strip() or None,
                strata=strata,
                group_by_dag=attrs.get("group_by", "").strip().upper() == "DAG",
            )
        )
    return models
