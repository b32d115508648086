"""The Dockerfile builds one multi-stage hotfeed image: venv and stubs made in a build stage,
a runtime stage with only the venv and the app, run as a non-root user with `hotfeed` as its
entry point. Read as text; no Docker engine needed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from recommender.settings import REPO_ROOT, Settings, env_var

DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|git|python3-dev)\b")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [arg for ins, arg in self.instructions if ins == instruction]


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(DOCKERFILE.read_text()):
        instruction, _, arg = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arg.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((instruction, arg.strip()))
    return stages


def test_the_image_is_built_in_stages_on_slim_python_3_11():
    stages = _stages()
    assert len(stages) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text(), re.M)
    assert all(stage.base == "${PYTHON_IMAGE}" for stage in stages)


def test_the_build_stage_takes_torch_from_the_cpu_wheel_index_by_default():
    build = _stages()[0]
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in build.args("ARG")
    assert any('--index-url "$TORCH_INDEX" torch' in run for run in build.args("RUN"))
    assert "whl/cu" in DOCKERFILE.read_text(), "the CUDA variant of TORCH_INDEX is documented"


def test_the_build_stage_installs_the_package_and_generates_the_grpc_stubs():
    runs = " && ".join(_stages()[0].args("RUN"))
    assert "pip install --no-deps -e ." in runs
    assert "scripts/gen_proto.sh" in runs


def test_the_final_stage_copies_only_the_venv_and_the_app_from_the_build_stage():
    build, final = _stages()[0], _stages()[-1]
    assert sorted(final.args("COPY")) == sorted([f"--from={build.name} /opt/venv /opt/venv", f"--from={build.name} /app /app"])
    for run in final.args("RUN"):
        assert "pip install" not in run and "apt-get install" not in run, run
        assert not BUILD_TOOLS.search(run), run


def test_the_final_stage_runs_as_a_non_root_user():
    users = _stages()[-1].args("USER")
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_entry_point_is_hotfeed():
    final = _stages()[-1]
    assert json.loads(final.args("ENTRYPOINT")[-1]) == ["hotfeed"]
    assert json.loads(final.args("CMD")[-1]) == ["--help"]


def test_every_hotfeed_variable_the_image_sets_is_a_setting():
    known = {env_var(field.annotation, name) for field in Settings.model_fields.values()
             for name in field.annotation.model_fields}
    env = " ".join(_stages()[-1].args("ENV"))
    set_here = set(re.findall(r"\b(HOTFEED_\w+)=", env))
    assert {"HOTFEED_SERVER_HOST", "HOTFEED_GATEWAY_HOST"} <= set_here
    assert set_here - known == set()


def test_the_build_context_leaves_out_local_state_and_secrets():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", "data", "artifacts", "bench/results", "deploy/hotfeed.env", "**/__pycache__"} <= ignored
