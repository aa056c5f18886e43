"""The production deployment files (deployment/): compose, Caddyfile, Dockerfile, monitoring.

No Docker engine runs here, so nothing is started with Docker. What is proven instead:

* the structure a safe deployment depends on, read from the YAML itself (always runs): only Caddy
  publishes ports, every app has a healthcheck that needs no curl, the apps wait for the one-shot
  migration, Windmill is pinned and its worker group listens to ``flow`` and ``dependency``;
* ``docker-compose config -q`` and ``caddy validate`` accept the files (Debian packages
  ``docker-compose`` and ``caddy``; skipped with a reason when the tool is missing);
* Caddy really routes as designed: the real Caddyfile is served by a real ``caddy`` process in
  front of two stub upstreams on 127.0.0.1 (webhooks and health to ingress, /api to the API,
  3 MB webhook body limit, security headers, 404 for /metrics and everything else);
* the alert rules fire when they should (``promtool test rules``; Debian package ``prometheus``)
  and every dashboard query is valid PromQL.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deployment"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ADMIN_COMPOSE_FILE = DEPLOY / "docker-compose.admin.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
CADDYFILE = DEPLOY / "Caddyfile"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
MONITORING = DEPLOY / "monitoring"
SHELL_SCRIPTS = [
    DEPLOY / "backup" / "backup.sh",
    DEPLOY / "backup" / "restore.sh",
    DEPLOY / "postgres" / "init" / "10-chatmill.sh",
]

APP_SERVICES = {"ingress": 8000, "api": 8001, "mcp": 8002}
INTERNAL_ONLY = {"postgres", "redis", "windmill_server", "windmill_worker", "mcp", "migrate"}
CONTRACT_ENV = {
    "CHATMILL_ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "WINDMILL_URL",
    "WINDMILL_TOKEN",
    "WINDMILL_WORKSPACE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_API_KEY",
    "LLM_PROVIDER",
    "EMBEDDING_PROVIDER",
    "JWT_SECRET",
    "ENCRYPTION_KEYS",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "MCP_TOKEN",
    "CORS_ORIGINS",
    "PUBLIC_BASE_URL",
    "LOG_LEVEL",
}
TOOL_TIMEOUT_S = 120
_DEFAULT = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-(?P<default>[^}]*)\}$")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def _resolve_default(value: object) -> str:
    """``${NAME:-default}`` -> default; anything else unchanged (as text)."""
    text = str(value)
    match = _DEFAULT.match(text)
    return match["default"] if match else text


def _published(port: object) -> tuple[str | None, str]:
    """(host ip or None, published port) of a compose ``ports`` entry, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), _resolve_default(port.get("published", ""))
    text = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(port))
    parts = text.split("/")[0].split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    return None, parts[0]


# ---------------------------------------------------------------- compose structure (always runs)


def test_compose_declares_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "postgres",
        "redis",
        "windmill_server",
        "windmill_worker",
        "migrate",
        "ingress",
        "api",
        "mcp",
        "caddy",
    }
    assert expected <= set(services)
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name], name
        assert any(str(v).startswith(("pgdata:", "redisdata:")) for v in services[name]["volumes"])


def test_every_app_service_has_a_healthcheck_without_curl(services: dict[str, dict[str, Any]]) -> None:
    for name, port in APP_SERVICES.items():
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = check["test"]
        assert test[:2] == ["CMD", "python"], f"{name}: slim images have no curl; use python"
        assert f"127.0.0.1:{port}/" in " ".join(test)
    for name in ("ingress", "api"):
        assert "/health/ready" in " ".join(services[name]["healthcheck"]["test"])


def test_apps_share_one_image_and_the_env_file(services: dict[str, dict[str, Any]]) -> None:
    for name in (*APP_SERVICES, "migrate"):
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "deployment/Dockerfile"}, name
        assert service["image"] == services["migrate"]["image"], name
        assert service["env_file"] == ["${CHATMILL_ENV_FILE:-.env}"], name
        assert service["command"][0] == "chatmill", name
    assert services["migrate"]["command"] == ["chatmill", "migrate"]
    for name, port in APP_SERVICES.items():
        command = services[name]["command"]
        assert command[:3] == ["chatmill", "serve", name]
        assert command[command.index("--port") + 1] == str(port)
        assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 (inside the container)


