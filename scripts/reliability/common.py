"""Shared helpers of the reliability scripts: processes, HTTP on loopback, the sandbox, the
service binary and PostgreSQL queries. They use the standard library only, and `psql` runs
the database queries.

Every process a script starts is recorded here and stopped by its pid when the script exits.
Nothing is sent anywhere but 127.0.0.1.
"""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
SERVICE_BIN = os.path.join(TARGET_DIR, "debug", "workforce-service")
SANDBOX_BIN = os.path.join(TARGET_DIR, "debug", "workforce-sandbox")
DATABASE_SERVER = os.environ.get("RELIABILITY_DATABASE_SERVER", "postgres://postgres@127.0.0.1:5432")

# Ten region codes that pass the service's region check; the sandbox serves whichever regions
# its topology lists.
REGIONS = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1",
    "eu-west-2", "eu-central-1", "ap-northeast-1", "ap-southeast-1", "ap-southeast-2",
]

# Fixed ids of the sandbox's built-in us-east-1 topology, which every region here copies.
VPC = "vpc-0a10000000000000a"
SUBNETS = ["subnet-0a10000000000001a", "subnet-0a10000000000002a", "subnet-0a10000000000003a"]
SECURITY_GROUP = "sg-0a10000000000001a"

_started = []


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_dir(name):
    """Creates a directory for this run's logs and files."""
    return tempfile.mkdtemp(prefix=f"wfs-{name}-")


def build():
    """Builds the service and sandbox binaries into CARGO_TARGET_DIR."""
    log(f"building the binaries into {TARGET_DIR}")
    subprocess.run(
        ["cargo", "build", "--quiet", "--workspace", "--bins"],
        cwd=REPO, check=True, env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR},
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(args, log_path, env=None):
    """Starts a process with stdout and stderr in `log_path` and records it for cleanup."""
    output = open(log_path, "ab")
    process = subprocess.Popen(
        args, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    _started.append(process)
    return process


def stop_process(process, sig=signal.SIGTERM, timeout=20):
    """Sends `sig` to one process started here and waits for it to exit."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    if process in _started:
        _started.remove(process)


@atexit.register
def _stop_all():
    for process in list(_started):
        stop_process(process, signal.SIGKILL)


def request(method, url, body=None, key=None, timeout=15):
    """Sends one request; returns (status, parsed JSON or text, headers, seconds taken).
    A connection failure returns status 0."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data is not None else {}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), error.headers
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error), {}, time.monotonic() - started
    elapsed = time.monotonic() - started
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed, response_headers, elapsed


