"""Deployment artefacts (deploy/, Dockerfile) stay true to the kit.

The kustomize base is rendered with kubectl and the objects are checked here;
the compose file is validated by ``docker compose config`` when that exists and
its structure is always checked; nginx checks its own config (``nginx -t``);
the Dockerfile is checked structurally. No image is built here: image
registries are out of reach of the test machine (docs/scale-out.md).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from hoodyexec import config
from hoodyexec.errors import ConfigError
from hoodyexec.features.monitor.schemas import METRICS
from hoodyexec.http.auth import HEALTH_PATH

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
HEALTHCHECK = DEPLOY / "healthcheck.py"
# The shared-state setting another change adds; env names are checked against
# the kit's settings, this one is allowed ahead of it.
STATE_URL_ENV = "HOODYEXEC_STATE_URL"


# -- tools -------------------------------------------------------------------
def ensure_tool(binary: str, apt_package: str) -> str:
    """The tool's path: on PATH, else installed with apt-get (root only), else skip."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(binary, path=search)
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip(f"{binary} is not installed and apt-get cannot install {apt_package} here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", apt_package]
    problems = []
    for step in ([], ["apt-get", "update", "-q"]):
        if step:
            subprocess.run(step, env=env, capture_output=True, timeout=300)
        r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        found = shutil.which(binary, path=search)
        if r.returncode == 0 and found:
            return found
        problems.append(r.stderr.strip()[-300:])
    pytest.skip(f"{binary}: installing {apt_package} failed: {problems[-1]}")


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_env_names(names: set[str]) -> None:
    known = {f.env for f in config.fields()} | {config.CONFIG_ENV, STATE_URL_ENV}
    assert names <= known, f"not settings of the kit: {sorted(names - known)}"


# -- Kubernetes ----------------------------------------------------------------
@pytest.fixture(scope="module")
def kubectl() -> str:
    return ensure_tool("kubectl", "kubernetes-client")


