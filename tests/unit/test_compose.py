"""Static checks of the production stack (docker-compose.yml, Dockerfile): no Docker engine here."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tutorledger.infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK_SCRIPT = ROOT / "infra" / "docker" / "healthcheck.py"
HEALTHCHECK_BIN = "/usr/local/bin/tutorledger-healthcheck"

REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD", "API_KEYS_FILE"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# $$ | ${...} | $NAME, as compose interpolates them
_VAR = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_]\w*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>.*))?", re.DOTALL)


class MissingVariable(Exception):
    """A `${NAME:?message}` variable is unset: compose refuses to start."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose variable substitution for the forms this project uses."""

    def one(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        if match["plain"]:
            return env.get(match["plain"], "")
        braced = _BRACED.fullmatch(match["braced"])
        assert braced, f"unsupported substitution ${{{match['braced']}}}"
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        value = env.get(name)
        is_set = value is not None and (value != "" or not (op or "").startswith(":"))
        if is_set:
            return value or ""
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VAR.sub(one, text)


def _walk(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, env) for value in node]
    return node


@cache
def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(key) + _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def required_variables() -> set[str]:
    """Variables written `${NAME:?...}` or `${NAME?...}`: no default, compose stops without them."""
    text = "\n".join(_strings(raw_compose()))
    return set(re.findall(r"\$\{([A-Za-z_]\w*):?\?", text))


@cache
def compose() -> dict[str, Any]:
    """The compose file as docker compose would see it with dummy values for the secrets."""
    env = {name: f"placeholder-{name.lower()}" for name in required_variables()}
    resolved = _walk(raw_compose(), env)
    assert isinstance(resolved, dict)
    return resolved


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def app_services() -> list[str]:
    """Services built from our Dockerfile (entrypoint `tutorledger`)."""
    return sorted(name for name, spec in services().items() if "build" in spec)


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def dependencies(spec: dict[str, Any]) -> dict[str, str]:
    deps = spec.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def is_one_shot(name: str) -> bool:
    """Runs to completion: no restart, and someone waits for it to finish successfully."""
    waited_for = any(
        dependencies(spec).get(name) == "service_completed_successfully"
        for spec in services().values()
    )
    return services()[name].get("restart", "no") == "no" and waited_for


