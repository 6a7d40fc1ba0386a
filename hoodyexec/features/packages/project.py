"""The kit project file, ``<home>/pyproject.toml`` (PEP 621): the reference's
``package.json``.

Declared packages are ``[project].dependencies``; ``dev`` ones are the ``dev``
group of ``[dependency-groups]`` (PEP 735); npm-style ``scripts`` and metadata
that PEP 621 has no field for live under ``[tool.hoodyexec]``. Edits go through
tomlkit, so comments, order and formatting of everything not edited stay as
the user wrote them, and every write is atomic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomlkit
import tomlkit.exceptions
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from tomlkit.items import Array, Table
from tomlkit.toml_document import TOMLDocument

from hoodyexec.errors import BadRequest, HoodyError, NotFound
from hoodyexec.files import write_atomic

from .specs import Spec

DEFAULT_NAME = "hoody-exec-project"
DEFAULT_VERSION = "1.0.0"
DEFAULT_DESCRIPTION = "Hoody Exec project"
DEV_GROUP = "dev"
# PEP 621 fields ``metadata`` may set in [project]; other keys go to [tool.hoodyexec.metadata].
PROJECT_FIELDS = frozenset(
    {
        "name",
        "version",
        "description",
        "readme",
        "requires-python",
        "license",
        "authors",
        "maintainers",
        "keywords",
        "classifiers",
        "urls",
    }
)


class ProjectFileError(HoodyError):
    """The project file exists but cannot be used as it is."""

    status = 422


@dataclass
class Project:
    name: str | None
    version: str | None
    description: str | None
    dependencies: list[str]
    dev_dependencies: list[str]
    scripts: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    def declared(self, dev: bool = True) -> list[str]:
        return [*self.dependencies, *(self.dev_dependencies if dev else ())]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "dependencies": self.dependencies,
            "devDependencies": self.dev_dependencies,
            "scripts": self.scripts,
            "metadata": self.metadata,
            "raw": self.raw,
        }


def load(path: str) -> TOMLDocument | None:
    """The parsed file, or None when there is none."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ProjectFileError("pyproject.toml is not UTF-8 text") from None
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ProjectFileError(f"pyproject.toml is not valid TOML: {exc}") from None


def require(path: str) -> TOMLDocument:
    doc = load(path)
    if doc is None:
        raise NotFound("No pyproject.toml yet: create it with package/init")
    return doc


def save(path: str, doc: TOMLDocument) -> None:
    write_atomic(path, tomlkit.dumps(doc).encode())


def read(path: str) -> Project | None:
    doc = load(path)
    return None if doc is None else describe(doc)


def describe(doc: TOMLDocument) -> Project:
    project = _table(doc, "project")
    groups = _table(doc, "dependency-groups")
    tool = _table(_table(doc, "tool"), "hoodyexec")
    return Project(
        name=_text(project.get("name")),
        version=_text(project.get("version")),
        description=_text(project.get("description")),
        dependencies=_strings(project.get("dependencies"), "project.dependencies"),
        dev_dependencies=_strings(groups.get(DEV_GROUP), f"dependency-groups.{DEV_GROUP}"),
        scripts=_plain(tool.get("scripts")) or {},
        metadata=_plain(tool.get("metadata")) or {},
        raw=tomlkit.dumps(doc),
    )


def init(path: str, *, name: str, version: str, description: str, force: bool) -> bool:
    """Create the file (or, with ``force``, reset name/version/description and keep
    the rest). False when it existed and ``force`` was not given."""
    doc = load(path) if os.path.exists(path) else None
    if doc is not None and not force:
        return False
    if doc is None:
        doc = tomlkit.document()
        doc.add(tomlkit.comment("The hoodyexec kit's project file: packages its scripts use."))
    project = _ensure_table(doc, "project")
    project["name"] = name
    project["version"] = version
    project["description"] = description
    if "dependencies" not in project:
        project["dependencies"] = _multiline([])
    save(path, doc)
    return True


def ensure(path: str) -> TOMLDocument:
    """The document, created with the defaults when missing (as ``npm install`` does)."""
    if not os.path.exists(path):
        init(
            path,
            name=DEFAULT_NAME,
            version=DEFAULT_VERSION,
            description=DEFAULT_DESCRIPTION,
            force=False,
        )
    return require(path)