def kustomize(kubectl: str, path: Path) -> list[dict[str, Any]]:
    r = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return [doc for doc in yaml.safe_load_all(r.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, dict[str, Any]]:
    objects = kustomize(kubectl, K8S)
    by_kind: dict[str, dict[str, Any]] = {}
    for obj in objects:
        assert obj["kind"] not in by_kind, f"two {obj['kind']} objects"
        by_kind[obj["kind"]] = obj
    return by_kind


@pytest.fixture(scope="module")
def pod(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def kit_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return container  # type: ignore[no-any-return]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_file(rendered: dict[str, dict[str, Any]], tmp_path: Path) -> Path:
    """The ConfigMap's settings file, written where HOODYEXEC_CONFIG would find it."""
    data = rendered["ConfigMap"]["data"]
    assert list(data) == ["hoodyexec.yaml"]
    path = tmp_path / "hoodyexec.yaml"
    path.write_text(data["hoodyexec.yaml"])
    return path


def pod_settings(
    rendered: dict[str, dict[str, Any]], container: dict[str, Any], tmp_path: Path, token: str
) -> config.Settings:
    """The settings a pod starts with: its env (plain values, the Secret's
    token) over the ConfigMap's file, resolved by the kit's own loader."""
    environ = {name: e["value"] for name, e in env_of(container).items() if "value" in e} | {
        "HOODYEXEC_TOKEN": token
    }
    environ.pop(config.CONFIG_ENV)
    return config.resolve(environ=environ, config_path=str(settings_file(rendered, tmp_path)))


def test_the_base_renders_every_object(rendered):
    assert set(rendered) == {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    }
    assert rendered["ServiceMonitor"]["apiVersion"] == "monitoring.coreos.com/v1"
    assert rendered["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


def test_probes_point_at_health_and_liveness_survives_a_drain(kit_container):
    port = kit_container["ports"][0]
    assert port["containerPort"] == 8080
    for probe in ("startupProbe", "readinessProbe"):
        get = kit_container[probe]["httpGet"]
        assert get["path"] == HEALTH_PATH and get["port"] in (port["name"], 8080), probe
    # Readiness reacts to a drain at its next probe.
    assert kit_container["readinessProbe"]["failureThreshold"] == 1
    # Liveness must not be the plain health GET (503 while draining would kill
    # the pod): it runs the probe that also accepts 503 draining/starting.
    live = kit_container["livenessProbe"]
    assert "httpGet" not in live
    command = live["exec"]["command"]
    assert command[-2:] == ["/opt/hoodyexec/healthcheck.py", "live"], command


def test_prestop_drains_within_the_grace_period(rendered, pod, kit_container, tmp_path):
    (shell, flag, script) = kit_container["lifecycle"]["preStop"]["exec"]["command"]
    assert (shell, flag) == ("sh", "-c")
    steps = [shlex.split(part) for part in script.split(";")]
    drain = next(step for step in steps if step[:2] == ["hoodyexec", "drain"])
    drain_s = config_seconds(drain[drain.index("--timeout") + 1])
    sleep_s = sum(float(step[1]) for step in steps if step and step[0] == "sleep")
    settings = pod_settings(rendered, kit_container, tmp_path, token="t" * 32)
    grace = pod["terminationGracePeriodSeconds"]
    # drain waits for in-flight requests, then SIGTERM gives graceful-timeout.
    assert grace > drain_s + sleep_s + settings.graceful_timeout, (grace, drain_s, sleep_s)


def config_seconds(text: str) -> float:
    from hoodyexec.features.system import ops

    return ops.seconds(text)


def test_the_secret_holds_token_and_state_url(rendered, kit_container):
    secret = rendered["Secret"]
    keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
    assert keys == {"token", "state-url"}
    env = env_of(kit_container)
    for name, key in (("HOODYEXEC_TOKEN", "token"), (STATE_URL_ENV, "state-url")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": key}, name
    check_env_names(set(env))


def test_the_configmap_is_a_valid_settings_file_and_the_pod_starts_public_with_a_token(
    rendered, pod, kit_container, tmp_path
):
    path = settings_file(rendered, tmp_path)
    data = config.from_file(str(path))  # the kit's loader: unknown keys are refused
    assert "token" not in data and "state-url" not in data  # secrets live in the Secret
    assert data["workers"] >= 1  # not the node's CPU count
    assert data["inotify"] is False  # the scripts volume is shared between pods
    settings = pod_settings(rendered, kit_container, tmp_path, token="t" * 32)
    assert not settings.is_loopback
    config.check_startup(settings)
    without = pod_settings(rendered, kit_container, tmp_path, token="")
    with pytest.raises(ConfigError, match="without a management token"):
        config.check_startup(without)
    # HOODYEXEC_CONFIG names the file where the ConfigMap volume puts it.
    cfg = Path(env_of(kit_container)[config.CONFIG_ENV]["value"])
    mounts = {m["name"]: m for m in kit_container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    settings_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert (
        volumes[settings_volume]["configMap"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    )
    assert Path(mounts[settings_volume]["mountPath"]) / cfg.name == cfg


def test_scripts_are_shared_and_home_is_prepared_by_the_kit_user(
    rendered, pod, kit_container, tmp_path
):
    settings = pod_settings(rendered, kit_container, tmp_path, token="t" * 32)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in kit_container["volumeMounts"]}
    scripts = mounts[os.path.join(settings.home, "scripts")]
    claim = volumes[scripts["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = rendered["PersistentVolumeClaim"]
    assert claim == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # The folders the kit chmods must be its own: the init container makes
    # home/scripts on the home volume and the scripts folder on the shared one.
    (init,) = pod["initContainers"]
    assert init["command"][:2] == ["mkdir", "-p"]
    made = set(init["command"][2:])
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    # The home is a folder on its volume, never the (root-owned) volume root.
    home_mount = next(
        m for m in kit_container["volumeMounts"] if settings.home.startswith(m["mountPath"] + "/")
    )
    on_home = os.path.join(settings.home, "scripts")
    assert on_home.replace(home_mount["mountPath"], init_mounts[home_mount["name"]]) in made
    assert os.path.join(init_mounts[scripts["name"]], scripts["subPath"]) in made


def test_resources_and_non_root(pod):
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    for container in pod["containers"] + pod["initContainers"]:
        resources = container["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[part]), (container["name"], part)
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx.get("runAsUser", security["runAsUser"]) != 0


def test_service_pdb_hpa_and_servicemonitor_select_the_pods(rendered, kit_container):
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = rendered["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == kit_container["ports"][0]["name"]
    pdb = rendered["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = rendered["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == rendered["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] >= 2 and pdb["minAvailable"] < hpa["minReplicas"]
    assert "replicas" not in rendered["Deployment"]["spec"]  # the HPA owns it
    monitor = rendered["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["path"] == METRICS.path and endpoint["port"] == port["name"]
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials"] == {"name": rendered["Secret"]["metadata"]["name"], "key": "token"}


def test_an_overlay_replaces_the_placeholder_secret(kubectl, tmp_path):
    """The how-to of docs/scale-out.md: an overlay with the real values."""
    (tmp_path / "hoodyexec.env").write_text(
        "token=0123456789abcdef0123456789abcdef\n"
        "state-url=postgresql://hoodyexec:pw@db.internal:5432/hoodyexec\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S, tmp_path)],
                "secretGenerator": [
                    {
                        "name": "hoodyexec",
                        "behavior": "replace",
                        "envs": ["hoodyexec.env"],
                        "options": {"disableNameSuffixHash": True},
                    }
                ],
            }
        )
    )
    import base64

    (secret,) = [o for o in kustomize(kubectl, tmp_path) if o["kind"] == "Secret"]
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values == {
        "token": "0123456789abcdef0123456789abcdef",
        "state-url": "postgresql://hoodyexec:pw@db.internal:5432/hoodyexec",
    }
    assert secret["metadata"]["name"] == "hoodyexec"


# -- the health probe ------------------------------------------------------------
def test_probe_verdicts_and_port():
    probe = load_healthcheck()
    assert probe.HEALTH_PATH == HEALTH_PATH
    assert probe.port_of("0.0.0.0:9000") == 9000 and probe.port_of("unix:/x.sock") == 8080
    assert probe.port_of("") == 8080
    assert probe.verdict("ready", 200, "ok")
    for status in ("draining", "starting"):
        assert not probe.verdict("ready", 503, status)
        assert probe.verdict("live", 503, status)
    assert not probe.verdict("live", 503, "")  # a 503 that is not the kit's health
    assert not probe.verdict("live", 502, "")
    assert not probe.verdict("live", 200, "")


def run_probe(mode: str, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOODYEXEC_BIND": f"127.0.0.1:{port}", "HEALTHCHECK_TIMEOUT": "5"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
def test_prestop_drain_on_a_running_kit_fails_ready_but_not_live(kit, kit_container):
    assert run_probe("ready", kit.port).returncode == 0
    assert run_probe("live", kit.port).returncode == 0
    # The preStop's drain, as the container runs it: the home from the env.
    script = kit_container["lifecycle"]["preStop"]["exec"]["command"][2]
    drain = next(shlex.split(p) for p in script.split(";") if "drain" in p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYEXEC_")}
    env |= {"HOODYEXEC_HOME": str(kit.home), "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    r = subprocess.run(drain, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert kit.get(HEALTH_PATH).status == 503
    ready, live = run_probe("ready", kit.port), run_probe("live", kit.port)
    assert ready.returncode == 1 and "503 draining" in ready.stderr
    assert live.returncode == 0 and "503 draining" in live.stderr
    kit.stop()
    gone = run_probe("live", kit.port)
    assert gone.returncode == 1 and "no answer" in gone.stderr


# -- compose and nginx -------------------------------------------------------------
COMPOSE_ENV = {"HOODYEXEC_TOKEN": "t" * 32, "POSTGRES_PASSWORD": "pw"}


def compose_model() -> dict[str, Any]:
    """`docker compose config` when it exists (it validates the file and
    resolves anchors and variables), else the YAML with the variables put in
    as compose would."""
    env = {**os.environ, **COMPOSE_ENV}
    docker = shutil.which("docker")
    if docker:
        has = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if has.returncode == 0:
            r = subprocess.run(
                [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            model: dict[str, Any] = yaml.safe_load(r.stdout)
            return model
    text = (DEPLOY / "compose.yaml").read_text()

    def put(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        assert value, f"compose needs {m.group(1)}"
        return value

    model = yaml.safe_load(re.sub(r"\$\{(\w+):\?[^}]*\}", put, text))
    assert "${" not in yaml.safe_dump(model)
    return model


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_model()


def node_environ(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mount_target(volume: Any) -> tuple[str, str]:
    if isinstance(volume, dict):
        return volume["source"], volume["target"]
    source, target = volume.split(":")[:2]
    return source, target


def test_compose_two_nodes_postgres_and_nginx(compose):
    services = compose["services"]
    assert {"node1", "node2", "postgres", "nginx"} <= set(services)
    homes = set()
    for name in ("node1", "node2"):
        node = services[name]
        env = node_environ(node)
        check_env_names({k for k in env if k.startswith("HOODYEXEC_")})
        assert env["HOODYEXEC_TOKEN"] == COMPOSE_ENV["HOODYEXEC_TOKEN"]  # from the environment
        assert env[STATE_URL_ENV] == "postgresql://hoodyexec:pw@postgres:5432/hoodyexec"
        settings = config.resolve(environ={k: v for k, v in env.items() if k != STATE_URL_ENV})
        assert not settings.is_loopback
        config.check_startup(settings)
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "healthcheck.py" in " ".join(node["healthcheck"]["test"])
        mounts = dict(mount_target(v)[::-1] for v in node["volumes"])
        homes.add(mounts[settings.home])
        assert mounts[os.path.join(settings.home, "scripts")] == "scripts"
        grace = str(node["stop_grace_period"])
        assert config_seconds(grace) > settings.graceful_timeout
    assert len(homes) == 2  # one home per node; scripts are what they share
    pg = services["postgres"]
    assert pg["environment"]["POSTGRES_PASSWORD"] == COMPOSE_ENV["POSTGRES_PASSWORD"]
    assert "pg_isready" in pg["healthcheck"]["test"]
    nginx = services["nginx"]
    for name in ("node1", "node2"):
        assert nginx["depends_on"][name]["condition"] == "service_healthy"
    sources = {mount_target(v)[1]: mount_target(v)[0] for v in nginx["volumes"]}
    conf = Path(sources["/etc/nginx/nginx.conf"])
    if not conf.is_absolute():
        conf = DEPLOY / conf
    assert conf.resolve() == (DEPLOY / "nginx.conf").resolve()


def test_compose_makes_the_shared_scripts_volume_the_kit_users(compose):
    services = compose["services"]
    init = services["volumes-init"]
    assert str(init["user"]).split(":")[0] == "0"
    assert init["entrypoint"][:2] == ["chown", "10001:10001"]
    target = init["entrypoint"][2]
    assert any(
        mount_target(v) == ("scripts", target) or mount_target(v)[1] == target
        for v in init["volumes"]
    )
    for name in ("node1", "node2"):
        condition = services[name]["depends_on"]["volumes-init"]["condition"]
        assert condition == "service_completed_successfully"


def test_nginx_proxies_http_and_websockets_to_both_nodes(compose):
    text = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"upstream (\w+) \{(.*?)\}", text, re.S)
    assert upstream is not None
    servers = re.findall(r"server (\S+?):(\d+)", upstream.group(2))
    assert sorted(servers) == [("node1", "8080"), ("node2", "8080")]
    assert set(h for h, _ in servers) <= set(compose["services"])
    assert f"proxy_pass http://{upstream.group(1)};" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_http_version 1.1;" in text
    assert re.search(r"max_fails=\d+ fail_timeout=\d+s", upstream.group(2))


def test_nginx_accepts_its_config(tmp_path):
    nginx = ensure_tool("nginx", "nginx")
    # nginx -t resolves upstream host names: node1/node2 exist only inside the
    # compose network, so they become 127.0.0.1 here; nothing else changes.
    text = (DEPLOY / "nginx.conf").read_text()
    local = re.sub(r"server node[12]:", "server 127.0.0.1:", text)
    assert local != text
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    r = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


# -- the image -------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\")
        if not stripped.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last:]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_runs_non_root_with_a_healthcheck():
    stage = final_stage(dockerfile())
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: runAsNonRoot can check it
    (health,) = [args for word, args in stage if word == "HEALTHCHECK"]
    assert "healthcheck.py" in health and "CMD" in health
    copied = " ".join(args for word, args in stage if word == "COPY")
    assert "deploy/healthcheck.py /opt/hoodyexec/healthcheck.py" in copied


def test_dockerfile_bakes_no_secret_and_binds_public_only_with_a_token():
    instructions = dockerfile()
    secretish = re.compile(r"TOKEN|PASSWORD|SECRET|API_KEY|STATE_URL|ALLOW_UNAUTH", re.I)
    for word, args in instructions:
        if word in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(args), (word, args)
    env = image_env(final_stage(instructions))
    check_env_names({k for k in env if k.startswith("HOODYEXEC_")})
    assert env["HOODYEXEC_BIND"].startswith("0.0.0.0:")
    volumes = " ".join(args for word, args in final_stage(instructions) if word == "VOLUME")
    assert env["HOODYEXEC_HOME"] in volumes
    kit_env = {k: v for k, v in env.items() if k.startswith("HOODYEXEC_")}
    with pytest.raises(ConfigError, match="without a management token"):
        config.check_startup(config.resolve(environ=kit_env))
    config.check_startup(config.resolve(environ=kit_env | {"HOODYEXEC_TOKEN": "t" * 32}))


def test_dockerfile_builds_the_venv_from_pinned_pyproject():
    import tomllib

    instructions = dockerfile()
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "venv" in runs and "pip install /src" in runs
    copies = [args.split() for word, args in instructions if word == "COPY"]
    sources = [part for args in copies if not args[0].startswith("--from") for part in args[:-1]]
    assert "pyproject.toml" in sources
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        top = source.split("/")[0]
        assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for requirement in project["project"]["dependencies"]:
        assert "==" in requirement, f"not pinned: {requirement}"


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings are resolved from explicit environments only."""
    for name in list(os.environ):
        if name.startswith("HOODYEXEC_"):
            monkeypatch.delenv(name)
    yield