def wait_until(check, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def make_topology(accounts, regions):
    """Returns a topology with every region of every account shaped like the built-in
    us-east-1, and an access key id `AKIDRELIABILITY<n>` for each account."""
    built_in = json.loads(subprocess.run(
        [SANDBOX_BIN, "--print-topology"], check=True, capture_output=True, text=True,
    ).stdout)
    template = json.dumps(built_in["accounts"]["123456789012"]["regions"]["us-east-1"])
    topology = {"default_account": accounts[0], "access_keys": {}, "accounts": {}}
    for index, account in enumerate(accounts):
        topology["access_keys"][access_key(index)] = account
        topology["accounts"][account] = {
            "regions": {region: json.loads(template.replace("us-east-1", region)) for region in regions}
        }
    return topology


def access_key(index):
    return f"AKIDRELIABILITY{index}"


class Sandbox:
    """The standalone sandbox binary on a free loopback port."""

    def __init__(self, directory, topology, delay_ms):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        topology_path = os.path.join(directory, "topology.json")
        with open(topology_path, "w") as file:
            json.dump(topology, file)
        self.process = start_process(
            [SANDBOX_BIN, "--port", str(self.port), "--delay-ms", str(delay_ms),
             "--topology", topology_path],
            os.path.join(directory, "sandbox.log"),
        )
        wait_until(lambda: request("GET", f"{self.url}/_sandbox/health")[0] == 200, 30,
                   "the sandbox to start")

    def control(self, method, path, body=None):
        status, parsed, _, _ = request(method, f"{self.url}/_sandbox/{path}", body)
        assert status in (200, 204), f"sandbox {method} {path}: {status} {parsed}"
        return parsed

    def stop(self):
        stop_process(self.process)


class Database:
    """One database on the PostgreSQL server, dropped by `drop`."""

    def __init__(self, name):
        self.name = name
        self.url = f"{DATABASE_SERVER}/{name}"

    def query(self, sql):
        """Runs one query with psql and returns its rows as lists of strings."""
        result = subprocess.run(
            ["psql", self.url, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=False, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed with {result.returncode}: {result.stderr.strip()}")
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def drop(self):
        subprocess.run(
            ["psql", f"{DATABASE_SERVER}/postgres", "-X", "-q", "-c",
             f'drop database if exists "{self.name}" with (force)'],
            check=False, capture_output=True,
        )


def new_database(prefix):
    database = Database(f"wfs_{prefix}_{uuid.uuid4().hex[:10]}")
    atexit.register(database.drop)
    return database


def create_api_key(database_url, name):
    """Applies the migrations and creates an admin API key with the service binary."""
    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run([SERVICE_BIN, "migrate"], check=True, env=env, capture_output=True)
    result = subprocess.run(
        [SERVICE_BIN, "api-keys", "create", "--name", name, "--role", "admin"],
        check=True, env=env, capture_output=True, text=True,
    )
    return result.stdout.strip().splitlines()[-1]


class Service:
    """The service binary in AWS mode, pointed at the sandbox with dummy credentials."""

    def __init__(self, directory, name, database_url, sandbox_url, key_index, regions,
                 extra_args=(), port=None):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(directory, f"{name}.log")
        self.args = [
            SERVICE_BIN, "--mode=aws", f"--listen=127.0.0.1:{self.port}",
            f"--database-url={database_url}", f"--regions={','.join(regions)}",
            "--log-format=json", "--rate-limit-per-minute=0", *extra_args,
        ]
        self.env = {
            "AWS_ENDPOINT_URL_SAGEMAKER": sandbox_url,
            "AWS_ENDPOINT_URL_EC2": sandbox_url,
            "AWS_ACCESS_KEY_ID": access_key(key_index),
            "AWS_SECRET_ACCESS_KEY": "reliability-secret",
            "AWS_REGION": regions[0],
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "RUST_LOG": "workforce_service=info",
        }
        self.process = None

    def start(self, wait=True):
        self.process = start_process(self.args, self.log_path, self.env)
        if wait:
            wait_until(self.ready, 60, f"{self.name} to become ready")
        return self

    def ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
        return request("GET", f"{self.url}/readyz", timeout=3)[0] == 200

    def kill(self):
        stop_process(self.process, signal.SIGKILL)

    def stop(self):
        stop_process(self.process, signal.SIGTERM)

    def log_events(self):
        """Returns the JSON log lines written so far."""
        events = []
        with open(self.log_path, errors="replace") as file:
            for line in file:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events


def cognito_body(name, region, with_vpc):
    body = {"name": name, "cognito_config": {"user_pool": f"{region}_AbC123", "client_id": "portal"}}
    if with_vpc:
        body["vpc_config"] = vpc_body(SUBNETS[:2])
    return body


def vpc_body(subnets):
    return {"vpc_id": VPC, "security_group_ids": [SECURITY_GROUP], "subnets": subnets}


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def result_line(scenario, passed, summary):
    print(f"{'PASS' if passed else 'FAIL'} {scenario}: {summary}", flush=True)


def main_wrapper(scenario, body):
    """Runs `body()`, which returns a summary or raises AssertionError, and prints one
    PASS/FAIL line. Exits 1 on failure."""
    try:
        summary = body()
    except AssertionError as error:
        result_line(scenario, False, str(error))
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - any crash is a failed scenario
        result_line(scenario, False, f"{type(error).__name__}: {error}")
        raise
    result_line(scenario, True, summary)
