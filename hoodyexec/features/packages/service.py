"""Packages: check, install, pin, lock and compare — no falcon here.

Runs in the control worker, which serialises installs (a file lock, so a
second control worker during a reload hand-off is covered too). An install is
planned first (bad specs are 400s, a spec that would change what the kit runs
on is a 409, a busy installer is a 409 — nothing written in every case), then
executed into a staging copy of the live set that is swapped in only when the
installer succeeded and nothing it brought needs a different version of a kit
distribution. Workers are told over the link (``PackagesChanged``) and import
the new packages on their next request.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from hoodyexec.engine import sitepath
from hoodyexec.errors import HoodyError, NotFound
from hoodyexec.files import write_atomic
from hoodyexec.home import Home

from . import project
from .installer import Installer, OnLine, Outcome, SiteSets
from .specs import Dist, Spec, conflicts, kit_distributions, parse, runtime_closure

Announce = Callable[[list[str]], Awaitable[None]]
CheckCode = Callable[[str], dict[str, Any]]

LOCK_HEADER = (
    "# The exact kit-local packages, written by hoodyexec (package/pin).\n"
    "# package/install with no packages installs exactly this set.\n"
)


class KitConflict(HoodyError):
    """A package would need another version of something the kit runs on."""

    status = 409


@dataclass(frozen=True)
class Options:
    installer: str = "auto"
    timeout: float = 600.0
    allow_urls: bool = False


@dataclass
class Plan:
    """What an install will do, decided before anything is written."""

    results: dict[str, dict[str, Any]]
    pending: list[Spec]
    record: list[Spec]
    force: bool
    save: bool
    dev: bool
    lock_file: str | None = None  # sync: install exactly this file into an empty set
    kit: dict[str, Dist] = field(default_factory=dict)


def _result(spec: Spec | str, status: str, **more: Any) -> dict[str, Any]:
    given = spec if isinstance(spec, str) else spec.given
    name = spec if isinstance(spec, str) else spec.requirement.name
    return {"module": given, "name": name, "status": status, **more}


def _changes(before: Mapping[str, Dist], after: Mapping[str, Dist]) -> tuple[list[str], bool]:
    """Human lines of what changed, and whether anything already there changed."""
    lines, replaced = [], False
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old and new and old.version != new.version:
            lines.append(f"{new.name} {old.version} → {new.version}")
            replaced = True
        elif new and not old:
            lines.append(f"+ {new.name} {new.version}")
        elif old and not new:
            lines.append(f"- {old.name} {old.version}")
            replaced = True
    return lines, replaced


class PackageService:
    def __init__(
        self,
        home: Home,
        options: Options | None = None,
        *,
        announce: Announce | None = None,
        check_code: CheckCode | None = None,
    ) -> None:
        self.home = home
        self.options = options or Options()
        self.sets = SiteSets(home.packages, home.site)
        self.work = os.path.join(home.packages, "work")
        self.announce = announce
        self.check_code = check_code
        self._installer: Installer | None = None
        self._kit: dict[str, Dist] | None = None

    @property
    def installer(self) -> Installer:
        if self._installer is None:
            self._installer = Installer(self.options.installer, timeout=self.options.timeout)
        return self._installer

    def kit(self) -> dict[str, Dist]:
        """The kit's own environment: read once (installs never write to it), not
        a scan of every distribution's metadata on every call."""
        if self._kit is None:
            self._kit = kit_distributions(self.home.packages)
        return self._kit

    def parse(self, given: str) -> Spec:
        return parse(given, allow_urls=self.options.allow_urls)

    # -- install -------------------------------------------------------------
    def plan(
        self, specs: list[Spec], *, force: bool = False, save: bool = True, dev: bool = False
    ) -> Plan:
        """Check ``specs`` against the kit and the live set, then take the install
        lock (released by ``execute``). Raises before anything is written."""
        kit = self.kit()
        results: dict[str, dict[str, Any]] = {}
        todo: list[Spec] = []
        for spec in specs:
            mine = kit.get(spec.name)
            if mine is None:
                todo.append(spec)
            elif spec.accepts(mine.version) and not spec.requirement.url:
                results[spec.name] = _result(
                    spec, "already-installed", version=mine.version, source="kit"
                )
            else:
                raise KitConflict(
                    f"{mine.name} is part of the kit: '{spec.given}' asks for "
                    f"{mine.name}{spec.requirement.specifier or ' from a URL'}, the kit runs "
                    f"{mine.name} {mine.version}; nothing was installed",
                    package=mine.name,
                    requested=str(spec.requirement.specifier) or spec.requirement.url,
                    kitVersion=mine.version,
                )
        self.sets.lock()
        try:
            live = self.sets.installed()
        except BaseException:
            self.sets.unlock()
            raise
        pending = []
        for spec in todo:
            have = live.get(spec.name)
            fits = have is not None and spec.accepts(have.version) and not spec.requirement.url
            if fits and not force and not spec.requirement.extras:
                assert have is not None
                results[spec.name] = _result(
                    spec, "already-installed", version=have.version, source="packages"
                )
            else:
                pending.append(spec)
        return Plan(results, pending, todo, force, save, dev, kit=kit)

    def plan_sync(self, *, dev: bool, force: bool) -> Plan:
        """``package/install`` without packages: the lock file when there is one,
        else every declared package."""
        if os.path.exists(self.home.lock):
            self.sets.lock()
            return Plan({}, [], [], force, False, dev, lock_file=self.home.lock, kit=self.kit())
        proj = project.read(self.home.project)
        if proj is None:
            raise NotFound("Nothing to install: no packages given, no pyproject.toml, no lock")
        specs = [self.parse(text) for text in proj.declared(dev)]
        return self.plan(specs, force=force, save=False)

    async def execute(self, plan: Plan, on_line: OnLine | None = None) -> dict[str, Any]:
        """Run a plan (holding the lock ``plan`` took) and report per package."""
        started = time.monotonic()
        try:
            changed, replaced = await self._install(plan, on_line)
        finally:
            self.sets.unlock()
        recorded = self._record(plan) if plan.save else []
        results = list(plan.results.values())
        failed = [r["name"] for r in results if r["status"] == "failed"]
        return {
            "success": not failed,
            "installer": self.installer.name,
            "results": results,
            "installed": [r["name"] for r in results if r["status"] == "installed"],
            "alreadyInstalled": [r["name"] for r in results if r["status"] == "already-installed"],
            "failed": failed,
            "changed": changed,
            "recorded": recorded,
            "restartRecommended": replaced,
            "durationMs": round((time.monotonic() - started) * 1000, 1),
        }

    async def _install(self, plan: Plan, on_line: OnLine | None) -> tuple[list[str], bool]:
        if not plan.pending and plan.lock_file is None:
            return [], False
        live = self.sets.installed()
        # Copying, swapping and pruning sets touches every file: off the loop.
        staging = await asyncio.to_thread(self.sets.stage, empty=plan.lock_file is not None)
        try:
            ok = await self._run_into(staging, plan, on_line)
            after = self.sets.installed(staging)
            self._refuse_kit_conflicts(after, live, plan.kit)
            if not ok:
                return [], False
            changed, replaced = _changes(live, after)
            for spec in plan.pending:
                have = after.get(spec.name)
                if plan.results.get(spec.name, {}).get("status") != "failed":
                    plan.results[spec.name] = _result(
                        spec, "installed", version=have.version if have else None, source="packages"
                    )
            if plan.lock_file is not None:
                for dist in sorted(after.values(), key=lambda d: d.key):
                    plan.results[dist.key] = _result(
                        dist.name, "installed", version=dist.version, source="packages"
                    )
            await asyncio.to_thread(self.sets.commit, staging)
            staging = ""
        finally:
            if staging:
                await asyncio.to_thread(self.sets.discard, staging)
        sitepath.refresh()
        if self.announce is not None:
            await self.announce(changed)
        return changed, replaced

    async def _run_into(self, staging: str, plan: Plan, on_line: OnLine | None) -> bool:
        """Install the plan into ``staging``; True when at least something landed."""
        if plan.lock_file is not None:
            outcome = await self._run(staging, [], plan, on_line, requirement_file=plan.lock_file)
            if not outcome.ok:
                plan.results["lock"] = _result("requirements.lock", "failed", error=outcome.error)
            return outcome.ok
        outcome = await self._run(staging, [s.text for s in plan.pending], plan, on_line)
        if outcome.ok:
            return True
        if len(plan.pending) == 1:
            spec = plan.pending[0]
            plan.results[spec.name] = _result(spec, "failed", error=outcome.error)
            return False
        # Which one failed? Each on its own, on top of those that went in.
        landed = False
        for spec in plan.pending:
            alone = await self._run(staging, [spec.text], plan, on_line)
            if alone.ok:
                landed = True
            else:
                plan.results[spec.name] = _result(spec, "failed", error=alone.error)
        return landed

    async def _run(
        self,
        target: str,
        requirements: list[str],
        plan: Plan,
        on_line: OnLine | None,
        requirement_file: str | None = None,
    ) -> Outcome:
        args = self.installer.install_args(
            target,
            requirements,
            kit=plan.kit,
            files=self.work,
            requirement_file=requirement_file,
            reinstall=plan.force,
        )
        return await self.installer.run(args, on_line)

    @staticmethod
    def _refuse_kit_conflicts(
        after: Mapping[str, Dist], live: Mapping[str, Dist], kit: Mapping[str, Dist]
    ) -> None:
        for key, dist in after.items():
            old = live.get(key)
            if old is not None and old.version == dist.version:
                continue  # already there before this install
            for package, wanted, version in conflicts(dist, kit):
                raise KitConflict(
                    f"{dist.name} {dist.version} needs {package}{wanted}, the kit runs "
                    f"{package} {version}; nothing was installed",
                    package=package,
                    requested=wanted,
                    kitVersion=version,
                    requiredBy=dist.name,
                )

    def _record(self, plan: Plan) -> list[str]:
        """Declare what went in: the spec as given, or ``>=installed`` for a bare name."""
        lines = []
        for spec in plan.record:
            result = plan.results.get(spec.name, {})
            if result.get("status") not in ("installed", "already-installed"):
                continue
            req = Requirement(spec.text)
            if not req.specifier and not req.url and result.get("version"):
                req.specifier = SpecifierSet(f">={result['version']}")
            lines.append(str(req))
        if lines:
            doc = project.ensure(self.home.project)
            project.declare(doc, lines, dev=plan.dev)
            project.save(self.home.project, doc)
        return lines

    # -- pin and lock -----------------------------------------------------------
    async def pin(self, names: Iterable[str]) -> dict[str, Any]:
        wanted = {canonicalize_name(self.parse(n).requirement.name) for n in names}
        doc = project.require(self.home.project)
        proj = project.describe(doc)
        self.sets.lock()
        try:
            live, kit = self.sets.installed(), self.kit()
            pinned: list[str] = []
            unchanged: list[str] = []
            missing: list[str] = []
            declared: set[str] = set()
            for dev, texts in ((False, proj.dependencies), (True, proj.dev_dependencies)):
                for text in texts:
                    try:
                        req = Requirement(text)
                    except InvalidRequirement:
                        continue
                    key = canonicalize_name(req.name)
                    declared.add(key)
                    if wanted and key not in wanted:
                        continue
                    have = live.get(key) or kit.get(key)
                    if have is None:
                        missing.append(req.name)
                        continue
                    exact = Requirement(text)
                    exact.specifier = SpecifierSet(f"=={have.version}")
                    if str(exact) == text:
                        unchanged.append(text)
                        continue
                    pinned.append(f"{req.name}: {req.specifier or '*'} → =={have.version}")
                    project.declare(doc, [str(exact)], dev=dev)
            for key in sorted(wanted - declared):  # installed but never declared
                have = live.get(key)
                if have is None:
                    missing.append(key)
                    continue
                pinned.append(f"{have.name}: (not declared) → =={have.version}")
                project.declare(doc, [f"{have.name}=={have.version}"])
            project.save(self.home.project, doc)
            lock = await self._write_lock(live, kit)
        finally:
            self.sets.unlock()
        return {
            "success": True,
            "pinned": pinned,
            "unchanged": unchanged,
            "notInstalled": missing,
            "lock": lock,
        }

    async def _write_lock(
        self, live: Mapping[str, Dist], kit: Mapping[str, Dist]
    ) -> dict[str, Any]:
        pins = sorted(f"{d.name}=={d.version}" for k, d in live.items() if k not in kit)
        body = "".join(f"{p}\n" for p in pins)
        hashes = False
        args = self.installer.compile_args(os.path.join(self.work, "pins.txt")) if pins else None
        if args is not None:
            os.makedirs(self.work, mode=0o700, exist_ok=True)
            write_atomic(os.path.join(self.work, "pins.txt"), body.encode())
            ok, out = await self.installer.output(args)
            if ok and "--hash=" in out:
                body, hashes = out if out.endswith("\n") else out + "\n", True
        write_atomic(self.home.lock, (LOCK_HEADER + body).encode())
        return {"file": os.path.basename(self.home.lock), "packages": len(pins), "hashes": hashes}

    # -- reading ---------------------------------------------------------------
    def compare(self, declared: list[str] | None = None) -> dict[str, Any]:
        if declared is None:
            proj = project.read(self.home.project)
            declared = proj.declared() if proj else []
        live, kit = self.sets.installed(), self.kit()
        missing, mismatched, matched, invalid = [], [], [], []
        roots: list[Requirement] = []
        for text in declared:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                invalid.append(text)
                continue
            roots.append(req)
            key = canonicalize_name(req.name)
            have, source = (live[key], "packages") if key in live else (kit.get(key), "kit")
            if have is None:
                missing.append(text)
            elif not req.specifier.contains(have.version, prereleases=True):
                mismatched.append(
                    {"name": req.name, "declared": str(req.specifier), "installed": have.version}
                )
            else:
                matched.append({"name": req.name, "version": have.version, "source": source})
        needed = _closure(roots, live)
        extra = [
            {"name": d.name, "version": d.version}
            for k, d in sorted(live.items())
            if k not in needed and k not in kit
        ]
        return {
            "success": True,
            "inSync": not (missing or mismatched or extra or invalid),
            "declared": len(declared),
            "missing": missing,
            "mismatched": mismatched,
            "extra": extra,
            "matched": matched,
            "invalid": invalid,
            "lock": self._lock_drift(live),
        }

    def _lock_drift(self, live: Mapping[str, Dist]) -> dict[str, Any]:
        try:
            with open(self.home.lock, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return {"present": False}
        locked: dict[str, tuple[str, str]] = {}
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip().rstrip("\\").strip()
            if not line or line.startswith("-"):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            versions = [s.version for s in req.specifier if s.operator == "=="]
            locked[canonicalize_name(req.name)] = (req.name, versions[0] if versions else "")
        drift = []
        for key, (name, version) in sorted(locked.items()):
            have = live.get(key)
            if have is None or have.version != version:
                drift.append({"name": name, "locked": version, "installed": have and have.version})
        unlocked = [d.name for k, d in sorted(live.items()) if k not in locked]
        return {"present": True, "packages": len(locked), "drift": drift, "unlocked": unlocked}

    def check(self, code: str | None, modules: list[str]) -> dict[str, Any]:
        live, kit = self.sets.installed(), self.kit()
        statuses: dict[str, dict[str, Any]] = {}
        if code:
            report = self._check_code(code)
            for item in report.get("imports", []):
                top = item["module"]
                if item["status"] in ("local", "private") or top in statuses:
                    continue
                statuses[top] = self._import_status(top, item, live, kit)
        for given in modules:
            spec = self.parse(given)
            name = spec.requirement.name
            detail: dict[str, Any]
            if name.isidentifier():
                item = next(iter(self._check_code(f"import {name}").get("imports", [])), None)
                detail = self._import_status(name, item or {"status": "missing"}, live, kit)
            else:
                detail = {"module": name, "status": "missing", "distribution": name}
            dist = live.get(spec.name) or kit.get(spec.name)
            if detail["status"] == "missing" and dist is not None:  # a distribution name
                detail.update(status="installed", distribution=dist.name, version=dist.version)
                detail["source"] = "packages" if spec.name in live else "kit"
            if detail.get("version") and not spec.accepts(detail["version"]):
                detail.update(status="missing", wanted=str(spec.requirement.specifier))
            detail["module"] = given
            statuses[given] = detail
        by = {s: sorted(k for k, d in statuses.items() if d["status"] == s) for s in ("stdlib",)}
        installed = sorted(k for k, d in statuses.items() if d["status"] == "installed")
        missing = sorted(k for k, d in statuses.items() if d["status"] == "missing")
        install = sorted(
            {d.get("distribution") or k for k, d in statuses.items() if d["status"] == "missing"}
        )
        return {
            "success": True,
            "valid": not missing,
            "installed": installed,
            "missing": missing,
            "stdlib": by["stdlib"],
            "install": install,
            "modules": list(statuses.values()),
        }

    def _check_code(self, code: str) -> dict[str, Any]:
        if self.check_code is None:
            raise HoodyError("dependency checks are not available")
        return self.check_code(code)

    @staticmethod
    def _import_status(
        top: str, item: Mapping[str, Any], live: Mapping[str, Dist], kit: Mapping[str, Dist]
    ) -> dict[str, Any]:
        status = item.get("status", "missing")
        out: dict[str, Any] = {"module": top, "status": status}
        dist_name = item.get("distribution")
        if dist_name:
            out["distribution"] = dist_name
        if status == "installed" and dist_name:
            key = canonicalize_name(dist_name)
            have = kit.get(key) or live.get(key)
            if have is not None:
                out["version"] = have.version
                out["source"] = "kit" if key in kit else "packages"
        return out

    def bundled(self) -> dict[str, Any]:
        kit = self.kit()
        closure = runtime_closure(kit)
        own = {d.key for d in closure}
        return {
            "success": True,
            "python": platform.python_version(),
            "bundled": [{"name": d.name, "version": d.version} for d in closure],
            "count": len(closure),
            "environment": [
                {"name": d.name, "version": d.version}
                for k, d in sorted(kit.items())
                if k not in own
            ],
            "stdlib": {
                "modules": len(sys.stdlib_module_names),
                "note": "Python's standard library is always importable; it is not listed.",
            },
            "installer": self.installer.name,
            "packagesDir": os.path.relpath(self.home.site, self.home.root),
        }


def _closure(roots: Iterable[Requirement], live: Mapping[str, Dist]) -> set[str]:
    """Canonical names of ``roots`` and everything they need, within ``live``."""
    needed: set[str] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in roots]
    while todo:
        key, extras = todo.pop()
        if key in needed:
            continue
        needed.add(key)
        dist = live.get(key)
        for line in dist.requires if dist else ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            wanted = any(
                req.marker is None or req.marker.evaluate({"extra": extra})
                for extra in (extras or {""})
            )
            if wanted:
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return needed
