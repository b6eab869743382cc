"""What a researcher trips over in the first hour: silently wrong results and unhelpful errors.

Each case asserts the exact one-line message (or the value now read correctly) and, for the
errors, that nothing was written.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from pmtrec.cli import main
from pmtrec.config import as_floats, load_config

ROOT = Path(__file__).resolve().parents[1]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# ---- silent wrong results ---------------------------------------------------------------------
def test_a_typo_in_the_custom_section_is_refused(tmp_path):
    rc, _, err = cli("prepare", "--dataset", "custom", "--set", "dataset.custom.interactions=x.csv",
                     "--set", "dataset.custom.socal=f.csv", "--out", str(tmp_path / "out"))
    assert (rc, err) == (2, "pmtrec: error: unknown config key 'dataset.custom.socal'; did you mean 'dataset.custom.social'?\n")
    assert not (tmp_path / "out").exists()


def test_several_config_files_merge_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("train: {epochs: 7, lr: 0.01}\n")
    b.write_text("train: {epochs: 9}\n")
    rc, out, _ = cli("config", "-c", str(a), "-c", str(b))
    assert rc == 0 and "epochs: 9" in out and "lr: 0.01" in out  # b over a, a's other keys kept


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+1e-3", "1.0e-3"])
def test_scientific_notation_is_a_number_everywhere(text, tmp_path):
    assert load_config(overrides=[f"train.lr={text}"])["train"]["lr"] == pytest.approx(0.001)
    f = tmp_path / "c.yaml"
    f.write_text(f"train: {{lr: {text}}}\n")
    assert load_config(f)["train"]["lr"] == pytest.approx(0.001)
    # what Snakemake's own YAML loader (and its --config) hands the workflow
    assert as_floats({"run": {"train": {"lr": text}}, "names": ["ew", "12"]}) == \
        {"run": {"train": {"lr": pytest.approx(0.001)}}, "names": ["ew", "12"]}


def test_a_workflow_config_with_scientific_notation_plans():
    import yaml

    from pmtrec.study import load_study

    cfg = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
    cfg["run"]["train"]["lr"] = "1e-2"  # as PyYAML (YAML 1.1) reads `lr: 1e-2`
    study = load_study(cfg, ROOT / "workflow/schemas/config.schema.yaml")
    assert '"train.lr=0.01"' in study.train_params("tiny", "ew")["sets"] or "train.lr=0.01" in \
        study.train_params("tiny", "ew")["sets"]


def test_the_readme_example_does_not_write_into_the_workflows_folders():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## The library from the command line"):text.index("## Data")]
    assert "--out resources/prepared" not in block and "--data resources/prepared" not in block


def test_an_unwritable_out_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc, out, err = cli("train", "--set", "dataset.synthetic.size=tiny", "--epochs", "1", "-q",
                       "--out", str(blocker / "r.json"))
    assert rc == 2 and err == (f"pmtrec: error: --out {blocker / 'r.json'}: cannot write there ({blocker} is not a "
                               "writable folder)\n")
    assert out == ""  # nothing trained


# ---- feedback -------------------------------------------------------------------------------------
def test_the_epoch_cap_is_said_and_recorded(tmp_path):
    out_file = tmp_path / "r.json"
    rc, out, err = cli("train", "--set", "dataset.synthetic.size=tiny", "--epochs", "2", "--threads", "1",
                       "--set", "train.lr=0.01", "--no-progress", "--out", str(out_file))
    assert rc == 0, err
    r = json.loads(out_file.read_text())
    assert r["stopped_by"] == "cap" and r["best_epoch"] == 2
    assert "note: the epoch cap stopped the run while validation ndcg@20 was still improving (best epoch 2 of 2)" in out
    assert out.count("epoch   ") == 2  # --no-progress keeps the per-epoch lines


def test_early_stopping_is_recorded_as_patience(tiny_data):
    from conftest import tiny_config
    from pmtrec.train import train

    r = train(tiny_config("train.lr=0.5", "train.patience=1", epochs=30), tiny_data, log=lambda *_: None)
    assert r["stopped_by"] == "patience" and r["epochs_run"] < 30


def test_a_batch_too_large_for_memory_is_a_clear_error(tiny_data):
    from conftest import tiny_config
    from pmtrec.errors import ConfigError
    from pmtrec.train import Trainer

    with pytest.raises(ConfigError) as info:
        Trainer(tiny_config(batch_size=100_000_000), tiny_data)
    text = str(info.value)
    assert text.startswith("train.batch_size: a step with batch 100000000 (auxiliary 100000000) needs about ")
    assert text.endswith(f"(the training data of '{tiny_data.name}' has {len(tiny_data.train):,} interactions)")
    Trainer(tiny_config(batch_size=10 * len(tiny_data.train)), tiny_data)  # full-batch on small data is fine


# ---- help and errors ----------------------------------------------------------------------------------
def test_a_yaml_syntax_error_gives_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epochs: [1, 2\n")
    rc, _, err = cli("config", "-c", str(f))
    assert rc == 2 and err.startswith(f"pmtrec: error: {f}: not valid YAML at line 3, column 1 (")


@pytest.mark.parametrize("argv, message", [
    (["train", "--method", "pmtrek"], "train.method: unknown method 'pmtrek'; did you mean 'pmtrec'?"),
    (["train", "--set", "dataset.source=ciaoo"], "dataset.source: unknown source 'ciaoo'; did you mean 'ciao'?"),
    (["train", "--method", "pmtrec", "--set", "train.method_params.tua=1"],
     "train.method_params.tua: not a parameter of method 'pmtrec'; did you mean 'tau'?"),
])
def test_unknown_names_suggest_the_closest(argv, message, tmp_path):
    rc, _, err = cli(*argv, "--epochs", "1", "-q", "--out", str(tmp_path / "r.json"))
    assert rc == 2 and err.startswith(f"pmtrec: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


def test_a_start_banner_says_what_runs(tmp_path):
    rc, out, err = cli("train", "--set", "dataset.synthetic.size=tiny", "--method", "pmtrec", "--set",
                       "train.method_params.tau=2.0", "--epochs", "1", "--threads", "1", "--no-progress")
    assert rc == 0, err
    first, second = out.splitlines()[:2]
    assert first.startswith("pmtrec (tau=2.0) on synthetic-tiny: ") and "users" in first
    assert first.endswith("tasks rec, social, category, coview")
    assert second.startswith("cpu (") and "1 thread)" in second and "up to 1 epochs (patience 10), batch 2048" in second


def test_a_run_of_ew_imports_neither_torchjd_nor_cvxpy(tmp_path):
    """Start-up: only the methods that use torchjd (and Nash-MTL's cvxpy) import them; no run
    imports the report stack."""
    import subprocess
    import sys

    code = ("import sys; from pmtrec.cli import main; "
            "rc = main(['train', '--set', 'dataset.synthetic.size=tiny', '--epochs', '1', '-q']); "
            "print(rc, 'torchjd' in sys.modules, 'cvxpy' in sys.modules, "
            "any(m in sys.modules for m in ('matplotlib', 'papermill', 'seaborn', 'snakemake')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.stdout.split()[-4:] == ["0", "False", "False", "False"], out.stderr[-2000:]  # nor the report stack
    code = code.replace("'-q']", "'-q', '--method', 'pcgrad']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.stdout.split()[-4:-2] == ["0", "True"], out.stderr[-2000:]


# ---- logging: levels, --log-file ----------------------------------------------------------------
TINY = ["train", "--set", "dataset.synthetic.size=tiny", "--epochs", "2", "--threads", "1", "--no-progress"]


def test_quiet_keeps_only_notices_and_the_final_line(tmp_path):
    rc, out, err = cli(*TINY, "-q", "--out", str(tmp_path / "r.json"))
    lines = out.splitlines()
    assert rc == 0 and err == ""
    assert len(lines) == 2 and lines[0].startswith("note: the epoch cap stopped the run")  # a NOTICE
    assert lines[1].startswith("ew on synthetic-tiny (seed 0): best epoch 2, test recall@20=")


def test_verbose_adds_debug_lines_and_the_log_file_gets_everything(tmp_path):
    log = tmp_path / "run.log"
    rc, out, err = cli(*TINY, "-q", "--log-file", str(log))  # quiet console, full log file
    assert rc == 0 and "epoch   1 |" not in out
    assert err == "pmtrec: warning: no --out given: the result is printed, not saved\n"
    text = log.read_text()
    for level, words in [("WARNING", "pmtrec.cli: no --out given"), ("INFO", "pmtrec.training.trainer: epoch   2 |"),
                         ("NOTICE", "the epoch cap stopped the run"), ("DEBUG", "run config (dataset synthetic)"),
                         ("INFO", "pmtrec.cli: ew on synthetic-tiny (seed 0): best epoch 2")]:
        assert any(f" {level:7s} " in ln and words in ln for ln in text.splitlines()), (level, words)
    rc, out, _ = cli(*TINY, "-v")
    assert rc == 0 and "run config (dataset synthetic): {" in out and "epoch   2 |" in out


def test_an_error_goes_to_the_log_file_too(tmp_path):
    log = tmp_path / "run.log"
    rc, _, err = cli("train", "--method", "pmtrek", "--log-file", str(log))
    assert rc == 2 and err.startswith("pmtrec: error: train.method: unknown method 'pmtrek'")
    assert f"ERROR   pmtrec.cli: {err.strip()}" in log.read_text()


def test_an_unwritable_log_file_is_a_one_line_error(tmp_path):
    rc, out, err = cli("config", "--log-file", str(tmp_path / "no" / "such" / "x.log"))
    assert (rc, out) == (2, "")
    assert err == f"pmtrec: error: --log-file {tmp_path / 'no' / 'such' / 'x.log'}: cannot write there (No such file or directory)\n"


def test_library_calls_log_instead_of_printing(tiny_data, capsys, caplog):
    import logging

    from conftest import tiny_config
    from pmtrec.train import train

    with caplog.at_level(logging.INFO, logger="pmtrec"):
        train(tiny_config(epochs=1), tiny_data)
    assert capsys.readouterr().out == ""  # nothing printed by the library
    messages = [r.getMessage() for r in caplog.records if r.name == "pmtrec.training.trainer"]
    assert any(m.startswith("epoch   1 |") for m in messages)


# ---- downloads: fail fast when a retry cannot help, and say where the files were looked for ----
@pytest.mark.parametrize("url, reason", [
    ("https://no-such-host.invalid/ciao.zip", "cannot resolve the host name 'no-such-host.invalid'"),
    ("file:///nonexistent-pmtrec/ciao.zip", "no such file (No such file or directory)"),
])
def test_a_download_that_cannot_succeed_fails_at_once_naming_the_folders(url, reason, tmp_path):
    import time

    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    t0 = time.perf_counter()
    rc, _, err = cli("prepare", "--dataset", "ciao", "--set", f"dataset.mirror={mirror}", "--set",
                     f"dataset.cache={cache}", "--set", f"dataset.ciao.url={url}", "--set",
                     "dataset.download.backoff_s=5", "--out", str(tmp_path / "out"))
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"pmtrec: error: {url}: download failed after 1 attempt(s): {reason}")
    assert err.endswith(f"; not retried; rating.mat, trustnetwork.mat, category.txt not found in the mirror "
                        f"{mirror / 'ciao'} or the cache {cache / 'ciao'} either\n")
    assert time.perf_counter() - t0 < 5  # no backoff wait (5 s) was spent
    assert not (tmp_path / "out").exists() and not any((cache / "ciao").glob("*"))


def test_a_download_shows_a_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    from pmtrec.data import fetch

    src = tmp_path / "blob.bin"
    src.write_bytes(b"x" * 3_000_000)
    shown = []

    class Bar:
        def __init__(self, **kw):
            shown.append(kw)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            shown.append(n)

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    fetch.download(src.as_uri(), tmp_path / "out.bin")
    assert shown[0]["unit"] == "B" and shown[0]["desc"] == "blob.bin" and shown[0]["disable"] is None
    assert sum(n for n in shown[1:]) == 3_000_000 and (tmp_path / "out.bin").read_bytes() == src.read_bytes()
