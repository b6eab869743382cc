# Stage 5: sensitivity.
#   * sensitivity.grid: sensitivity.method (PMTRec) over the Cartesian product of the grid (tau x
#     focus_max), the other hyperparameters at the method's fixed `method_params` (not tuned);
#     point names like "focus_max=0.5+tau=1.0".
#   * sensitivity.dim: each of sensitivity.dim_methods at every embedding size, otherwise exactly
#     as in the main comparison (selected setting when tuned); point names like "model.dim=32".


use rule train as sensitivity with:
    input:
        data=lambda wc: STUDY.data_dir(wc.dataset, wc.seed),
        selected=lambda wc: selected_input(wc.dataset, wc.method, sens_point(wc)["kind"] == "dim"),
    output:
        json=sensitivity_path("{dataset}", "{method}", "{point}", "{seed}"),
        per_user=per_user_of(sensitivity_path("{dataset}", "{method}", "{point}", "{seed}")),
    log:
        f"{LOGS}/sensitivity/{{dataset}}/{{method}}/{{point}}/seed{{seed}}.log",
    benchmark:
        bench_path("sensitivity", "{dataset}", "{method}", "{point}", "seed{seed}")
    params:
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        config=lambda wc: sens_params(wc)["config"],
        sets=lambda wc: sens_params(wc)["sets"],
        labels=lambda wc: STUDY.labels("sensitivity", wc.dataset, wc.method, wc.seed, wc.point),
        embeddings="",
        checkpoint=lambda wc: checkpoint_path(
            "sensitivity", f"{wc.dataset}/{wc.method}/{wc.point}/seed{wc.seed}-{sens_params(wc)['tag']}"
        ),
