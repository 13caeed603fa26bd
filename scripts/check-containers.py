#!/usr/bin/env python3
"""Check the Dockerfile and docker-compose.yml against the repository without a Docker engine.

It checks that:
- every path the Dockerfile copies from the build context exists and is not in .dockerignore,
- every package, binary and stage the Dockerfile names exists,
- each health check calls a route of its stage's program on a port the stage exposes,
- every variable and flag the compose file sets is one the program reads,
- every port and URL points at a compose service that listens there.

It cannot check that the images build or that the containers start, which needs `docker compose
up --build` on a machine with a Docker engine.

Needs Python 3.11 (tomllib) and PyYAML. Without PyYAML it creates a virtual environment in
scripts/.venv, installs the pinned PyYAML there and runs itself again with that interpreter.
Exits 0 when every check passes and 1 otherwise, listing each failure.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYYAML_PIN = "PyYAML==6.0.3"
VENV = ROOT / "scripts" / ".venv"


def import_yaml():
    """Return the yaml module, re-running this script in a venv with PyYAML if it is missing."""
    try:
        import yaml

        return yaml
    except ImportError:
        pass
    if os.environ.get("CHECK_CONTAINERS_IN_VENV") == "1":
        sys.exit(f"check-containers: PyYAML is still missing in {VENV}; delete that folder and run again")
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"check-containers: creating {VENV} for {PYYAML_PIN}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", PYYAML_PIN],
        check=True,
    )
    env = dict(os.environ, CHECK_CONTAINERS_IN_VENV="1")
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], env)


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.passed = 0

    def check(self, condition: bool, ok: str, error: str) -> bool:
        if condition:
            self.passed += 1
            print(f"  ok    {ok}")
        else:
            self.errors.append(error)
            print(f"  FAIL  {error}")
        return condition


# ---------------------------------------------------------------- what the code accepts


@dataclass
class Program:
    """The flags, environment variables and routes of one binary, read from its source."""

    name: str
    flags: set[str] = field(default_factory=set)
    subcommands: set[str] = field(default_factory=set)
    env: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)


ARG_RE = re.compile(r"#\[arg\(([^\]]*)\)\]\s*(?:///[^\n]*\n\s*)*(?:pub\s+)?(\w+)\s*:", re.S)


def clap_args(source: str) -> tuple[set[str], set[str]]:
    """Return the long flags and env names of the clap `#[arg(...)]` fields in a Rust source."""
    flags, env = set(), set()
    for attrs, field_name in ARG_RE.findall(source):
        if re.search(r"\blong\b", attrs):
            explicit = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
            flags.add("--" + (explicit.group(1) if explicit else field_name.replace("_", "-")))
        env.update(re.findall(r'\benv\s*=\s*"([^"]+)"', attrs))
    return flags, env


def subcommands(source: str) -> set[str]:
    """Return the subcommand names of `pub enum Command` (clap's kebab-case of each variant)."""
    match = re.search(r"pub enum Command\s*\{(.*?)\n\}", source, re.S)
    if not match:
        return set()
    names = set()
    for variant in re.findall(r"^\s{4}(\w+)\s*[,({]", match.group(1), re.M):
        names.add(re.sub(r"(?<!^)(?=[A-Z])", "-", variant).lower())
    names.update(re.findall(r'name\s*=\s*"([^"]+)"', match.group(1)))
    return names


def aws_sdk_env() -> tuple[set[str], str]:
    """Return the AWS_* variables the locked AWS SDK crates read, and where they came from.

    The names are the string literals in the registry sources of aws-config, aws-types and
    aws-runtime at the versions in Cargo.lock, plus the per-service endpoint variables that
    aws-types derives from each client's service id (`AWS_ENDPOINT_URL_SAGEMAKER`). Without
    those sources (no `cargo build` yet) it falls back to a short list of well-known names.
    """
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"]}
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    registries = sorted((cargo_home / "registry" / "src").glob("*"))
    names: set[str] = set()
    found = []
    for crate in ["aws-config", "aws-types", "aws-runtime", "aws-sdk-sagemaker", "aws-sdk-ec2"]:
        if crate not in versions:
            continue
        for registry in registries:
            crate_dir = registry / f"{crate}-{versions[crate]}" / "src"
            if not crate_dir.is_dir():
                continue
            found.append(f"{crate}-{versions[crate]}")
            for path in crate_dir.rglob("*.rs"):
                text = path.read_text(errors="replace")
                names.update(re.findall(r'"(AWS_[A-Z0-9_]+)"', text))
                for service_id, prefix in re.findall(r'service_config_key\(\s*"([^"]+)",\s*"(AWS_[A-Z0-9_]+)"', text):
                    names.add(f"{prefix}_{service_id.upper().replace(' ', '_').replace('-', '_')}")
            break
    if found:
        return names, "sources of " + ", ".join(found)
    fallback = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_EC2",
    }  # fmt: skip
    return fallback, "a built-in list (no AWS SDK sources under $CARGO_HOME/registry/src)"


