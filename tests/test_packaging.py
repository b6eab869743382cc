"""The wheel carries everything a non-editable install needs: defaults, schemas, notebooks, template."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pmtrec.report.notebook import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_package_data(tmp_path):
    import shutil

    src = tmp_path / "src"  # a copy: an in-tree build would leave build/ in the checkout
    shutil.copytree(ROOT / "pmtrec", src / "pmtrec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"cannot build a wheel here: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("pmtrec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {"pmtrec/defaults.yaml", "pmtrec/schemas/result.schema.json", "pmtrec/report/template.typ"}
    needed |= {f"pmtrec/report/notebooks/{n}.ipynb" for n in NOTEBOOKS}
    assert needed <= names, sorted(needed - names)
    assert not any(n.startswith(("tests/", "workflow/")) for n in names)


def test_notebooks_is_the_one_list_of_the_report_notebooks():
    folder = ROOT / "pmtrec" / "report" / "notebooks"
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == list(NOTEBOOKS)
    assert (ROOT / "notebooks").resolve() == folder.resolve()  # the repository's notebooks/ is the same folder
