"""The wheel carries everything a non-editable install needs: defaults, schemas, notebooks, template."""

from __future__ import annotations

import subprocess
import sys
import tomllib
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


# ------------------------------------------------------------------ dependencies and the lock file
def _lock() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements/lock.txt: '{line}' is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements(extras: set[str]):
    """pyproject's requirements of pmtrec with ``extras``, self-references (pmtrec[report]) expanded."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo, seen, out = set(extras), set(), [Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            if r.name == "pmtrec":
                todo |= r.extras - seen
            else:
                out.append(r)
    return out


def test_the_lock_pins_a_solution_of_the_pyproject_ranges():
    from packaging.utils import canonicalize_name

    pins = _lock()
    for req in _requirements({"workflow", "test", "notebook"} - {"notebook"}):
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements/lock.txt: no pin for {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock {name}=={pins[name]} not in {req}"
    assert "pmtrec" not in pins


def test_the_lock_covers_every_installed_dependency_of_the_workflow_install():
    """Every distribution pip installs for .[workflow,test] is pinned (a constraints file pins only what it names)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins, seen = _lock(), set()
    todo = [(r, set()) for r in _requirements({"workflow", "test"})]
    while todo:
        req, _ = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pins, f"requirements/lock.txt: {req.name} (needed by the install) is not pinned"
        dist = metadata.distribution(req.name)
        for sub in map(Requirement, dist.requires or []):
            env_ok = sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""}))
            if env_ok:
                todo.append((sub, set()))


def test_the_rule_env_has_no_path_and_pins_the_lock_versions():
    import yaml
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = yaml.safe_load((ROOT / "workflow" / "envs" / "pmtrec.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [line for line in pip if line.startswith("-") or "/" in line or "." == line[:1]], pip
    pins = _lock()
    for line in pip:
        req = Requirement(line)
        assert str(req.specifier).startswith("=="), line
        assert pins[canonicalize_name(req.name)] == str(req.specifier)[2:], f"{line} differs from the lock"
    # every library dependency of pmtrec is in the env (post-deploy installs pmtrec with --no-deps)
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    in_env = {canonicalize_name(Requirement(line).name) for line in pip}
    for dep in meta["dependencies"]:
        assert canonicalize_name(Requirement(dep).name) in in_env, f"workflow/envs/pmtrec.yaml lacks {dep}"
    deploy = ROOT / "workflow" / "envs" / "pmtrec.post-deploy.sh"
    assert "PMTREC_SOURCE" in deploy.read_text() and "PMTREC_SOURCE" in (ROOT / "workflow" / "Snakefile").read_text()


def test_torchjd_is_pinned_to_the_minor_version_whose_private_names_are_used():
    from importlib import metadata

    from packaging.requirements import Requirement

    req = next(r for r in _requirements(set()) if r.name == "torchjd")
    assert not req.specifier.contains("0.19.0") and req.specifier.contains(metadata.version("torchjd"))


# ------------------------------------------------------------------ torchjd's private names, as used
def test_gradvac_private_targets_are_updated_in_place():
    """gradient.GradVac sets ``_phi_t``/``_state_key`` and reads the targets back from the same tensor."""
    import torch
    from torchjd.aggregation import GradVacWeighting

    from pmtrec.methods.gradient import TORCHJD_PRIVATE

    assert "GradVacWeighting._phi_t" in TORCHJD_PRIVATE
    beta = 0.25
    w = GradVacWeighting(beta=beta, eps=0.0)
    assert hasattr(w, "_phi_t") and hasattr(w, "_state_key"), "torchjd renamed GradVacWeighting's state"
    phi = torch.zeros(2, 2, dtype=torch.float64)
    w._phi_t, w._state_key = phi, (2, torch.float64)
    G = torch.tensor([[4.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)  # cosine -1/2
    w(G)
    assert w._phi_t is phi, "torchjd no longer updates the targets in place"
    expected = torch.tensor([[0.0, -0.5 * beta], [-0.5 * beta, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(phi, expected)


def test_nash_mtl_private_weighting_has_what_the_dpp_subclass_overrides_and_reads():
    import inspect

    from torchjd.aggregation import NashMTL
    from torchjd.aggregation._nash_mtl import _NashMTLWeighting

    w = NashMTL(n_tasks=3).weighting
    assert type(w) is _NashMTLWeighting
    for name in ("_init_optim_problem", "_solve_optimization", "_stop_criteria", "reset"):
        assert callable(getattr(_NashMTLWeighting, name, None)), f"torchjd dropped _NashMTLWeighting.{name}"
    assert list(inspect.signature(_NashMTLWeighting._stop_criteria).parameters) == ["self", "gtg", "alpha_t"]
    for name in ("n_tasks", "optim_niter", "max_norm", "update_weights_every", "prvs_alpha", "step",
                 "normalization_factor", "init_gtg"):
        assert hasattr(w, name), f"torchjd dropped _NashMTLWeighting.{name}"
    assert w.step == 0 and list(w.prvs_alpha) == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------ the optional solver stack
@pytest.mark.parametrize("method, module", [("nashmtl", "cvxpy"), ("nashmtl", "ecos"), ("cagrad", "cvxpy"),
                                            ("cagrad", "clarabel")])
def test_a_solver_method_without_the_solver_stack_is_one_config_error(monkeypatch, method, module):
    from pmtrec.errors import ConfigError
    from pmtrec.methods import build_method

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails, as when not installed
    with pytest.raises(ConfigError) as exc:
        build_method(method, ["rec", "social"])
    assert str(exc.value) == (f"method {method} needs the optional solver stack: pip install 'pmtrec[solvers]' "
                              f"({module} is not installed)")
    build_method("upgrad", ["rec", "social"])  # the base install's methods are unaffected


def test_pmtrec_train_without_the_solver_stack_stops_before_training(tmp_path):
    code = ("import sys; sys.modules['cvxpy'] = None\n"
            "from pmtrec.cli import main\n"
            f"sys.exit(main(['train', '--method', 'nashmtl', '--epochs', '1', '--out', {str(tmp_path / 'r.json')!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "method nashmtl needs the optional solver stack: pip install 'pmtrec[solvers]'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "r.json").exists()


def test_the_base_install_does_not_need_cvxpy():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(deps["dependencies"])
    assert "cvxpy" not in base and "full" not in base and "nash" not in base
    assert any("pmtrec[" in r and "solvers" in r for r in deps["optional-dependencies"]["workflow"])


# ------------------------------------------------------------------ the workflow's conventions
def test_snakemake_lint_is_clean():
    res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--lint"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "Lints for" not in res.stdout + res.stderr, (res.stdout + res.stderr)[-3000:]


def test_the_workflow_plans_as_a_module_from_another_directory(tmp_path):
    import shutil

    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "study.yaml")
    (tmp_path / "Snakefile").write_text(
        'configfile: "study.yaml"\n\n\n'
        f'module pmtrec:\n    snakefile:\n        "{ROOT / "workflow" / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from pmtrec as pmtrec_*\n")
    res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--cores", "1", "pmtrec_all"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "MissingInput" not in out and "pmtrec_report" in out and "pmtrec_train" in out
    assert f"--bench {ROOT / 'benchmarks' / 'results' / 'cpu.csv'}" in out  # the shipped CSV, not the cwd's


def test_license_and_catalogue_file():
    import yaml

    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the pmtrec authors" in text
    usage = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert usage["software-stack-deployment"]["conda"] is True and usage["report"] is True
