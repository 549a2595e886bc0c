"""Hardened XML loading for designer-supplied BPMN and DMN files.

Definitions are untrusted: no DTD, no entities, no network access, bounded size and depth.
lxml's defaults are safe in recent versions; the explicit parser keeps them safe on every
version we may be installed with.
"""
from __future__ import annotations

from lxml import etree

__all__ = ["DefinitionError", "MAX_DEFINITION_BYTES", "MAX_DEPTH", "load_xml"]

MAX_DEFINITION_BYTES = 1024 * 1024  # 1 MiB per BPMN/DMN file
MAX_DEPTH = 64


class DefinitionError(ValueError):
    """A definition file was refused. `problems` lists (element id or None, message)."""

    def __init__(self, source: str, problems: list[tuple[str | None, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {('element ' + repr(el) + ': ') if el else ''}{msg}" for el, msg in problems]
        super().__init__("; ".join(lines))


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        dtd_validation=False,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def load_xml(raw: bytes | str, source: str) -> etree._Element:
    """Parse definition XML, refusing oversize files, DTDs and entity declarations."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_DEFINITION_BYTES:
        raise DefinitionError(source, [(None, f"file is {len(data)} bytes; the limit is {MAX_DEFINITION_BYTES}")])
    head = data[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise DefinitionError(source, [(None, "DTDs and entity declarations are not allowed")])
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise DefinitionError(source, [(None, f"not well-formed XML: {exc}")]) from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise DefinitionError(source, [(None, "DTDs and entity declarations are not allowed")])
    for el in root.iter():
        if isinstance(el, etree._Entity):
            raise DefinitionError(source, [(None, "entity references are not allowed")])
    if _depth(root) > MAX_DEPTH:
        raise DefinitionError(source, [(None, f"XML nesting deeper than {MAX_DEPTH}")])
    return root


def _depth(root: etree._Element) -> int:
    deepest = 0
    stack = [(root, 1)]
    while stack:
        el, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, d + 1) for child in el)
    return deepest