def load_programs(report: Report) -> dict[str, Program]:
    config = (ROOT / "src" / "config.rs").read_text()
    service = Program("workforce-service")
    service.flags, service.env = clap_args(config)
    service.subcommands = subcommands(config)
    sdk_env, source = aws_sdk_env()
    service.env |= sdk_env | {"RUST_LOG"}
    openapi = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    service.routes = set(openapi["paths"]) | {"/healthz", "/docs", "/openapi.json"}
    print(f"  info  workforce-service: {len(service.flags)} flags and {len(service.env)} variables "
          f"(src/config.rs, RUST_LOG, AWS SDK names from {source})")

    sandbox_src = ROOT / "sandbox" / "src"
    sandbox = Program("workforce-sandbox")
    sandbox.flags, sandbox.env = clap_args((sandbox_src / "main.rs").read_text())
    sandbox.env.add("RUST_LOG")
    sandbox.routes = axum_routes(sandbox_src)
    print(f"  info  workforce-sandbox: flags {sorted(sandbox.flags)}, routes {sorted(sandbox.routes)}")
    report.check(bool(service.env) and bool(sandbox.env), "found the env names of both programs",
                 "no `env = \"...\"` names found in src/config.rs or sandbox/src/main.rs")
    return {service.name: service, sandbox.name: sandbox}


def axum_routes(src: Path) -> set[str]:
    """Return the axum route paths under a source folder, with one level of `.nest` prefixes.

    A `.nest("/prefix", module::router())` call puts "/prefix" before the routes of
    module.rs or module/mod.rs; deeper nesting is not followed.
    """
    routes_by_module: dict[str, set[str]] = {}
    prefixes: dict[str, str] = {}
    for path in src.rglob("*.rs"):
        text = path.read_text()
        module = path.parent.name if path.name == "mod.rs" else path.stem
        routes_by_module.setdefault(module, set()).update(re.findall(r'\.route\(\s*"(/[^"]*)"', text))
        prefixes.update({m: p for p, m in re.findall(r'\.nest\(\s*"(/[^"]*)",\s*(\w+)::router\(\)', text)})
    routes = set()
    for module, paths in routes_by_module.items():
        routes.update(prefixes.get(module, "") + p for p in paths)
    return routes


