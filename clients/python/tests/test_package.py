"""The installed package: what ``pip install ./clients/python`` put in the
environment is this source tree, with its version, metadata and ``py.typed``;
and the README's example runs against a real broker and passes
``mypy --strict`` as a user's program would (which needs ``py.typed``).

These tests run on the installed package, never on ``src/``: conftest.py adds
no source directory to ``sys.path``, so a package that builds without some of
its files fails here.
"""

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import herald_client
from conftest import CLIENT_DIR, REPO_DIR, Broker

DIST = "herald-client"
SOURCE = CLIENT_DIR / "src" / "herald_client"
EXAMPLE_TIMEOUT_S = 60.0


def workspace_package_field(name: str) -> str:
    """A field of ``[workspace.package]`` in the root Cargo.toml."""
    manifest = (REPO_DIR / "Cargo.toml").read_text()
    section = manifest.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    match = re.search(rf'^{name}\s*=\s*"([^"]*)"', section, re.MULTILINE)
    assert match, f"no {name} in [workspace.package] of Cargo.toml"
    return match.group(1)


def installed_dir() -> Path:
    return Path(herald_client.__file__).resolve().parent


def readme_example() -> str:
    """The Python code between the README's example markers."""
    readme = (CLIENT_DIR / "README.md").read_text()
    block = readme.split("<!-- readme-example:start -->", 1)[1].split("<!-- readme-example:end -->", 1)[0]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    return code


def test_the_package_is_imported_from_the_installed_copy_not_the_source_tree() -> None:
    where = installed_dir()
    assert not where.is_relative_to(CLIENT_DIR), (
        f"herald_client was imported from {where}, inside the source tree: "
        f"install it (pip install ./clients/python, not -e)")


def test_the_installed_modules_are_the_source_trees() -> None:
    """A stale install (source edited, not reinstalled) would test old code."""
    def digests(root: Path) -> Dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}

    assert digests(installed_dir()) == digests(SOURCE), "reinstall: pip install ./clients/python"


def test_the_version_is_the_workspaces() -> None:
    version = workspace_package_field("version")
    assert herald_client.__version__ == version
    assert importlib.metadata.version(DIST) == version


def test_the_metadata_names_the_license_the_dependencies_and_typing() -> None:
    meta = importlib.metadata.metadata(DIST)
    assert meta["Name"] == DIST
    assert meta["License-Expression"] == workspace_package_field("license")
    assert sorted(meta.get_all("Requires-Dist") or []) == ["lz4>=4.0", "msgpack>=1.0", "zstandard>=0.22"]
    assert meta["Requires-Python"] == ">=3.10"
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    # The long description is the README, so PyPI shows install and use.
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "pip install ./clients/python" in (meta.get_payload() or "")


def test_py_typed_is_shipped() -> None:
    files = importlib.metadata.files(DIST) or []
    shipped = {f.as_posix() for f in files}
    assert "herald_client/py.typed" in shipped, sorted(shipped)
    assert (installed_dir() / "py.typed").is_file()


def test_the_readme_example_runs_against_a_broker(broker: Broker, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
        timeout=EXAMPLE_TIMEOUT_S, env=dict(os.environ, HERALD_BROKER=f"{broker.host}:{broker.port}"),
    )
    assert out.returncode == 0, f"the example failed:\n{out.stderr}\n{out.stdout}"
    lines = out.stdout.splitlines()

    def values(prefix: str) -> List[str]:
        return [line.rsplit(" ", 2)[-2] + " " + line.rsplit(" ", 2)[-1]
                for line in lines if line.startswith(prefix)]

    expected = [f"hello {i}" for i in range(10)]
    acknowledged = [line for line in lines if line.startswith("acknowledged: ")]
    assert len(acknowledged) == 1 and acknowledged[0].endswith(" 10 records"), out.stdout
    assert values("read: ") == expected, out.stdout
    assert values("consumed: ") == expected, out.stdout
    assert any(line.startswith("committed: ") for line in lines), out.stdout


def test_the_readme_example_passes_mypy_strict_against_the_installed_package(tmp_path: Path) -> None:
    """Without ``py.typed`` mypy would refuse the import of an untyped package."""
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S,
    )
    assert out.returncode == 0, f"mypy --strict on the README example:\n{out.stdout}{out.stderr}"
