"""Non-finite losses and gradients: detected within the step, `stop` (one-line error, no result,
log kept) or `skip` (batch skipped and counted). Faults are injected by a test-only method that
returns a NaN row gradient from finite losses, and by a task loss patched to return NaN."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pmtrec.cli import main
from conftest import tiny_config
from pmtrec.errors import ConfigError, TrainingError
from pmtrec.methods import GradientMethod, StepOutput
from pmtrec.methods.registry import METHODS, register
from pmtrec.tasks import SocialTask
from pmtrec.train import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256
NAN = float("nan")

# Shared with the subprocess test, which registers the same method in a fresh interpreter.
METHOD_SOURCE = '''
import torch
from pmtrec.methods import GradientMethod, StepOutput


class NanGradTest(GradientMethod):
    """Test only: the EW sum of the row gradients, made NaN on the given global steps."""

    name = "nan-grad-test"

    def __init__(self, task_names, bad_steps=(), bad_param_steps=()):
        super().__init__(task_names)
        self.bad_steps, self.bad_param_steps = set(bad_steps), set(bad_param_steps)

    def aggregate(self, grads, ctx):
        g = grads.sum(0)
        scale = None
        if ctx.step in self.bad_steps:
            g = g.clone()
            g[0, 0] = float("nan")
        if ctx.step in self.bad_param_steps:
            scale = torch.full((ctx.n_tasks,), float("nan"))
        return StepOutput(weights=torch.ones(ctx.n_tasks), row_grad=g, task_param_scale=scale)
'''
_ns: dict = {}
exec(compile(METHOD_SOURCE, "<nan-grad-test>", "exec"), _ns)
NanGradTest = _ns["NanGradTest"]


@pytest.fixture
def nan_method():
    register(NanGradTest)
    yield NanGradTest.name
    METHODS.pop(NanGradTest.name, None)  # keep the registry as the other tests expect it


def cfg(*overrides: str) -> dict:
    return tiny_config(*overrides, batch_size=BATCH)


@pytest.fixture(scope="module")
def data(tiny_data):
    return tiny_data


@pytest.fixture(scope="module")
def n_batches(data) -> int:
    return -(-len(data.train) // BATCH)


def nan_social_loss(monkeypatch, bad_calls: set[int]) -> list[int]:
    """Make SocialTask.loss return NaN on the given 0-based calls (one call per step for ew)."""
    original = SocialTask.loss
    calls = [0]

    def loss(self, rows):
        value = original(self, rows)
        k = calls[0]
        calls[0] += 1
        return value * NAN if k in bad_calls else value

    monkeypatch.setattr(SocialTask, "loss", loss)
    return calls


def quiet(*_):
    pass


# ------------------------------------------------------------------------------------ stop
def test_nan_loss_stops_naming_method_task_epoch_and_batch(data, n_batches, monkeypatch):
    nan_social_loss(monkeypatch, {n_batches + 2})  # epoch 2, batch 3
    with pytest.raises(TrainingError) as err:
        train(cfg("train.method=ew"), data, log=quiet)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("non-finite loss in task(s) social with method 'ew' at epoch 2, batch 3")
    assert "no result written" in msg and "train.on_nonfinite=skip" in msg


def test_nan_gradient_from_finite_losses_stops(data, n_batches, nan_method):
    step = 2 * n_batches + 4  # epoch 3, batch 5
    with pytest.raises(TrainingError) as err:
        train(cfg(f"train.method={nan_method}", f"train.method_params={{bad_steps: [{step}]}}"), data, log=quiet)
    msg = str(err.value)
    assert msg.startswith("non-finite combined row gradient (every per-task gradient finite: the method's "
                          f"combination is not) with method '{nan_method}' at epoch 3, batch 5")


def test_nan_gradient_of_a_tasks_own_parameters_stops(data, nan_method):
    with pytest.raises(TrainingError) as err:
        train(cfg(f"train.method={nan_method}", "train.method_params={bad_param_steps: [1]}"), data, log=quiet)
    assert str(err.value).startswith(f"non-finite gradient of the parameters of task category with method "
                                     f"'{nan_method}' at epoch 1, batch 2")


def test_device_side_flags_name_the_first_bad_batch_at_the_end_of_the_epoch(data, n_batches, monkeypatch):
    """The CUDA `stop` path (no per-step sync), exercised on CPU: flags read once per epoch."""
    calls = nan_social_loss(monkeypatch, {n_batches + 1, n_batches + 3})  # epoch 2, batches 2 and 4
    tr = Trainer(cfg("train.method=ew"), data)
    tr._check_each_step = False
    with pytest.raises(TrainingError) as err:
        tr.fit(log=quiet)
    msg = str(err.value)
    assert msg.startswith("non-finite loss in task(s) social with method 'ew' at epoch 2, batch 2 "
                          "(detected at the end of the epoch on CUDA)")
    assert calls[0] == 2 * n_batches  # the epoch ran to its end, then stopped
    assert len(tr.history) == 1


# ------------------------------------------------------------------------------------ skip
def test_skip_mode_skips_and_counts_bad_batches(data, n_batches, nan_method, monkeypatch):
    bad = [3, n_batches + 1, 2 * n_batches]  # one in each epoch
    r = train(cfg(f"train.method={nan_method}", f"train.method_params={{bad_steps: {bad}}}",
                  "train.on_nonfinite=skip"), data, log=quiet)
    assert r["skipped_batches"] == 3
    assert [c["skipped_batches"] for c in r["curves"]] == [1, 1, 1]
    assert all(math.isfinite(v) for v in r["test"]["overall"].values())
    clean = train(cfg("train.method=ew"), data, log=quiet)
    assert clean["skipped_batches"] == 0 and all(c["skipped_batches"] == 0 for c in clean["curves"])


def test_skip_mode_skips_nan_losses(data, n_batches, monkeypatch):
    nan_social_loss(monkeypatch, {0, 5, n_batches + 2})
    r = train(cfg("train.method=ew", "train.on_nonfinite=skip"), data, log=quiet)
    assert r["skipped_batches"] == 3 and [c["skipped_batches"] for c in r["curves"]] == [2, 1, 0]
    assert all(math.isfinite(v) for c in r["curves"] for v in c["loss"].values())


def test_a_skipped_batch_changes_no_parameter_and_no_optimizer_state(data, nan_method):
    tr = Trainer(cfg(f"train.method={nan_method}", "train.method_params={bad_steps: [0]}",
                     "train.on_nonfinite=skip"), data)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    before_tasks = [{k: v.clone() for k, v in t.state_dict().items()} for t in tr.tasks]
    rec_fields = next(tr.tasks[0].epoch_batches(BATCH, tr.gen))
    log = tr.new_log()
    assert tr.train_step(rec_fields, log, 0) is False
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert all(torch.equal(b[k], v) for b, t in zip(before_tasks, tr.tasks) for k, v in t.state_dict().items())
    assert all(not o.state for o in tr.optimizers) and log.steps == 0 and tr.skipped_batches == 1
    assert tr.train_step(rec_fields, log, 1) is True  # step 1 is fine
    assert not torch.equal(before["user"], tr.model.user.detach())


def test_an_epoch_with_every_batch_skipped_is_an_error(data, n_batches, nan_method):
    bad = list(range(n_batches))
    with pytest.raises(TrainingError, match=r"every batch of epoch 1 had a non-finite loss or gradient with "
                                            rf"method '{nan_method}' \(train.on_nonfinite=skip\)"):
        train(cfg(f"train.method={nan_method}", f"train.method_params={{bad_steps: {bad}}}",
                  "train.on_nonfinite=skip"), data, log=quiet)


def test_unknown_on_nonfinite_value_is_a_config_error(data):
    with pytest.raises(ConfigError, match=r"train.on_nonfinite: expected one of stop, skip, got 'ignore'"):
        Trainer(cfg("train.on_nonfinite=ignore"), data)


# ------------------------------------------------------------------------------------ CLI
def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


TINY = ["--set", "dataset.synthetic.size=tiny", "--set", f"train.batch_size={BATCH}", "--threads", "1",
        "--device", "cpu", "--epochs", "3"]


def test_cli_stop_writes_no_result_and_keeps_the_last_good_checkpoint(tmp_path, n_batches, nan_method):
    out, ckpt = tmp_path / "r.json", tmp_path / "r.ckpt"
    step = n_batches + 1  # epoch 2, batch 2
    rc, stdout, stderr = run_cli("train", *TINY, "--set", "train.progress=false", "--method", nan_method, "--set",
                                 f"train.method_params={{bad_steps: [{step}]}}", "--out", str(out),
                                 "--checkpoint", str(ckpt))
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith("pmtrec: error: non-finite combined row gradient") and "epoch 2, batch 2" in lines[0]
    assert "epoch   1 |" in stdout  # the log up to the fault is kept
    assert not out.exists()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1


def test_cli_subprocess_stop_leaves_its_log_and_no_result(tmp_path, n_batches):
    """The real process: exit status 2, the epoch log and one error line in the log file, no JSON."""
    script = tmp_path / "run.py"
    script.write_text(METHOD_SOURCE + textwrap.dedent("""
        import sys
        from pmtrec.cli import main
        from pmtrec.methods.registry import register
        register(NanGradTest)
        sys.exit(main(sys.argv[1:]))
    """))
    out, log = tmp_path / "r.json", tmp_path / "train.log"
    step = 2 * n_batches + 1  # epoch 3, batch 2
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, str(script), "train", *TINY, "-q", "--method", "nan-grad-test",
                             "--set", f"train.method_params={{bad_steps: [{step}]}}", "--out", str(out)],
                            stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=300).returncode
    text = log.read_text()
    assert rc == 2, text
    assert "Traceback" not in text and not out.exists()
    errors = [ln for ln in text.splitlines() if ln.startswith("pmtrec: error:")]
    assert len(errors) == 1 and "with method 'nan-grad-test' at epoch 3, batch 2" in errors[0]


def test_cli_skip_reports_skipped_batches_in_the_result(tmp_path, nan_method):
    out = tmp_path / "r.json"
    rc, stdout, stderr = run_cli("train", *TINY, "-q", "--method", nan_method, "--set",
                                 "train.method_params={bad_steps: [0, 7]}", "--set", "train.on_nonfinite=skip",
                                 "--out", str(out))
    assert rc == 0, stderr
    result = json.loads(out.read_text())
    assert result["skipped_batches"] == 2 and result["curves"][0]["skipped_batches"] == 2


def test_all_finite_sum_shortcut_is_exact():
    from pmtrec.train import _all_finite

    big = torch.full((4, 3), 3e38)  # finite entries whose sum overflows to inf
    assert _all_finite(big)
    for bad in (float("nan"), float("inf"), float("-inf")):
        t = torch.ones(5, 2)
        t[3, 1] = bad
        assert not _all_finite(t)
    assert _all_finite(torch.zeros(0, 4))
