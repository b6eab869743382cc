# Stage 4: ablation. The PMTRec variants (ablation.variants) x datasets x seeds, with PMTRec's
# hyperparameters (its selected setting when PMTRec is tuned). The full model's row of the
# ablation table is the main comparison's `pmtrec` run.


use rule train as ablation with:
    input:
        data=lambda wc: STUDY.data_dir(wc.dataset, wc.seed),
        selected=lambda wc: selected_input(wc.dataset, wc.method),
    output:
        json=ablation_path("{dataset}", "{method}", "{seed}"),
        per_user=per_user_of(ablation_path("{dataset}", "{method}", "{seed}")),
    log:
        f"{LOGS}/ablation/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        bench_path("ablation", "{dataset}", "{method}", "seed{seed}")
    params:
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        config=lambda wc: STUDY.train_params(wc.dataset, wc.method)["config"],
        sets=lambda wc: STUDY.train_params(wc.dataset, wc.method)["sets"],
        labels=lambda wc: STUDY.labels("ablation", wc.dataset, wc.method, wc.seed),
        embeddings="",
        checkpoint=lambda wc: checkpoint_path(
            "ablation", f"{wc.dataset}/{wc.method}/seed{wc.seed}-{STUDY.train_params(wc.dataset, wc.method)['tag']}"
        ),
