"""A real S3-compatible server for the tests: moto's standalone server as its own process on
127.0.0.1 (no tests here; imported by tests/test_s3.py).

    from tests.s3_fixtures import s3, s3_server  # noqa: F401  (pytest fixtures)

    def test_x(s3):  # s3.url("shards") -> "s3://<fresh bucket>/shards"; s3.fs: an s3fs file system

`s3_server` (module scope) starts `python -m moto.server -H 127.0.0.1 -p PORT` on a free port (the
same module run with a parent-death signal, so a killed pytest leaves no server behind), waits until it
answers (bounded) and stops it afterwards. It runs as a separate process, not moto's in-process
threaded server: DALI's reader (the AWS SDK for C++) timed out on that one. `s3` (per
test) points the standard AWS variables at it with monkeypatch (so s3fs, botocore, DALI and any
subprocess of the test use it, and nothing reads ~/.aws or asks an instance metadata service) and
creates an empty bucket of its own. The keys are made up per session; SECRET lets tests check that
they never end up in a file or a log.
"""
from __future__ import annotations

import importlib.util
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

START_TIMEOUT_S = 30
ACCESS_KEY = "AKIDTEST" + secrets.token_hex(6).upper()
SECRET = "moto-secret-" + secrets.token_hex(12)
# `python -m moto.server ARGS`, ended by the kernel when the test process dies (PR_SET_PDEATHSIG, Linux)
_RUN_MOTO = ("import ctypes, runpy, signal, sys\n"
             "try:\n    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)\n"
             "except (OSError, AttributeError):\n    pass\n"
             "sys.argv[0] = 'moto.server'\nrunpy.run_module('moto.server', run_name='__main__', alter_sys=True)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
            return True
    except OSError:
        return False


def start_moto(log_path) -> tuple[subprocess.Popen, str]:
    """moto's server on a free port of 127.0.0.1, answering; (process, endpoint URL). A port taken by
    someone else between the probe and the server's bind is retried on another port."""
    for _ in range(3):
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log = open(log_path, "ab")
        proc = subprocess.Popen([sys.executable, "-c", _RUN_MOTO, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(endpoint):
                return proc, endpoint
            time.sleep(0.1)
        stop_moto(proc)
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode(errors="replace")
    raise RuntimeError(f"moto's S3 server did not answer within {START_TIMEOUT_S} s (3 tries); its log:\n{tail}")


def stop_moto(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.fail("moto[server] is a test dependency: make setup (pip install -e '.[test]') installs it")
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        stop_moto(proc)


@dataclass
class S3:
    endpoint: str
    bucket: str
    fs: object  # s3fs.S3FileSystem

    def url(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{path}".rstrip("/")


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path) -> S3:
    import s3fs  # a test dependency, as moto[server] (make setup installs both)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-creds")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s3fs.S3FileSystem.clear_instance_cache()  # instances made before (other variables) are not reused
    fs = s3fs.S3FileSystem()
    bucket = "test-" + secrets.token_hex(6)
    fs.mkdir(bucket)
    yield S3(s3_server, bucket, fs)
    s3fs.S3FileSystem.clear_instance_cache()
