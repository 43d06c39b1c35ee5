"""The GitHub Actions workflows: offline linters (the workflow schema, zizmor) and what each workflow must do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
WORKFLOWS = ("checks.yml", "book.yml", "linkcheck.yml", "release.yml")


def _offline_env() -> dict[str, str]:
    """The environment with every proxy pointed at a closed local port: a linter that reached for the
    network would fail instead of silently depending on it."""
    closed = "http://127.0.0.1:9"
    return {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed,
            "https_proxy": closed, "NO_PROXY": "", "no_proxy": ""}


def lint(github_dir: Path) -> list[subprocess.CompletedProcess]:
    """Run the offline linters over a ``.github`` folder: the workflow and action schemas, then zizmor."""
    workflows = sorted(str(p) for p in (github_dir / "workflows").glob("*.yml"))
    actions = sorted(str(p) for p in github_dir.glob("actions/*/action.yml"))
    runs = [[str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows]]
    if actions:
        runs.append([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-actions", *actions])
    config = github_dir / "zizmor.yml"
    runs.append([str(BIN / "zizmor"), "--offline", "--no-progress", "--strict-collection",
                 *(["--config", str(config)] if config.is_file() else []), str(github_dir)])
    return [subprocess.run(cmd, capture_output=True, text=True, env=_offline_env(), timeout=120) for cmd in runs]


def _workflow(repo_root: Path, name: str) -> dict:
    data = yaml.safe_load((repo_root / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_workflows_pass_the_offline_linters(repo_root: Path) -> None:
    assert sorted(p.name for p in (repo_root / ".github" / "workflows").glob("*.yml")) == sorted(WORKFLOWS)
    for result in lint(repo_root / ".github"):
        assert result.returncode == 0, f"{result.args[0]}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("breakage, expected", [
    (("checks.yml", "    runs-on: ubuntu-latest\n", "    runs_on: ubuntu-latest\n"), "check-jsonschema"),
    (("book.yml", "        with:\n          persist-credentials: false\n", ""), "zizmor"),
    (("release.yml", '"$GITHUB_REF_NAME"', '"${{ github.event.head_commit.message }}"'), "zizmor"),
])
def test_the_linters_catch_a_broken_workflow(repo_root: Path, tmp_path: Path, breakage, expected) -> None:
    name, old, new = breakage
    github = tmp_path / ".github"
    shutil.copytree(repo_root / ".github", github)
    text = (github / "workflows" / name).read_text()
    assert old in text
    (github / "workflows" / name).write_text(text.replace(old, new, 1))
    failed = [Path(r.args[0]).name for r in lint(github) if r.returncode != 0]
    assert expected in failed


def test_pull_requests_run_the_ci_script(repo_root: Path) -> None:
    checks = _workflow(repo_root, "checks.yml")
    assert "pull_request" in checks["on"]
    steps = [s.get("run", "") for job in checks["jobs"].values() for s in job["steps"]]
    assert "bash .ci/run" in steps


def test_main_builds_the_book_and_deploys_it_with_the_official_actions(repo_root: Path) -> None:
    book = _workflow(repo_root, "book.yml")
    assert book["on"]["push"]["branches"] == ["main"]
    build, deploy = book["jobs"]["build"], book["jobs"]["deploy"]
    assert build["env"]["PROFILE"] == "${{ vars.BOOK_PROFILE || 'cpu' }}"
    assert {"actions/checkout", "actions/setup-python", "actions/upload-pages-artifact"} <= set(_uses(build))
    setup_python = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup_python["with"]["cache"] == "pip"
    assert any('make book PROFILE="$PROFILE"' in s.get("run", "") for s in build["steps"])
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    runs_cache = [s for s in build["steps"] if s.get("with", {}).get("path") == "runs/"]
    assert runs_cache and "hashFiles('src/**', 'chapters/**', 'configs/**')" in runs_cache[0]["with"]["key"]
    assert deploy["needs"] == "build" and _uses(deploy) == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_links_are_checked_on_a_schedule_without_execution(repo_root: Path) -> None:
    linkcheck = _workflow(repo_root, "linkcheck.yml")
    assert linkcheck["on"]["schedule"]
    runs = [s.get("run", "") for job in linkcheck["jobs"].values() for s in job["steps"]]
    assert any("jupyter-book build . --builder linkcheck" in r for r in runs)
    assert yaml.safe_load((repo_root / "_config.yml").read_text())["execute"]["execute_notebooks"] == "off"