def cargo_binaries() -> tuple[set[str], set[str]]:
    """Return the package names and binary names of the workspace."""
    packages, binaries = set(), set()
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = [ROOT] + [ROOT / m for m in root.get("workspace", {}).get("members", [])]
    for member in members:
        manifest = tomllib.loads((member / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        packages.add(name)
        if (member / "src" / "main.rs").exists():
            binaries.add(name)
        binaries.update(b["name"] for b in manifest.get("bin", []))
    return packages, binaries


# ---------------------------------------------------------------- the Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    binaries: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=dict)
    expose: set[int] = field(default_factory=set)
    entrypoint: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    outputs: set[str] = field(default_factory=set)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """Split a Dockerfile into (INSTRUCTION, arguments), joining continued lines."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    arguments = arguments.strip()
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> str | None:
    """Return the .dockerignore pattern that excludes a path or one of its parents, if any."""
    parts = Path(relative).parts
    for pattern in patterns:
        bare = pattern[3:] if pattern.startswith("**/") else None
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or (bare and fnmatch.fnmatchcase(parts[depth - 1], bare)):
                return pattern
    return None


def check_dockerfile(report: Report, programs: dict[str, Program]) -> dict[str, Stage]:
    print("Dockerfile")
    packages, binaries = cargo_binaries()
    patterns = dockerignore_patterns()
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, arguments in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            parent = stages.get(words[0])
            stage = Stage(name=name, base=words[0])
            if parent:
                stage.binaries |= parent.binaries
                stage.env |= parent.env
                stage.entrypoint = list(parent.entrypoint)
            stages[name] = stage
            continue
        assert stage is not None, "a Dockerfile instruction comes before the first FROM"
        if keyword in ("COPY", "ADD"):
            words = shlex.split(arguments)
            options = [w for w in words if w.startswith("--")]
            sources, destination = [w for w in words if not w.startswith("--")][:-1], words[-1]
            source_stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
            if source_stage:
                report.check(source_stage in stages, f"COPY --from={source_stage} names an earlier stage",
                             f"COPY --from={source_stage}: no earlier stage has that name")
                for source in sources:
                    produced = stages.get(source_stage, Stage("", "")).outputs
                    report.check(source in produced, f"{source} is produced by stage {source_stage}",
                                 f"COPY --from={source_stage} {source}: the stage's RUN does not copy it there")
                    binary = Path(source).name
                    if report.check(binary in binaries, f"binary {binary} is a workspace binary",
                                    f"{binary} is not a [[bin]] or package binary in the Cargo manifests"):
                        stage.binaries.add(binary)
                continue
            for source in sources:
                exists = (ROOT / source).exists()
                report.check(exists, f"COPY source {source} exists", f"COPY source {source} does not exist")
                pattern = ignored(source, patterns)
                report.check(pattern is None, f"COPY source {source} is not in .dockerignore",
                             f"COPY source {source} is excluded by the .dockerignore pattern {pattern!r}")
        elif keyword == "RUN":
            for package in re.findall(r"(?:-p|--package)\s+([\w-]+)", arguments):
                report.check(package in packages, f"cargo package {package} exists",
                             f"cargo -p {package}: no workspace package has that name")
            for binary in re.findall(r"target/release/([\w-]+)", arguments):
                report.check(binary in binaries, f"target/release/{binary} is a workspace binary",
                             f"target/release/{binary} is not a [[bin]] or package binary in the Cargo manifests")
            copy = re.search(r"\bcp\s+((?:target/release/[\w-]+\s+)+)(/\S+?)/?(?:\s|$)", arguments)
            if copy:
                stage.outputs |= {f"{copy.group(2)}/{Path(p).name}" for p in copy.group(1).split()}
        elif keyword == "ENV":
            stage.env.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', arguments)))
        elif keyword == "EXPOSE":
            stage.expose |= {int(p.split("/")[0]) for p in arguments.split()}
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = exec_form(arguments)
        elif keyword == "HEALTHCHECK":
            words = arguments.split()
            index = words.index("CMD")
            stage.healthcheck = exec_form(" ".join(words[index + 1:]))

    for stage in stages.values():
        if not stage.entrypoint:
            continue
        program = programs.get(Path(stage.entrypoint[0]).name)
        report.check(Path(stage.entrypoint[0]).name in stage.binaries,
                     f"stage {stage.name}: ENTRYPOINT {stage.entrypoint[0]} is copied into the image",
                     f"stage {stage.name}: ENTRYPOINT {stage.entrypoint[0]} is not copied into the image")
        if program is None:
            continue
        for variable in stage.env:
            report.check(variable in program.env, f"stage {stage.name}: ENV {variable} is read by {program.name}",
                         f"stage {stage.name}: ENV {variable} is not read by {program.name}")
        report.check(bool(stage.healthcheck), f"stage {stage.name} has a HEALTHCHECK",
                     f"stage {stage.name} has no HEALTHCHECK")
        urls = [w for w in stage.healthcheck if w.startswith("http")]
        for url in urls:
            parts = urlsplit(url)
            report.check(parts.path in program.routes, f"stage {stage.name}: health check path {parts.path} is a route",
                         f"stage {stage.name}: health check path {parts.path} is not a route of {program.name}")
            report.check(parts.port in stage.expose, f"stage {stage.name}: health check port {parts.port} is exposed",
                         f"stage {stage.name}: health check port {parts.port} is not in EXPOSE {sorted(stage.expose)}")
        if stage.healthcheck and stage.healthcheck[0] == "curl":
            report.check("curl" in apt_installs(), f"stage {stage.name}: curl for the health check is installed",
                         f"stage {stage.name}: the health check calls curl, but no apt-get install line installs it")
    return stages


def apt_installs() -> set[str]:
    """Return the words of every `apt-get install` command in the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    words: set[str] = set()
    for command in re.findall(r"apt-get install([^&;]*)", text):
        words.update(command.split())
    return words


# ---------------------------------------------------------------- docker-compose.yml


def interpolate(value: str) -> str:
    """Resolve ${VAR}, ${VAR:-default} and ${VAR-default} as compose does."""

    def replace(match: re.Match) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3) or ""
        current = os.environ.get(name)
        if operator == ":-":
            return current if current else default
        if operator == "-":
            return current if current is not None else default
        return current or ""

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", replace, value)


def listen_port(program: Program, command: list[str], env: dict[str, str]) -> int | None:
    """Return the container port a program listens on, from its flags, env or default."""
    if program.name == "workforce-service":
        listen = flag_value(command, "--listen") or env.get("WORKFORCE_LISTEN") or "127.0.0.1:8080"
        return int(listen.rsplit(":", 1)[1])
    port = flag_value(command, "--port") or env.get("SANDBOX_PORT") or "4566"
    return int(port)


def flag_value(command: list[str], flag: str) -> str | None:
    for index, word in enumerate(command):
        if word == flag and index + 1 < len(command):
            return command[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


@dataclass
class Run:
    """The program, command line and environment of one compose service built from the Dockerfile."""

    program: Program
    command: list[str]
    env: dict[str, str]
    stage: Stage
    calls: list[list[str]]
    one_shot: bool


SHELLS = {"sh", "bash", "dash"}


def check_call(report: Report, service: str, program: Program, call: list[str]) -> None:
    """Check the subcommand and the flags of one command line of a program."""
    words = call[1:] if call and Path(call[0]).name == program.name else call
    if words and not words[0].startswith("-") and program.subcommands:
        report.check(words[0] in program.subcommands, f"{service}: subcommand {words[0]} exists",
                     f"{service}: {words[0]} is not a subcommand of {program.name}")
        if words[0] != "serve":
            return  # A subcommand's own flags are not read by this script.
    for word in words:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            report.check(flag in program.flags, f"{service}: flag {flag} is accepted by {program.name}",
                         f"{service}: flag {flag} is not a flag of {program.name} (flags: {sorted(program.flags)})")


def check_compose(report: Report, yaml, programs: dict[str, Program], stages: dict[str, Stage]) -> None:
    print("docker-compose.yml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose.get("services", {})
    listening: dict[str, int] = {}
    known_images = {"postgres": 5432}
    runs: dict[str, Run] = {}

    for name, spec in services.items():
        env = {k: interpolate(str(v)) for k, v in (spec.get("environment") or {}).items()}
        command = [interpolate(str(w)) for w in (spec.get("command") or [])]
        build = spec.get("build")
        if build is None:
            image = str(spec.get("image", ""))
            port = next((p for prefix, p in known_images.items() if image.startswith(prefix + ":")), None)
            report.check(port is not None, f"{name}: image {image} listens on {port}",
                         f"{name}: image {image} is not one this script knows; add its port to known_images")
            if port:
                listening[name] = port
            continue
        target = build.get("target") if isinstance(build, dict) else None
        context = build.get("context", ".") if isinstance(build, dict) else build
        report.check((ROOT / context / "Dockerfile").exists(), f"{name}: build context {context} has a Dockerfile",
                     f"{name}: build context {context} has no Dockerfile")
        stage = stages.get(target or list(stages)[-1])
        if not report.check(stage is not None, f"{name}: build target {target} is a Dockerfile stage",
                            f"{name}: build target {target} is not a stage of the Dockerfile"):
            continue
        program = programs[Path(stage.entrypoint[0]).name]
        entrypoint = [str(w) for w in spec.get("entrypoint") or []]
        shell = bool(entrypoint) and Path(entrypoint[0]).name in SHELLS
        if shell:
            # A shell script: check every call of the image's program in it.
            script = " ".join(command)
            calls = [shlex.split(program.name + c) for c in re.findall(rf"\b{re.escape(program.name)}\b([^|&;]*)", script)]
            report.check(bool(calls), f"{name}: the shell command calls {program.name}",
                         f"{name}: the shell command never calls {program.name}, the program of its image")
        else:
            if entrypoint:
                program = programs.get(Path(entrypoint[0]).name, program)
            calls = [command]
        for call in calls:
            check_call(report, name, program, call)
        one_shot = shell or any(c and not c[0].startswith("-") and c[0] != "serve" for c in calls)
        stage_env = dict(stage.env)
        stage_env.update(env)
        runs[name] = Run(program, command, stage_env, stage, calls, one_shot)
        if not one_shot:
            listening[name] = listen_port(program, command, stage_env)
        for variable in env:
            report.check(variable in program.env, f"{name}: {variable} is read by {program.name}",
                         f"{name}: environment variable {variable} is not read by {program.name}")

    for name, run in runs.items():
        spec = services[name]
        program, command, env, stage = run.program, run.command, run.env, run.stage
        if not run.one_shot:
            check_listener(report, name, spec, run, listening[name])
        for dependency, condition in (spec.get("depends_on") or {}).items():
            report.check(dependency in services, f"{name}: depends on the service {dependency}",
                         f"{name}: depends_on {dependency}, which is not a compose service")
            if isinstance(condition, dict) and condition.get("condition") == "service_completed_successfully":
                report.check(dependency in runs and runs[dependency].one_shot,
                             f"{name}: {dependency} is a one-shot job, so it can complete",
                             f"{name}: waits for {dependency} to complete, but {dependency} is a server")
            if isinstance(condition, dict) and condition.get("condition") == "service_healthy":
                dep = services.get(dependency, {})
                dep_stage = stages.get((dep.get("build") or {}).get("target", "")) if isinstance(dep.get("build"), dict) else None
                has_check = "healthcheck" in dep or bool(dep_stage and dep_stage.healthcheck)
                report.check(has_check, f"{name}: {dependency} has a health check for service_healthy",
                             f"{name}: waits for {dependency} to be healthy, but it has no health check")
        for variable, value in env.items():
            if "://" not in value:
                continue
            parts = urlsplit(value)
            host_port = parts.port or {"http": 80, "https": 443, "postgres": 5432}.get(parts.scheme)
            if report.check(parts.hostname in services, f"{name}: {variable} points at the service {parts.hostname}",
                            f"{name}: {variable} host {parts.hostname} is not a compose service"):
                report.check(listening.get(parts.hostname) == host_port,
                             f"{name}: {variable} uses port {host_port}, where {parts.hostname} listens",
                             f"{name}: {variable} uses port {host_port}, but {parts.hostname} listens on {listening.get(parts.hostname)}")
            if parts.scheme.startswith("postgres") and parts.hostname in services:
                db_env = services[parts.hostname].get("environment") or {}
                report.check(parts.username == db_env.get("POSTGRES_USER", "postgres")
                             and (parts.password or "") == str(db_env.get("POSTGRES_PASSWORD", "")),
                             f"{name}: {variable} user and password match the {parts.hostname} service",
                             f"{name}: {variable} user or password differs from POSTGRES_USER/POSTGRES_PASSWORD")
        if program.name == "workforce-service" and not run.one_shot:
            check_credentials(report, name, spec, run, runs)
        if "WORKFORCE_MODE" in env:
            report.check(env["WORKFORCE_MODE"] in ("aws", "sandbox"), f"{name}: WORKFORCE_MODE is {env['WORKFORCE_MODE']}",
                         f"{name}: WORKFORCE_MODE {env['WORKFORCE_MODE']!r} is not aws or sandbox")
        if "WORKFORCE_SECRET_KEY" in env:
            try:
                length = len(base64.b64decode(env["WORKFORCE_SECRET_KEY"], validate=True))
            except ValueError:
                length = -1
            report.check(length == 32, f"{name}: WORKFORCE_SECRET_KEY is 32 bytes of base64",
                         f"{name}: WORKFORCE_SECRET_KEY must be 32 bytes encoded as base64 (decodes to {length})")


def check_listener(report: Report, name: str, spec: dict, run: Run, port: int) -> None:
    """Check that a server listens on all interfaces, on a port its image exposes and publishes."""
    report.check(port in run.stage.expose, f"{name}: listens on {port}, which the image exposes",
                 f"{name}: listens on {port}, but its image exposes {sorted(run.stage.expose)}")
    listen = run.env.get("WORKFORCE_LISTEN") or flag_value(run.command, "--bind") or run.env.get("SANDBOX_BIND")
    if listen:
        report.check(listen.startswith("0.0.0.0") or listen.startswith("[::]"),
                     f"{name}: binds all interfaces ({listen}), so other containers reach it",
                     f"{name}: binds {listen}, which other containers cannot reach; use 0.0.0.0")
    for mapping in spec.get("ports") or []:
        container_port = int(str(mapping).rsplit(":", 1)[-1].split("/")[0])
        report.check(container_port == port, f"{name}: published port {mapping} reaches the program",
                     f"{name}: publishes container port {container_port}, but the program listens on {port}")


def check_credentials(report: Report, name: str, spec: dict, run: Run, runs: dict[str, Run]) -> None:
    """Check that the service in AWS mode has a way to authenticate callers, when it requires one.

    A service that has the `api-keys` subcommand refuses to start in AWS mode unless an API key
    exists or JWT authentication is configured. Compose can provide the key only through a
    one-shot job that runs `api-keys create` and that the service waits for.
    """
    if "api-keys" not in run.program.subcommands:
        return
    mode = flag_value(run.command, "--mode") or run.env.get("WORKFORCE_MODE", "aws")
    if mode != "aws":
        return
    jwt = all(run.env.get(v) for v in ("WORKFORCE_JWT_ISSUER", "WORKFORCE_JWT_AUDIENCE", "WORKFORCE_JWT_JWKS_URL"))
    key_jobs = [
        dependency
        for dependency, condition in (spec.get("depends_on") or {}).items()
        if isinstance(condition, dict)
        and condition.get("condition") == "service_completed_successfully"
        and dependency in runs
        and any(c[1:3] == ["api-keys", "create"] for c in runs[dependency].calls)
    ]
    report.check(jwt or bool(key_jobs),
                 f"{name}: AWS mode can authenticate callers ({'JWT settings' if jwt else 'API key from ' + ', '.join(key_jobs)})",
                 f"{name}: AWS mode refuses to start without a credential; set the WORKFORCE_JWT_* variables "
                 f"or depend (service_completed_successfully) on a job that runs `workforce-service api-keys create`")


def main() -> int:
    yaml = import_yaml()
    report = Report()
    print("Programs")
    programs = load_programs(report)
    stages = check_dockerfile(report, programs)
    check_compose(report, yaml, programs, stages)
    if report.errors:
        print(f"check-containers: {len(report.errors)} of {report.passed + len(report.errors)} checks failed:", file=sys.stderr)
        for error in report.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(f"check-containers: all {report.passed} checks passed (the images were not built: no Docker engine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