def declare(doc: TOMLDocument, specs: Iterable[Spec | str], *, dev: bool = False) -> None:
    """Add or replace requirements (same package: replaced where it stands)."""
    array = _dependency_array(doc, dev)
    for spec in specs:
        text = spec if isinstance(spec, str) else spec.text
        key = _key(text)
        for i, existing in enumerate(array):
            if _key(str(existing)) == key:
                array[i] = text
                break
        else:
            array.append(text)


def undeclare(doc: TOMLDocument, names: Iterable[str]) -> list[str]:
    """Remove packages by name from both lists; the requirements removed."""
    keys = {canonicalize_name(n) for n in names}
    removed = []
    for dev in (False, True):
        if not _has_dependency_array(doc, dev):
            continue
        array = _dependency_array(doc, dev)
        for i in reversed(range(len(array))):
            if _key(str(array[i])) in keys:
                removed.append(str(array[i]))
                del array[i]
    return removed


def set_scripts(doc: TOMLDocument, scripts: Mapping[str, Any]) -> None:
    tool = _ensure_table(_ensure_table(doc, "tool", super_table=True), "hoodyexec")
    table = tool.get("scripts")
    if not isinstance(table, Table):
        table = tomlkit.table()
        tool["scripts"] = table
    for key, value in scripts.items():
        if value is None:
            table.pop(key, None)
        elif isinstance(value, str):
            table[key] = value
        else:
            raise BadRequest(f"scripts.{key} must be a command string (or null to remove it)")


def set_metadata(doc: TOMLDocument, metadata: Mapping[str, Any]) -> list[str]:
    """PEP 621 fields into [project], the rest into [tool.hoodyexec.metadata];
    ``null`` removes a key. Returns the keys set."""
    project = _ensure_table(doc, "project")
    extra: Table | None = None
    for key, value in metadata.items():
        if key in PROJECT_FIELDS:
            target: Any = project
        else:
            if extra is None:
                tool = _ensure_table(_ensure_table(doc, "tool", super_table=True), "hoodyexec")
                extra = tool.get("metadata")
                if not isinstance(extra, Table):
                    extra = tomlkit.table()
                    tool["metadata"] = extra
            target = extra
        if value is None:
            target.pop(key, None)
            continue
        try:
            target[key] = value
        except (tomlkit.exceptions.ConvertError, TypeError, ValueError):
            raise BadRequest(
                f"metadata.{key} cannot be written to TOML (null inside a list or table?)"
            ) from None
    return list(metadata)


def requirement_name(text: str) -> str | None:
    try:
        return Requirement(text).name
    except InvalidRequirement:
        return None


# -- helpers ------------------------------------------------------------------


def _key(text: str) -> str:
    name = requirement_name(text)
    return canonicalize_name(name) if name else text


def _table(container: Any, key: str) -> Any:
    value = container.get(key) if hasattr(container, "get") else None
    return value if hasattr(value, "get") else {}


def _ensure_table(container: Any, key: str, *, super_table: bool = False) -> Table:
    value = container.get(key)
    if isinstance(value, Table):
        return value
    if value is not None:
        raise ProjectFileError(f"pyproject.toml: '{key}' is not a table")
    table = tomlkit.table(is_super_table=super_table)
    container[key] = table
    return table


def _multiline(items: list[str]) -> Array:
    array = tomlkit.array()
    array.extend(items)
    array.multiline(True)
    return array


def _has_dependency_array(doc: TOMLDocument, dev: bool) -> bool:
    if dev:
        return isinstance(_table(doc, "dependency-groups").get(DEV_GROUP), Array)
    return isinstance(_table(doc, "project").get("dependencies"), Array)


def _dependency_array(doc: TOMLDocument, dev: bool) -> Array:
    owner = _ensure_table(doc, "dependency-groups" if dev else "project")
    key = DEV_GROUP if dev else "dependencies"
    array = owner.get(key)
    if array is None:
        array = _multiline([])
        owner[key] = array
    if not isinstance(array, Array):
        where = f"dependency-groups.{DEV_GROUP}" if dev else "project.dependencies"
        raise ProjectFileError(f"pyproject.toml: {where} is not a list")
    return array


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProjectFileError(f"pyproject.toml: {where} is not a list")
    return [str(v) for v in value if isinstance(v, str)]


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value
