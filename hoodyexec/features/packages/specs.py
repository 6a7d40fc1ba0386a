"""Package specs and distributions: what a client may ask for, and what is there.

Specs are PEP 508 requirements parsed by ``packaging``; nothing else reaches an
installer (no options, no URLs unless allowed, never a shell). Two spellings
from the reference are translated first: ``name@1.2.3`` (npm's exact version)
and, in ``{name: specifier}`` objects, ``"*"``/``""`` (any version), a bare
version (exact) and npm's ``^``/``~`` ranges.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from hoodyexec.errors import BadRequest

MAX_SPECS = 100
MAX_SPEC_LENGTH = 500

# npm's exact spelling, name@1.2.3 (a PEP 508 "name @ URL" has a scheme).
_NPM_EXACT = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)@(?P<version>\d[A-Za-z0-9.+!-]*)")
_NPM_LATEST = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)@(?:latest|\*)")


@dataclass(frozen=True)
class Spec:
    """One requested package: as the client wrote it, and as a requirement."""

    given: str
    requirement: Requirement

    @property
    def name(self) -> str:
        """The canonical (PEP 503) name: ``PyYAML`` → ``pyyaml``."""
        return canonicalize_name(self.requirement.name)

    @property
    def text(self) -> str:
        return str(self.requirement)

    def accepts(self, version: str) -> bool:
        return self.requirement.specifier.contains(version, prereleases=True)


def parse(given: str, *, allow_urls: bool = False) -> Spec:
    """A spec as the client sent it → ``Spec``; anything else is a 400 naming it."""
    if not isinstance(given, str):
        raise BadRequest(f"a package spec must be a string, not {type(given).__name__}")
    text = given.strip()
    if not text:
        raise BadRequest("empty package spec")
    if len(text) > MAX_SPEC_LENGTH:
        raise BadRequest(f"package spec longer than {MAX_SPEC_LENGTH} characters", spec=text[:80])
    if text.startswith("-"):
        raise BadRequest(
            f"'{text}' is an installer option, not a package; options are not accepted",
            spec=given,
        )
    if m := _NPM_EXACT.fullmatch(text):
        text = f"{m['name']}=={m['version']}"
    elif m := _NPM_LATEST.fullmatch(text):
        text = m["name"]
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise BadRequest(
            f"'{given}' is not a package requirement (PEP 508): {str(exc).splitlines()[0]}",
            spec=given,
        ) from None
    if req.url and not allow_urls:
        raise BadRequest(
            f"'{given}' installs from a URL; URL requirements are off (setting packages-allow-urls)",
            spec=given,
        )
    return Spec(given, req)


def parse_many(given: str | Iterable[object], *, allow_urls: bool = False) -> list[Spec]:
    """One spec or a list of them (strings, or ``{name: specifier}`` objects)."""
    items: list[object] = [given] if isinstance(given, str) else list(given)
    specs: list[Spec] = []
    for item in items:
        if isinstance(item, Mapping):
            specs.extend(from_mapping(item, allow_urls=allow_urls))
        else:
            specs.append(parse(item, allow_urls=allow_urls))  # type: ignore[arg-type]
    if len(specs) > MAX_SPECS:
        raise BadRequest(f"at most {MAX_SPECS} packages per call")
    seen: dict[str, Spec] = {}
    for spec in specs:
        if spec.name in seen and seen[spec.name].text != spec.text:
            raise BadRequest(
                f"'{spec.requirement.name}' is asked for twice: "
                f"'{seen[spec.name].given}' and '{spec.given}'"
            )
        seen[spec.name] = spec
    return list(seen.values())


def from_mapping(deps: Mapping[Any, Any], *, allow_urls: bool = False) -> list[Spec]:
    """``{"humanize": ">=4", "rich": "*", "attrs": "23.2.0", "click": "^8.1"}`` → specs."""
    out = []
    for name, specifier in deps.items():
        if not isinstance(name, str) or not isinstance(specifier, str):
            raise BadRequest("dependencies maps package names to specifier strings")
        spec = parse(name + _specifier(name, specifier.strip()), allow_urls=allow_urls)
        if canonicalize_name(spec.requirement.name) != canonicalize_name(name.split("[")[0]):
            raise BadRequest(f"'{name}' is not a package name", spec=name)
        out.append(spec)
    return out


def _specifier(name: str, spec: str) -> str:
    if spec in ("", "*", "latest"):
        return ""
    if spec[0] in "^~" and spec[1:2] != "=":
        try:
            low = Version(spec[1:])
        except InvalidVersion:
            raise BadRequest(f"'{name}': '{spec}' is not a version range", spec=spec) from None
        x, y, z = (*low.release, 0, 0, 0)[:3]
        if spec[0] == "~":  # npm: ~1.2.3 and ~1.2 stay below 1.3; ~1 below 2
            high = f"{x}.{y + 1}" if len(low.release) > 1 else f"{x + 1}"
        else:  # npm: ^ keeps the leftmost non-zero part
            high = f"{x + 1}" if x else f"0.{y + 1}" if y else f"0.0.{z + 1}"
        return f">={low},<{high}"
    if spec[0].isdigit():
        return f"=={spec}"
    return spec


# -- what is installed ------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    name: str  # as its metadata spells it
    version: str
    requires: tuple[str, ...]

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


def distributions(paths: Iterable[str]) -> dict[str, Dist]:
    """Canonical name → distribution, the first found on ``paths`` winning (as imports do)."""
    out: dict[str, Dist] = {}
    for dist in importlib.metadata.distributions(path=list(paths)):
        name = dist.metadata["Name"]
        if not name:
            continue
        found = Dist(name, dist.version, tuple(dist.requires or ()))
        out.setdefault(found.key, found)
    return out


def kit_paths(exclude: str) -> list[str]:
    """The kit's own environment on ``sys.path``: everything but the kit-local packages."""
    root = os.path.realpath(exclude)
    return [
        p
        for p in sys.path
        if p and os.path.realpath(p) != root and not os.path.realpath(p).startswith(root + os.sep)
    ]


def kit_distributions(exclude: str) -> dict[str, Dist]:
    """What the kit's own environment holds. Each shadows a kit-local copy (it comes
    first on the path), so every one of them is protected, not only the kit's own
    dependencies."""
    return distributions(kit_paths(exclude))


def runtime_closure(kit: Mapping[str, Dist], top: str = "hoodyexec") -> list[Dist]:
    """``top`` and what it needs to run (no extras), as installed."""
    seen: dict[str, Dist] = {}
    todo = [canonicalize_name(top)]
    while todo:
        key = todo.pop()
        dist = kit.get(key)
        if dist is None or key in seen:
            continue
        seen[key] = dist
        for line in dist.requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return sorted(seen.values(), key=lambda d: d.key)


def conflicts(dist: Dist, kit: Mapping[str, Dist]) -> list[tuple[str, str, str]]:
    """Requirements of ``dist`` that the kit's own versions do not meet:
    ``(package, requested specifier, kit version)``."""
    found = []
    for line in dist.requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        mine = kit.get(canonicalize_name(req.name))
        if mine is not None and not req.specifier.contains(mine.version, prereleases=True):
            found.append((mine.name, str(req.specifier), mine.version))
    return found