def test_apps_start_only_after_the_migration_succeeded(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_long_running_services_restart_and_are_limited(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in {"migrate", "backup"}:
            assert service["restart"] == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service["deploy"]["resources"]["limits"]["memory"], name


def test_only_caddy_publishes_ports(services: dict[str, dict[str, Any]]) -> None:
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"caddy"}
    published = {_published(port)[1] for port in services["caddy"]["ports"]}
    assert published == {"80", "443"}


def test_internal_services_are_unreachable_from_the_proxy(services: dict[str, dict[str, Any]]) -> None:
    assert services["caddy"]["networks"] == ["edge"]
    for name in INTERNAL_ONLY:
        assert "edge" not in services[name].get("networks", []), f"{name} must not share Caddy's network"
    for name in ("ingress", "api"):
        assert set(services[name]["networks"]) == {"backend", "edge"}, name


def test_admin_override_binds_to_loopback_only() -> None:
    override = _load_yaml(ADMIN_COMPOSE_FILE)["services"]
    assert "windmill_server" in override
    for name, service in override.items():
        for port in service.get("ports", []):
            host_ip, _ = _published(port)
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond the loopback interface"


def test_windmill_is_pinned_and_its_workers_run_flows(services: dict[str, dict[str, Any]]) -> None:
    for name in ("windmill_server", "windmill_worker"):
        image = services[name]["image"]
        repository, _, tag = image.partition(":")
        assert repository == "ghcr.io/windmill-labs/windmill", image
        assert re.fullmatch(r"\d+\.\d+\.\d+", _resolve_default(tag)), f"{name}: pin a version, not {tag}"
        assert "env_file" not in services[name], "Windmill must not receive Chatmill's secrets"
    assert services["windmill_server"]["environment"]["MODE"] == "server"
    worker = services["windmill_worker"]["environment"]
    assert worker["MODE"] == "worker"
    assert worker["WORKER_GROUP"] == "default"
    assert _resolve_default(worker["NUM_WORKERS"]) == "10"
    tags = _resolve_default(worker["WORKER_TAGS"]).split(",")
    assert {"flow", "dependency", "python3"} <= set(tags)
    assert _env_example()["WINDMILL_WORKER_TAGS"].split(",") == tags
    assert "container_name" not in services["windmill_worker"], "container_name prevents --scale"


def test_env_example_documents_every_variable(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    documented = set(_env_example())
    commented = set(re.findall(r"^# ([A-Z0-9_]+)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert not CONTRACT_ENV - documented - commented, "contract variables missing from .env.example"
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required <= documented, f"required by compose but not in .env.example: {required - documented}"


def test_env_example_repeats_passwords_consistently() -> None:
    env = _env_example()
    database_url = env["DATABASE_URL"]
    expected = (
        f"postgresql://{env['CHATMILL_DB_USER']}:{env['CHATMILL_DB_PASSWORD']}@postgres:5432/"
        f"{env['CHATMILL_DB_NAME']}"
    )
    assert database_url == expected
    assert env["REDIS_URL"] == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
    assert env["WINDMILL_URL"] == "http://windmill_server:8000"
    for key, value in env.items():
        if "PASSWORD" in key or "SECRET" in key or "TOKEN" in key or key == "ENCRYPTION_KEYS":
            assert value.startswith("changeme"), f"{key}: example secrets must be obvious placeholders"


# ---------------------------------------------------------------- compose, validated by the tool


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.parametrize(
    "files",
    [[COMPOSE_FILE], [COMPOSE_FILE, ADMIN_COMPOSE_FILE]],
    ids=["production", "with-admin-override"],
)
def test_docker_compose_config_accepts_the_files(files: list[Path]) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("docker-compose is not installed (CI: apt-get install -y docker-compose)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    env["CHATMILL_ENV_FILE"] = ENV_EXAMPLE.name  # env_file entries resolve next to the compose file
    args = [*command, "--env-file", str(ENV_EXAMPLE)]
    for path in files:
        args += ["-f", str(path)]
    result = subprocess.run(
        [*args, "config", "-q"], capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- Caddy


def _caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "caddy-home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "CHATMILL_DOMAIN": "chatmill.example.com",
        "ACME_EMAIL": "ops@example.com",
        **extra,
    }


def test_caddyfile_validates(tmp_path: Path) -> None:
    if shutil.which("caddy") is None:
        pytest.skip("caddy is not installed (CI: apt-get install -y caddy)")
    result = subprocess.run(
        ["caddy", "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        capture_output=True,
        text=True,
        env=_caddy_env(tmp_path),
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


class _Upstream(BaseHTTPRequestHandler):
    """Answers every request with JSON naming this upstream, the path and the body size it got."""

    server: _UpstreamServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            return  # the proxy gave up mid-body: nothing was delivered
        self.server.largest_body = max(self.server.largest_body, len(body))
        payload = json.dumps({"upstream": self.server.label, "path": self.path, "bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, label: str) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.label = label
        self.largest_body = 0

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a connection the proxy aborted (oversized body) is expected, not a failure


def _request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def caddy_in_front_of_stubs(tmp_path: Path) -> Iterator[tuple[int, dict[str, _UpstreamServer]]]:
    """The real Caddyfile served by caddy on 127.0.0.1, proxying to two stub upstreams."""
    if shutil.which("caddy") is None:
        pytest.skip("caddy is not installed (CI: apt-get install -y caddy)")
    upstreams = {label: _UpstreamServer(label) for label in ("ingress", "api")}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in upstreams.values()]
    for thread in threads:
        thread.start()
    port = free_port()
    env = _caddy_env(
        tmp_path,
        CHATMILL_DOMAIN=f"http://127.0.0.1:{port}",
        CADDY_ADMIN="off",
        INGRESS_UPSTREAM=f"127.0.0.1:{upstreams['ingress'].server_address[1]}",
        API_UPSTREAM=f"127.0.0.1:{upstreams['api'].server_address[1]}",
        API_MAX_BODY_SIZE="5MB",
    )
    log_path = tmp_path / "caddy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["caddy", "run", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _request(port, "GET", "/")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"caddy did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)
        yield port, upstreams
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for upstream in upstreams.values():
            upstream.shutdown()
            upstream.server_close()


def test_caddy_routes_only_the_public_paths(caddy_in_front_of_stubs: tuple[int, dict[str, Any]]) -> None:
    port, _ = caddy_in_front_of_stubs
    routed = {
        ("POST", "/webhook/whatsapp"): "ingress",
        ("GET", "/webhook/whatsapp?hub.mode=subscribe"): "ingress",
        ("POST", "/webhook/whatsapp/0b7c2e4e"): "ingress",
        ("GET", "/health/live"): "ingress",
        ("GET", "/health/ready"): "ingress",
        ("GET", "/api"): "api",
        ("POST", "/api/v1/auth/login"): "api",
    }
    for (method, path), upstream in routed.items():
        status, _, body = _request(port, method, path, b"{}" if method == "POST" else None)
        assert status == 200, (method, path, status)
        answer = json.loads(body)
        assert answer["upstream"] == upstream, (method, path, answer)
        assert answer["path"] == path
    not_public = ["/", "/metrics", "/METRICS", "/api/metrics", "/webhook/metrics", "/health/metrics"]
    not_public += ["/windmill", "/user/login", "/mcp", "/webhook", "/webhook/../metrics"]
    for path in not_public:
        status, _, body = _request(port, "GET", path)
        assert status == 404, (path, status)
        assert b"upstream" not in body, path


def test_caddy_limits_webhook_bodies_to_3mb(caddy_in_front_of_stubs: tuple[int, dict[str, Any]]) -> None:
    port, upstreams = caddy_in_front_of_stubs
    status, _, body = _request(port, "POST", "/webhook/whatsapp", b"x" * 3_000_000)
    assert status == 200, "Meta's documented maximum (3 MB) must pass"
    assert json.loads(body)["bytes"] == 3_000_000
    status, _, body = _request(port, "POST", "/webhook/whatsapp", b"x" * 3_200_000)
    # Caddy >= 2.7 (the image) answers 413; Debian's 2.6 answers 502. Either way it is refused
    # and the ingress never gets the oversized body.
    assert status in {413, 502}, status
    assert b"upstream" not in body
    assert upstreams["ingress"].largest_body == 3_000_000
    status, _, body = _request(port, "POST", "/api/v1/knowledge/upload", b"x" * 4_000_000)
    assert status == 200, "the API's own, larger limit (API_MAX_BODY_SIZE) applies to /api"


def test_caddy_sets_security_headers(caddy_in_front_of_stubs: tuple[int, dict[str, Any]]) -> None:
    port, _ = caddy_in_front_of_stubs
    for path in ("/api/v1/me", "/nothing-here"):
        _, headers, _ = _request(port, "GET", path)
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["strict-transport-security"].startswith("max-age=")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "server" not in headers


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_a_slim_non_root_image() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "pip install ." in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.findall(r"^CMD (.+)$", text, re.M)[-1] == '["chatmill", "--help"]'
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line and line[0] != "#"}
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) \S+$", text, re.M):
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source not in ignored, f"COPY {source} is excluded by {DOCKERIGNORE.name}"
    for needed in ("sql", "windmill_scripts", "chatmill"):
        assert re.search(rf"^COPY {needed} ", text, re.M), needed


# ---------------------------------------------------------------- monitoring


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def test_prometheus_scrapes_every_app() -> None:
    config = _load_yaml(MONITORING / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, port in APP_SERVICES.items():
        job = jobs[f"chatmill-{name}"]
        assert job["metrics_path"] == "/metrics"
        assert job["dns_sd_configs"][0]["names"] == [name]
        assert job["dns_sd_configs"][0]["port"] == port
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_cover_the_operational_risks() -> None:
    rules = _load_yaml(MONITORING / "alerts.yml")
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {
        "ChatmillAppDown",
        "ChatmillOutboxBacklogAge",
        "ChatmillWebhook5xxRate",
        "ChatmillWebhookDatabaseUnavailable",
        "ChatmillWindmillQueueDepth",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name


def test_grafana_dashboard_is_valid_json_with_queries() -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "chatmill-overview.json").read_text())
    assert dashboard["uid"] == "chatmill-overview"
    datasource = _load_yaml(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"] for target in panel["targets"]), panel["title"]


def test_promtool_accepts_config_and_rules() -> None:
    promtool = _promtool()
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run(
            [promtool, *args],
            cwd=MONITORING,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _promtool()
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "chatmill-overview.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", "dashboard_rules.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- shell scripts


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shell_scripts_parse_and_are_executable(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script.name} must be executable (git add --chmod=+x)"
    assert "set -euo pipefail" in script.read_text()
