"""Licences for the firewall: a distribution's SPDX expression from its core metadata (License-Expression,
else a License field that is one, else its classifiers), and whether a policy's lists accept it.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.metadata import parse_email

InvalidLicense = InvalidLicenseExpression

# Classifiers that name one SPDX licence; an ambiguous one ("BSD License", "GPLv3") names none.
CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "License :: OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def canonical(expression: str) -> str:
    return canonicalize_license_expression(expression)


def of_metadata(raw: bytes) -> str:
    """The SPDX expression core metadata declares, canonical; empty when it declares none that can be read."""
    fields, _unparsed = parse_email(raw)
    for text in (fields.get("license_expression"), fields.get("license")):
        if text and len(text) < 1000:
            try:
                return canonical(text)
            except InvalidLicense:
                continue
    named = sorted({CLASSIFIERS[c] for c in fields.get("classifiers") or () if c in CLASSIFIERS})
    # Several licence classifiers mean the user may choose among them, as PyPI reads them.
    return " OR ".join(named)


def acceptable(expression: str, allow: Collection[str], deny: Collection[str]) -> bool:
    """Whether some choice the expression offers uses only licences the lists accept: an identifier (or
    `id WITH exception`) is accepted unless denied, and, with an allow list, only if allowed."""
    def ok(licence: str, base: str) -> bool:
        if licence in deny or base in deny:
            return False
        return not allow or licence in allow or base in allow

    tokens = _TOKEN.findall(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def term() -> bool:
        if peek() == "(":
            take()
            value = either()
            take()  # ")", as canonical() checked
            return value
        licence = take()
        if peek() == "WITH":
            take()
            return ok(f"{licence} WITH {take()}", licence)
        return ok(licence, licence)

    def both() -> bool:
        value = term()
        while peek() == "AND":
            take()
            value = term() and value
        return value

    def either() -> bool:
        value = both()
        while peek() == "OR":
            take()
            value = both() or value
        return value

    return either()
