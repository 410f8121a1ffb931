"""A container-style install (a built wheel, not the editable source tree) still carries and loads
the configs the services read by default: the orchestrator's models.yaml and ingest's
pipeline.yaml. Paths computed from the source tree once pointed outside an installed wheel, and a
container image silently fell back to a Router with no retries or fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from agentbus.ingest import config
from agentbus.orchestrator import model_calls
assert sys.argv[1] in str(model_calls.DEFAULT_CONFIG), model_calls.DEFAULT_CONFIG
assert sys.argv[1] in str(config.DEFAULT_CONFIG_PATH), config.DEFAULT_CONFIG_PATH
router = model_calls.load_router()
groups = sorted({m["model_name"] for m in router.model_list})
cfg = config.load_pipeline_config()
print(",".join(groups), cfg.embedding.model)
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for service in ("orchestrator", "ingest"):
        subprocess.run(
            [
                sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                "--no-build-isolation", "--wheel-dir", str(out), str(ROOT / "services" / service),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return out


def test_wheels_carry_the_default_configs(wheels: Path) -> None:
    names: set[str] = set()
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            names |= set(archive.namelist())
    assert "agentbus/orchestrator/models.yaml" in names
    assert "agentbus/ingest/pipeline.yaml" in names


def test_an_installed_wheel_loads_them(wheels: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--target", str(target), *map(str, wheels.glob("*.whl")),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # The installed copies come first, ahead of the editable source tree of this checkout.
    env = {**os.environ, "PYTHONPATH": str(target), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    groups, embedding = result.stdout.split()
    assert {"fast", "deep"} <= set(groups.split(","))
    assert embedding == "local/all-MiniLM-L6-v2"