def has_healthcheck(spec: dict[str, Any]) -> bool:
    check = spec.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable", False)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in os.environ:
        if key.startswith("TUTORLEDGER_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_stack_has_the_production_components() -> None:
    assert {"postgres", "kafka", "clickhouse", "api", "relay", "projector"} <= set(services())
    assert {"api", "relay", "projector"} <= set(app_services())


@pytest.mark.parametrize("name", sorted(services()))
def test_every_image_is_pinned_to_an_explicit_tag(name: str) -> None:
    spec = services()[name]
    if "image" not in spec:
        assert "build" in spec, f"{name}: neither image nor build"
        return
    image = spec["image"]
    reference, _, digest = image.partition("@")
    last = reference.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    assert digest or tag, f"{name}: untagged image {image!r}"
    assert tag != "latest", f"{name}: {image!r} floats on latest"


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_healthcheck_or_is_a_one_shot(name: str) -> None:
    spec = services()[name]
    if is_one_shot(name):
        assert spec.get("command"), f"{name}: a one-shot needs an explicit command"
        return
    assert has_healthcheck(spec), f"{name}: long-running service without a healthcheck"
    assert spec.get("restart") == "unless-stopped", f"{name}: should restart unless stopped"


def test_depends_on_targets_exist_and_conditions_fit() -> None:
    for name, spec in services().items():
        for target, condition in dependencies(spec).items():
            assert target in services(), f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: bad condition {condition}"
            if condition == "service_healthy":
                assert has_healthcheck(services()[target]), f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert is_one_shot(target), f"{target} is waited on but is not a one-shot"
    for name in app_services():
        deps = dependencies(services()[name])
        assert deps and all(c != "service_started" for c in deps.values()), name


def test_secrets_have_no_defaults_and_no_literals() -> None:
    assert required_variables() >= REQUIRED_SECRETS
    for text in _strings(raw_compose()):
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
            assert re.fullmatch(r"\$\{[A-Za-z_]\w*:\?[^}]*\}", password), text
    for name, spec in raw_compose()["services"].items():
        for key, value in environment(spec).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert re.fullmatch(r"\$\{[A-Za-z_]\w*:\?[^}]*\}", value), f"{name}.{key}"
    with pytest.raises(MissingVariable):
        _walk(raw_compose(), {})


def test_every_tutorledger_variable_is_a_settings_field() -> None:
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    assert prefix == "TUTORLEDGER_"
    fields = {prefix + name.upper() for name in Settings.model_fields}
    used = set(re.findall(r"TUTORLEDGER_[A-Z0-9_]+", "\n".join(_strings(raw_compose()))))
    for spec in services().values():
        used |= {key for key in environment(spec) if key.startswith(prefix)}
    assert used, "compose sets no TUTORLEDGER_* variable"
    assert used <= fields, f"not Settings fields: {sorted(used - fields)}"


@pytest.mark.parametrize("name", app_services())
def test_app_environment_parses_with_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(environment(services()[name]), monkeypatch)
    assert settings.store_kind == "postgresql"
    assert settings.projection_kind == "clickhouse"
    assert not settings.embedded_stream
    healthcheck = load_healthcheck_script()
    for host, _port in healthcheck.endpoints(settings):
        assert host in services(), f"{name}: settings point at unknown host {host}"


def test_api_keys_file_is_the_mounted_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    api = services()["api"]
    settings = settings_from(environment(api), monkeypatch)
    assert settings.api_keys_file is not None
    mounted = set()
    for secret in api.get("secrets", []):
        source = secret if isinstance(secret, str) else secret["source"]
        target = source if isinstance(secret, str) else secret.get("target", source)
        assert source in compose()["secrets"], f"undeclared secret {source}"
        mounted.add(target if target.startswith("/") else f"/run/secrets/{target}")
    assert str(settings.api_keys_file) in mounted
    example = json.loads((ROOT / "infra" / "docker" / "api-keys.example.json").read_text())
    assert {"admin"} <= {entry["role"] for entry in example}


def test_kafka_init_creates_the_topics_the_apps_use() -> None:
    init_env = environment(services()["kafka-init"])
    for name in app_services():
        env = environment(services()[name])
        for key in ("TUTORLEDGER_KAFKA_TOPIC", "TUTORLEDGER_KAFKA_DEAD_LETTER_TOPIC"):
            assert env[key] == init_env[key], f"{name}.{key} differs from kafka-init"


def test_api_port_is_consistent() -> None:
    api = services()["api"]
    command = api["command"]
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert any(str(mapping).endswith(f":{port}") for mapping in api["ports"])
    assert f"127.0.0.1:{port}/healthz" in " ".join(api["healthcheck"]["test"])


def cli_subcommands() -> set[str]:
    try:
        from tutorledger.api.cli.main import app
    except ImportError as exc:  # the CLI is written concurrently
        pytest.skip(f"tutorledger.api.cli.app not there yet ({exc})")
    import typer

    command = typer.main.get_command(app)
    return set(getattr(command, "commands", {}))


@pytest.mark.parametrize("name", app_services())
def test_app_services_run_an_existing_cli_subcommand(name: str) -> None:
    command = services()[name]["command"]
    argv = command.split() if isinstance(command, str) else command
    assert argv[0] in cli_subcommands(), f"{name}: `tutorledger {argv[0]}` does not exist"


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_is_pinned_non_root_and_runs_tutorledger() -> None:
    instructions = dockerfile_instructions()
    stages: set[str] = set()
    final_stage: list[tuple[str, str]] = []
    for op, arg in instructions:
        if op == "FROM":
            words = [w for w in arg.split() if not w.startswith("--")]
            image = words[0]
            if image not in stages:
                assert "$" not in image, f"base image {image!r} must be literal"
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                assert tag and tag != "latest", f"base image {image!r} is not pinned"
                assert "@" in image or re.search(r"\d", tag), f"{image!r}: tag without version"
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
            final_stage = []
        final_stage.append((op, arg))
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users, "final stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}, "final stage runs as root"
    entrypoints = [json.loads(arg) for op, arg in final_stage if op == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == ["tutorledger"]
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    wheel_path = "sh infra/docker/install-wheel.sh /src /tmp/dist /opt/venv/bin/python"
    assert wheel_path in runs, "the image must install the wheel exactly as the release check"
    assert "libpq5" in runs, "psycopg 3 (pure Python) needs libpq5 at runtime"
    copies = [arg for op, arg in final_stage if op == "COPY"]
    assert any(c.endswith(HEALTHCHECK_BIN) and "infra/docker/healthcheck.py" in c for c in copies)


def test_compose_healthchecks_use_what_the_image_has() -> None:
    for name in app_services():
        test = services()[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == Path(HEALTHCHECK_BIN).name, name


def test_dockerignore_keeps_state_and_secrets_out_but_not_the_package() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    assert {".git", "var", ".env"} <= patterns
    needed = {"pyproject.toml", "README.md", "infra", "infra/docker", "infra/docker/healthcheck.py"}
    needed |= {"domain", "api", "projections", "consumers", "bench"}
    assert not patterns & needed


def load_healthcheck_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tutorledger_healthcheck", HEALTHCHECK_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_script_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    healthcheck = load_healthcheck_script()
    settings = settings_from(environment(services()["relay"]), monkeypatch)
    assert healthcheck.endpoints(settings) == [
        ("postgres", 5432),
        ("kafka", 9092),
        ("clickhouse", 9000),
    ]
    assert healthcheck.endpoints(settings_from({}, monkeypatch)) == []  # embedded: nothing
    assert healthcheck.main(["nonsense"]) == 2
