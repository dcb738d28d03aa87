"""The package as a user installs it: `python -m build` makes an sdist and a
wheel, and the wheel installs into a fresh virtual environment and imports.

The build runs without isolation (`--no-isolation`: the setuptools of this
environment, nothing downloaded) on a copy of the files an sdist is made
from, and the wheel is built from the sdist, as `python -m build` does, so a
file the sdist leaves out breaks the wheel too. The fresh environment gets
the wheel alone (`pip install --no-deps --no-index`); it reaches this
environment's TensorFlow, Keras and NumPy through a `.pth` file, which puts
them after its own site-packages, so `keras_dynmask` can only come from the
wheel.
"""

import ast
import email
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_dynmask"
# What the sdist is made from, besides the package.
PROJECT_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE",
                 "CHANGELOG.md")


def checkout_version():
    """`__version__` as written in the checkout's `keras_dynmask/__init__.py`."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    (value,) = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
    ]
    return value


def checkout_modules():
    """The package's module files, as paths relative to the repository."""
    return sorted(
        p.relative_to(REPO).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    )


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """`(wheel path, sdist path)` built from a copy of the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / "keras_dynmask",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_version_is_single_sourced(dists):
    wheel, sdist = dists
    version = checkout_version()
    assert wheel.name == f"keras_dynmask-{version}-py3-none-any.whl"
    assert sdist.name == f"keras_dynmask-{version}.tar.gz"
    import keras_dynmask

    assert keras_dynmask.__version__ == version


def test_wheel_holds_every_module_the_license_and_py_typed(dists):
    wheel, _ = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = checkout_modules()
    assert modules and not set(modules) - names, sorted(set(modules) - names)
    subpackages = {m.rsplit("/", 1)[0] for m in modules if m.endswith("/__init__.py")}
    assert {"keras_dynmask", "keras_dynmask/data", "keras_dynmask/kernels",
            "keras_dynmask/text", "keras_dynmask/tools"} <= subpackages
    assert "keras_dynmask/py.typed" in names
    version = checkout_version()
    info = f"keras_dynmask-{version}.dist-info"
    license_text = zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE").decode()
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


def test_wheel_metadata_names_the_license_and_the_core_dependencies(dists):
    wheel, _ = dists
    info = f"keras_dynmask-{checkout_version()}.dist-info"
    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{info}/METADATA"))
    assert metadata["Version"] == checkout_version()
    assert metadata["License-Expression"] == "Apache-2.0"
    requires = metadata.get_all("Requires-Dist")
    core = {r.split(";")[0].strip() for r in requires if "extra ==" not in r}
    core_names = {r.split("<")[0].split(">")[0].split("=")[0].split("[")[0] for r in core}
    assert core_names == {"tensorflow", "keras", "numpy"}, core
    by_extra = {}
    for requirement in requires:
        if "extra ==" in requirement:
            extra = requirement.split("extra ==")[1].strip().strip("'\"")
            by_extra.setdefault(extra, []).append(requirement.split(";")[0])
    assert set(metadata.get_all("Provides-Extra")) == {
        "text", "examples", "tfds", "test", "bench", "docs"}
    assert any(r.startswith("tensorflow-text") for r in by_extra["text"])
    assert any(r.startswith("tensorflow-datasets") for r in by_extra["tfds"])
    # The exact torch release: any other would download a multi-GB build.
    assert "torch==2.13.0" in by_extra["test"] and "torch==2.13.0" in by_extra["bench"]
    assert not any("torch" in r for r in by_extra["examples"] + by_extra["text"])


def test_sdist_holds_the_project_files_and_the_package(dists):
    _, sdist = dists
    root = sdist.name[: -len(".tar.gz")]
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for name in (*PROJECT_FILES, "PKG-INFO", "keras_dynmask/py.typed"):
        assert name in names, (name, root)
    assert not set(checkout_modules()) - names
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_installs_into_a_fresh_venv_and_imports_from_there(dists, tmp_path):
    wheel, _ = dists
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    purelib = pathlib.Path(run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        env=env).strip())
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(purelib), str(wheel)], env=env)
    # The folders holding this environment's TensorFlow, Keras and NumPy (and
    # what they import), after the fresh venv's own site-packages.
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} | {
        str(pathlib.Path(importlib.util.find_spec(name).origin).parents[1])
        for name in ("tensorflow", "keras", "numpy")
    }
    (purelib / "outer_environment.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    script = textwrap.dedent("""
        import importlib, importlib.metadata, json, pkgutil
        import numpy as np
        import keras_dynmask

        modules = sorted(m.name for m in pkgutil.walk_packages(
            keras_dynmask.__path__, "keras_dynmask."))
        for name in modules:
            importlib.import_module(name)
        mask = keras_dynmask.PaddingMask()(np.array([[5, 7, 0]], "int32"))
        print(json.dumps({
            "file": keras_dynmask.__file__,
            "version": keras_dynmask.__version__,
            "distribution": importlib.metadata.version("keras_dynmask"),
            "located": str(importlib.metadata.distribution("keras_dynmask").locate_file("")),
            "modules": modules,
            "mask": np.asarray(mask).tolist(),
        }))
    """)
    printed = run([str(python), "-c", script], cwd=str(tmp_path), env=env)
    found = json.loads(printed.strip().splitlines()[-1])
    assert found["file"] == str(purelib / "keras_dynmask" / "__init__.py")
    assert pathlib.Path(found["located"]) == purelib
    assert found["version"] == found["distribution"] == checkout_version()
    expected = sorted(m[: -len(".py")].replace("/", ".").removesuffix(".__init__")
                      for m in checkout_modules())
    assert ["keras_dynmask", *found["modules"]] == expected
    assert found["mask"] == [[True, True, False]]
