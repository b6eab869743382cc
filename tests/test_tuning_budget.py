"""The equal-budget tuning protocol: search-space expansion, held-out tuning seeds and split seeds."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pmtrec.methods import entry
from pmtrec.study import StudyConfigError, load_study
from pmtrec.study.grid import canon, slug
from pmtrec.study.space import SpaceError, draw, expand, pair, stable_seed, tunable_space
from pmtrec.study.tuning import select_setting

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
SHARED = {"train.lr": [0.001, 0.002, 0.005], "train.l2": [0.0, 1e-5]}


def raw(name: str = ".test/config/config.yaml") -> dict:
    cfg = yaml.safe_load((ROOT / name).read_text())
    cfg["mirror"] = None  # paper.yaml's mirror folder is checked elsewhere
    return cfg


def plan(cfg: dict):
    return load_study(copy.deepcopy(cfg), SCHEMA)


# ---- expansion ---------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [1, 4, 6, 7])
def test_a_small_own_grid_is_used_whole_and_padded_with_distinct_shared_points(budget):
    space = {**SHARED, "relax": [0.5, 0.9]}
    points = expand(space, ["relax"], budget, [0, 1])
    assert len(points) == budget and len({slug(p) for p in points}) == budget
    per_value = Counter(p["relax"] for p in points)
    if budget >= 2:  # every own value, each as often as the budget allows (within one)
        assert set(per_value) == {0.5, 0.9} and max(per_value.values()) - min(per_value.values()) <= 1
    for p in points:
        assert p["train.lr"] in SHARED["train.lr"] and p["train.l2"] in SHARED["train.l2"]


def test_a_large_space_gives_budget_distinct_points_of_the_space():
    space = {**SHARED, "a": [1, 2, 3], "b": [4, 5, 6]}  # 9 own points > budget 5
    points = expand(space, ["a", "b"], 5, [0, 2])
    grid = [dict(zip(sorted(space), c)) for c in itertools.product(*(space[k] for k in sorted(space)))]
    assert len({slug(p) for p in points}) == 5 and all(p in grid for p in points)


@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_continuous_ranges_are_drawn_inside_them_deterministically(sampler):
    space = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "c": {"low": 0.2, "high": 0.6},
             "k": {"low": 1, "high": 4}}
    a = expand(space, ["c", "k"], 12, [0, 3], sampler)
    assert a == expand(space, ["c", "k"], 12, [0, 3], sampler)  # the names are paths: stable
    assert a != expand(space, ["c", "k"], 12, [1, 3], sampler)
    assert len({slug(p) for p in a}) == 12
    for p in a:
        assert 1e-4 <= p["train.lr"] <= 1e-2 and 0.2 <= p["c"] <= 0.6
        assert isinstance(p["k"], int) and 1 <= p["k"] <= 4
    lrs = sorted(p["train.lr"] for p in a)  # log scale: spread over both decades
    assert lrs[0] < 1e-3 < lrs[-1]


def test_a_space_too_small_for_the_budget_is_refused():
    with pytest.raises(SpaceError, match="6 distinct points, fewer than the 7"):
        draw(SHARED, 7, [0])
    with pytest.raises(SpaceError):
        expand({"train.lr": [0.001, 0.002], "relax": [0.5, 0.9]}, ["relax"], 5, [0])


def test_catalogue_ranges_become_the_default_space():
    space = tunable_space(entry("pmtrec").tunable)
    assert space["focus_rows"] == ["main", "all"]
    assert space["focus_max"] == {"low": 0.0, "high": 1.0, "log": False}
    assert tunable_space(entry("gradvac").tunable)["beta"]["log"] is True  # 0.001 .. 0.1


def test_pairing_keeps_the_shared_order_and_stratifies_the_own_grid():
    shared = draw(SHARED, 6, [0])
    own = {"relax": [0.5, 0.9], "k": {"low": 1, "high": 2}}  # k alone has 2 values < 3 per grid point
    points = pair(shared, own, [0, 1])
    assert [{k: p[k] for k in SHARED} for p in points] == shared
    assert [p["relax"] for p in points] == [0.5] * 3 + [0.9] * 3  # a block of shared points each
    assert {p["k"] for p in points} <= {1, 2} and len({slug(p) for p in points}) == 6
    big = pair(shared[:5], {"a": [1, 2, 3], "b": [4, 5, 6]}, [0, 2])  # 9 own points > 5: distinct own draws
    assert len({(p["a"], p["b"]) for p in big}) == 5
    assert pair(shared, {}, [0, 3]) == shared  # no own knobs: the shared points themselves


# ---- the planner ------------------------------------------------------------------------------
def trained_used(cfg: dict) -> set[str]:
    used = set(cfg["methods"]) | {entry(v).base for v in (cfg.get("ablation") or {}).get("variants", [])}
    sens = cfg.get("sensitivity") or {}
    if sens.get("dim"):
        used |= set(sens.get("dim_methods", ["pmtrec"]))
    return {m for m in used if entry(m).kind == "method"}


@pytest.mark.parametrize("name", ["config/paper.yaml", "config/config.yaml", ".test/config/config.yaml"])
def test_every_trained_method_gets_the_same_budget_on_held_out_seeds(name):
    cfg = raw(name)
    study = plan(cfg)
    budget, tseeds = cfg["tune"]["budget"], cfg["tune"]["seeds"]
    reported = set(study.seeds) | set(study.ablation_seeds) | set(study.sens_seeds)
    jobs = Counter()
    for e in study.result_entries():
        if e["kind"] == "tune":
            jobs[(e["dataset"], e["method"])] += 1
            assert e["seed"] in tseeds and e["seed"] not in reported
    assert set(study.points) == trained_used(cfg) and "mostpop" not in study.points
    assert jobs == Counter({(d, m): budget * len(tseeds) for d in cfg["datasets"] for m in study.points})
    for m, space in study.spaces.items():
        assert set(space) >= set(cfg["tune"]["space"]["shared"])
        assert all(set(p) == set(space) for p in study.points[m].values())
    if name == "config/paper.yaml":
        assert budget == 12 and all("train.lr" in s and "train.l2" in s for s in study.spaces.values())
        assert len(study.points) == 20 and study.split_seed == "run"
        assert study.tuning_protocol()["development"][0]["dataset"] == "ciao"


def test_the_settings_do_not_move_when_another_method_is_added():
    cfg = raw()
    before = plan(cfg).points
    cfg["methods"].append("uw")
    after = plan(cfg).points
    assert after["ew"] == before["ew"] and after["pmtrec"] == before["pmtrec"] and len(after["uw"]) == 2


def own_space(cfg: dict, method: str) -> dict:
    own = cfg["tune"]["space"].get(method)
    return tunable_space(entry(method).tunable) if own is None else own


@pytest.mark.parametrize("name", ["config/paper.yaml", ".test/config/config.yaml"])
def test_per_method_draws_are_each_methods_expansion_seeded_by_its_name(name):
    cfg = raw(name)
    cfg["tune"].pop("draws", None)
    default = plan(cfg).points  # the schema's default
    cfg["tune"]["draws"] = "per_method"
    study = plan(cfg)
    tune = study.cfg["tune"]  # with the schema's defaults
    assert study.points == default
    for m, points in study.points.items():
        own = own_space(cfg, m)
        space = {**tune["space"]["shared"], **own}
        expected = expand(space, list(own), tune["budget"], [tune["sampler_seed"], *stable_seed(m)], tune["sampler"])
        assert list(points.items()) == [(slug(p), canon(p)) for p in expected]


def shared_part(points: dict, keys) -> list[tuple]:
    return [tuple(p[k] for k in sorted(keys)) for p in points.values()]


def test_shared_draws_give_every_method_the_same_shared_points_in_the_same_order():
    cfg = raw("config/paper.yaml")
    cfg["tune"]["draws"] = "shared"
    study = plan(cfg)
    keys, budget = cfg["tune"]["space"]["shared"], cfg["tune"]["budget"]
    common = shared_part(study.points["ew"], keys)
    assert len(set(common)) == budget == 12
    for m, points in study.points.items():
        assert shared_part(points, keys) == common, m  # setting i of every method: shared point i
        own = own_space(cfg, m)
        grid = [k for k in own if isinstance(own[k], list)]
        per_own = Counter(slug({k: p[k] for k in grid}) for p in points.values())
        assert max(per_own.values()) - min(per_own.values()) <= 1, m  # every own grid point, evenly
        assert len(per_own) == min(len(list(itertools.product(*(own[k] for k in grid)))), budget), m
    assert {slug({k: p[k] for k in ("focus_max", "focus_rows")}) for p in study.points["pmtrec"].values()} == \
        {slug({"focus_max": f, "focus_rows": r}) for f in (0.3, 0.5, 0.7) for r in ("main", "all")}
    cfg["tune"]["draws"] = "per_method"
    per_method = plan(cfg).points  # the draw luck shared draws remove
    assert shared_part(per_method["ew"], keys) != shared_part(per_method["uw"], keys)


def test_shared_draws_give_methods_without_own_knobs_identical_settings():
    cfg = raw()
    cfg["methods"].append("uw")
    cfg["tune"].update(draws="shared", budget=4)
    cfg["tune"]["space"].update(shared=SHARED, ew={}, uw={})
    points = plan(cfg).points
    assert points["ew"] == points["uw"] and len(points["ew"]) == 4
    assert Counter(p["focus_max"] for p in points["pmtrec"].values()) == {0.25: 2, 0.5: 2}
    assert shared_part(points["pmtrec"], SHARED) == shared_part(points["ew"], SHARED)


def test_shared_draws_do_not_depend_on_which_methods_are_in_the_study():
    cfg = raw()
    cfg["tune"].update(draws="shared", budget=4)
    cfg["tune"]["space"]["shared"] = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "train.l2": [0.0, 1e-4]}
    before = plan(cfg).points
    common = shared_part(before["ew"], cfg["tune"]["space"]["shared"])
    assert len(set(common)) == 4
    edited = copy.deepcopy(cfg)  # ew removed, uw added (a rename of a method without own knobs)
    edited["methods"] = [m if m != "ew" else "uw" for m in cfg["methods"]]
    edited["sensitivity"]["dim_methods"] = ["uw"]
    after = plan(edited).points
    assert "ew" not in after and after["uw"] == before["ew"] and after["pmtrec"] == before["pmtrec"]
    cfg["tune"]["sampler_seed"] = 1  # the seed, not the methods, moves them
    assert shared_part(plan(cfg).points["ew"], cfg["tune"]["space"]["shared"]) != common


def test_tuned_methods_run_their_setting_and_reported_runs_read_the_selection():
    study = plan(raw())
    point = next(iter(study.points["ew"].values()))
    config_file, pairs = study.train_pairs("tiny", "ew", point, use_selected=False)
    assert config_file is None and dict(pairs)["train.l2"] == point["train.l2"]
    config_file, pairs = study.train_pairs("tiny", "ew")
    assert config_file == "results/tune/tiny/ew/selected.yaml" and "train.l2" not in dict(pairs)
    files = study.tune_points("tiny", "ew")
    assert all(f.endswith("/seed100.json") for f in files) and len(files) == 2


def test_selection_averages_the_tuning_seeds():
    points = {"a/seed100.json": {"x": 1}, "a/seed101.json": {"x": 1}, "b/seed100.json": {"x": 2},
              "b/seed101.json": {"x": 2}}
    scores = {"a/seed100.json": 0.30, "a/seed101.json": 0.10, "b/seed100.json": 0.25, "b/seed101.json": 0.20}
    results = {p: {"valid": {"overall": {"ndcg@20": s}}} for p, s in scores.items()}
    chosen, table = select_setting(points, "ndcg@20", results)
    assert chosen == {"x": 2}  # mean 0.225 > 0.20, although a holds the single best run
    assert table["selected"].tolist() == [False, False, True, True]
    assert table["mean"].round(3).tolist() == [0.2, 0.2, 0.225, 0.225]


def test_split_seed_run_gives_each_seed_its_own_prepared_split():
    study = plan(raw())
    assert study.data_dir("tiny", 1) == "resources/prepared/tiny.split1"
    assert dict(study.prepare_pairs("tiny", 1))["preprocess.seed"] == 1
    cfg = raw()
    cfg["split_seed"] = "fixed"
    fixed = plan(cfg)
    assert fixed.data_dir("tiny", 1) == fixed.data_dir("tiny", 100) == "resources/prepared/tiny"


BAD = [
    ("tuning seed reported", lambda c: c["tune"].update(seeds=[1]), "tune.seeds", "[1] also in seeds [0, 1]"),
    ("tuning seed in ablation", lambda c: (c["tune"].update(seeds=[7]), c["ablation"].update(seeds=[7])),
     "tune.seeds", "also in ablation.seeds"),
    ("space too small", lambda c: c["tune"].update(budget=3), "tune.space.ew", "fewer than the 3 needed"),
    ("shared value of the wrong type", lambda c: c["tune"]["space"]["shared"].update({"train.l2": [0.0, "x"]}),
     "tune.space.shared.train.l2", "number"),
    ("plain shared knob", lambda c: c["tune"]["space"]["shared"].update(tau=[1.0]), "tune.space.shared.tau",
     "run-config keys"),
    ("bad range", lambda c: c["tune"]["space"].update(pmtrec={"focus_max": {"low": 0.9, "high": 0.1}}),
     "tune.space.pmtrec.focus_max", "must be below"),
    ("space value", lambda c: c["tune"]["space"].update(pmtrec={"tau": [1.0, "x"]}), "tune.space.pmtrec.tau",
     "positive number"),
    ("space of a model", lambda c: c["tune"]["space"].update(mostpop={"train.l2": [0.1]}), "tune.space.mostpop",
     "baseline model"),
    ("legacy grids with a budget", lambda c: c["tune"].update(grids={"ew": {"train.l2": [0.1, 0.2]}}), "tune.grids",
     "tune.space"),
    ("old tune.seed", lambda c: c["tune"].update(seed=0), "tune.seed", "did you mean 'seeds'"),
    ("split seed set twice", lambda c: c["run"].update(preprocess={"seed": 3}), "run.preprocess.seed",
     "split_seed: run"),
    ("bad draws", lambda c: c["tune"].update(draws="paired"), "tune.draws", "'paired' is not one of: per_method, shared"),
    ("shared draws too few", lambda c: c["tune"].update(draws="shared", budget=3), "tune.space.shared",
     "2 distinct points, fewer than the 3 needed for tune.budget 3"),
    ("shared draws of nothing", lambda c: (c["tune"].update(draws="shared"), c["tune"]["space"].pop("shared")),
     "tune.space.shared", "nothing to vary"),
    ("own key replacing the shared draws", lambda c: (c["tune"].update(draws="shared"),
                                                      c["tune"]["space"].update(ew={"train.l2": [0.0]})),
     "tune.space.ew", "its own train.l2 replaces the shared draws"),
]


@pytest.mark.parametrize("name, edit, key, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_tuning_config_fails_with_one_line_naming_the_key(name, edit, key, words):
    cfg = raw()
    edit(cfg)
    with pytest.raises(StudyConfigError) as info:
        plan(cfg)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"config key '{key}'"), line
    assert words in line, line


def test_setting_names_have_no_comma():
    """A SLURM job names its own target with Snakemake's --target-jobs, which splits on commas."""
    from pmtrec.study.grid import slug

    assert slug({"train.l2": 1e-4, "focus_max": 0.5}) == "focus_max=0.5+train.l2=0.0001"
    assert "," not in slug({"a": [1, 2], "b": "x,y"})
