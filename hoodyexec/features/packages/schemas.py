"""Package and dependency endpoints, declared once."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/"

INSTALL_RESPONSES = {
    200: "Every package installed or already there (text/event-stream on request: progress lines)",
    400: "Not a package requirement (PEP 508), an option, or a URL while URLs are off",
    409: "Another install is in progress, or a package needs another version of a kit distribution",
    422: "The installer failed for at least one package (the report says which and why)",
}


class DependenciesCheck(Fields):
    code: str | None = None
    modules: str | list[str] | None = None


class DependenciesInstall(Fields):
    modules: str | list[str]
    force: bool = False


class PackageInit(Fields):
    name: str = "hoody-exec-project"
    version: str = "1.0.0"
    description: str = "Hoody Exec project"
    force: bool = False


class PackageInstall(Fields):
    packages: list[Any] = []
    dev: bool = False
    save: bool = True
    force: bool = False


class PackagePin(Fields):
    packages: list[Any] = []


class PackageUpdate(Fields):
    dependencies: str | dict[str, str] | list[str] | None = None
    scripts: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    remove: str | list[str] | None = None
    dev: bool = False


class PackageCompare(Fields):
    dependencies: dict[str, str] | list[str] | None = None


CHECK = Endpoint(
    "POST",
    E + "dependencies/check",
    "Check Dependencies",
    "dependencies",
    body=DependenciesCheck,
    body_required=False,
    responses={200: "OK", 400: "Bad body or spec"},
)
INSTALL = Endpoint(
    "POST",
    E + "dependencies/install",
    "Install Dependencies",
    "dependencies",
    body=DependenciesInstall,
    responses=INSTALL_RESPONSES,
)
BUNDLED = Endpoint("GET", E + "dependencies/bundled", "List Bundled Dependencies", "dependencies")
COMPARE = Endpoint(
    "POST",
    E + "package/compare",
    "Compare Packages",
    "package",
    body=PackageCompare,
    body_required=False,
    responses={200: "OK", 400: "Bad body", 422: "pyproject.toml cannot be read"},
)
INIT = Endpoint(
    "POST",
    E + "package/init",
    "Init Package Json",
    "package",
    body=PackageInit,
    body_required=False,
    responses={
        200: "Created (or reset with force)",
        409: "pyproject.toml exists (force: true resets name, version, description)",
    },
)
PACKAGE_INSTALL = Endpoint(
    "POST",
    E + "package/install",
    "Install Packages",
    "package",
    body=PackageInstall,
    body_required=False,
    responses={**INSTALL_RESPONSES, 404: "No packages given and nothing declared or locked"},
)
PIN = Endpoint(
    "POST",
    E + "package/pin",
    "Pin Versions",
    "package",
    body=PackagePin,
    body_required=False,
    responses={
        200: "OK",
        400: "Bad package name",
        404: "No pyproject.toml",
        409: "An install is in progress",
        422: "pyproject.toml cannot be read",
    },
)
READ = Endpoint(
    "GET",
    E + "package/read",
    "Read Package Json",
    "package",
    responses={200: "OK", 404: "No pyproject.toml", 422: "pyproject.toml cannot be read"},
)
UPDATE = Endpoint(
    "POST",
    E + "package/update",
    "Update Package Json",
    "package",
    body=PackageUpdate,
    body_required=False,
    responses={
        200: "OK",
        400: "Bad dependencies, scripts or metadata",
        422: "pyproject.toml cannot be read",
    },
)
