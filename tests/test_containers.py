"""Every container recipe in the repository passes hadolint (the images cannot be built here:
there is no container daemon), runs as a non-root user, and has a HEALTHCHECK if it serves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _is_recipe(name: str) -> bool:
    return (name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile")) \
        and not name.endswith(".dockerignore")


def _recipes() -> list[str]:
    """Every container recipe, tracked or new, that .gitignore does not leave out."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted({path for path in listed if _is_recipe(Path(path).name) and (REPO_ROOT / path).exists()})


RECIPES = _recipes()


def _instructions(recipe: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments left out."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / recipe).read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_the_known_recipes_are_found() -> None:
    assert {"training/Dockerfile", "serving/Dockerfile"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_hadolint_passes(recipe: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.fail(f"{hadolint} is missing: install the test extras (pip install -e '.[test]')")
    result = subprocess.run([str(hadolint), "--no-color", recipe], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_runs_as_non_root_with_a_health_check_where_it_serves(recipe: str) -> None:
    instructions = _instructions(recipe)
    users = [rest.split(":")[0] for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{recipe} must end on a non-root USER"
    if any(word == "EXPOSE" for word, _ in instructions):
        assert any(word == "HEALTHCHECK" and rest.upper() != "NONE" for word, rest in instructions), \
            f"{recipe} serves (EXPOSE) but has no HEALTHCHECK"
