"""Nothing leaves the machine unasked: ONNX Runtime's telemetry (DNS lookups of an events host,
a device id under ~/.cache) is off in the processes the product starts, which `strace` watches.
Each check runs a control with telemetry allowed (ORT_DISABLE_TELEMETRY=0, how a user opts in)
that must show it, so the test proves it can see what it looks for."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime
import pytest
import requests
from webapp_process import running_app

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "models" / "default"
# connect() to anything but loopback or a local socket: a DNS server, an events host.
OUTBOUND = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((\d+)\), "
                      r"(?:sin_addr=inet_addr\(\"(?!127\.)|sin6_addr=inet_pton\(AF_INET6, \"(?!::1\"))")
# Telemetry arrived with ONNX Runtime 1.29: before it the controls have nothing to show.
SENDS_TELEMETRY = tuple(int(part) for part in onnxruntime.__version__.split(".")[:2]) >= (1, 29)


@pytest.fixture(scope="module")
def strace() -> str:
    found = shutil.which("strace")
    if found is None:
        pytest.fail("strace is missing: scripts/setup-system.sh installs it (apt-get install strace)")
    return found


# ONNX Runtime sends nothing where one of these says it runs in CI (its binary names them), as
# the project's CI sets CI=true: the processes watched here must not look like CI.
CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
              "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
              "ORT_RUNNING_UNIT_TESTS")


def _environment(home: Path, telemetry: str | None) -> dict[str, str]:
    hidden = {"ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", *CI_MARKERS}  # the product must set the first
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    env["HOME"] = str(home)
    if telemetry is not None:
        env["ORT_DISABLE_TELEMETRY"] = telemetry
    return env


def _device_ids(home: Path) -> list[Path]:
    return [path for path in home.rglob("*") if "onnxruntime" in str(path).lower()]


@pytest.mark.parametrize("telemetry", [None, "0"], ids=["product", "control"])
def test_the_cli_keeps_no_device_id(strace: str, tmp_path: Path, telemetry: str | None) -> None:
    trace = tmp_path / "strace.log"
    script = Path(sys.executable).with_name("issue-summarizer")
    command = [strace, "-f", "-e", "trace=connect", "-o", str(trace), str(script), "summarize", "-q",
               "The app crashes when I press save."]
    result = subprocess.run(command, env=_environment(tmp_path, telemetry), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
    outbound = OUTBOUND.findall(trace.read_text())
    if telemetry is None:
        assert _device_ids(tmp_path) == [] and outbound == []
    elif SENDS_TELEMETRY:
        assert _device_ids(tmp_path), "the control should have written ONNX Runtime's device id"


@pytest.mark.parametrize("telemetry", [None, "0"], ids=["product", "control"])
def test_the_web_app_looks_up_no_host(strace: str, tmp_path: Path, telemetry: str | None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The app serves titles for a while; no connection leaves loopback (the control's DNS
    lookups of the events host come within seconds of the first title)."""
    for name in CI_MARKERS:  # running_app passes this process's environment on
        monkeypatch.delenv(name, raising=False)
    trace = tmp_path / "strace.log"
    settings = {**_environment(tmp_path, telemetry), "SUMMARIZER_MODEL": str(BUNDLE),
                "FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"), "NO_PROXY": "127.0.0.1"}
    command = (strace, "-f", "-e", "trace=connect", "-o", str(trace), sys.executable, "-m", "webapp",
               "--host", "127.0.0.1", "--port", "0")
    with running_app(settings, command=command) as app:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            answer = requests.post(f"{app.url}/api/summarize", json={"body": "The app crashes on save."},
                                   timeout=30)
            assert answer.status_code == 200, answer.text
            if telemetry is not None and OUTBOUND.search(trace.read_text()):
                break
            time.sleep(1)
    outbound = OUTBOUND.findall(trace.read_text())
    if telemetry is None:
        assert outbound == [] and _device_ids(tmp_path) == []
    elif SENDS_TELEMETRY:
        assert outbound, "the control should have looked up ONNX Runtime's events host"
