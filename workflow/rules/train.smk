# Stage 3: train. One job per dataset x method x seed (`train`), and the tuning protocol
# (docs/protocol.md):
#   tune            each of a tuned method's tune.budget settings (drawn from tune.space: the shared
#                   lr / l2 knobs x its own) on every tuning seed (tune.seeds, never a reported seed)
#   select_setting  the setting with the best mean validation metric (tune.metric, NDCG@20)
#                   -> results/tune/<dataset>/<method>/selected.yaml (a run-config fragment)
#   train           the final seeds run with the selected setting (`--config selected.yaml`);
#                   the test metrics of the study come only from these runs.
# Every run reads the prepared folder of its seed's split (STUDY.data_dir: the fixed split, or with
# split_seed: run the split seeded by the run's seed).
#
# Each job: `pmtrec train --device auto` (CUDA when there is a GPU, else the CPU), wrapped by
# pmtrec.gpu_slots, which pins the job to a free slot of the least-loaded GPU on a workstation
# (PMTREC_JOBS_PER_GPU slots per GPU, default 1; nothing without GPUs or under SLURM). A checkpoint
# is written every epoch so that a retried job (preempted or timed out) resumes; it is deleted
# when the job succeeds. Every run writes its per-user test metrics beside its result (`per_user`,
# for the user-level tests of the comparisons table). Main runs also save
# their best-epoch embedding tables beside the result (for rules probe and embedding_map); a
# baseline model has none (rule train_without_embeddings), and tuning, ablation and sensitivity runs keep none.
# With analysis.keep_embeddings false they are temp files, deleted once the probe and map have read them.

TRAIN_RES = STUDY.resources["train"]

TRAIN_SHELL = (
    "python -m pmtrec.gpu_slots -- "
    "pmtrec train --data {input.data} --method {params.method} --seed {params.seed} "
    "--device auto --threads {threads} {params.config} {params.sets} {params.labels} "
    "--out {output.json} {params.embeddings} --checkpoint {params.checkpoint} --no-progress > {log} 2>&1 "
    "&& rm -f {params.checkpoint}"
)


rule train:
    """One run of the main comparison: dataset x method x seed, with its embedding tables."""
    input:
        data=lambda wc: STUDY.data_dir(wc.dataset, wc.seed),
        selected=lambda wc: selected_input(wc.dataset, wc.method),
    output:
        json=run_path("{dataset}", "{method}", "{seed}"),
        emb=emb_output(emb_path("{dataset}", "{method}", "{seed}")),
        per_user=per_user_of(run_path("{dataset}", "{method}", "{seed}")),
    log:
        f"{LOGS}/train/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        bench_path("train", "{dataset}", "{method}", "seed{seed}")
    params:
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        config=lambda wc: STUDY.train_params(wc.dataset, wc.method)["config"],
        sets=lambda wc: STUDY.train_params(wc.dataset, wc.method)["sets"],
        labels=lambda wc: STUDY.labels("main", wc.dataset, wc.method, wc.seed),
        # rules derived with an output of their own (no `emb`) save no tables
        embeddings=lambda wc, output: f"--embeddings {output.emb}" if getattr(output, "emb", None) else "",
        checkpoint=lambda wc: checkpoint_path(
            "train", f"{wc.dataset}/{wc.method}/seed{wc.seed}-{STUDY.train_params(wc.dataset, wc.method)['tag']}"
        ),
    threads: TRAIN_RES["threads"]
    resources:
        mem_mb=TRAIN_RES["mem_mb"],
        runtime=TRAIN_RES["runtime"],
        gpu=train_gpu,
    conda:
        "../envs/pmtrec.yaml"
    shell:
        TRAIN_SHELL


use rule train as train_without_embeddings with:
    wildcard_constraints:
        method="|".join(STUDY.untrained_methods()) or "(?!)",  # baseline models (never matches if none)
    output:
        json=run_path("{dataset}", "{method}", "{seed}"),
        per_user=per_user_of(run_path("{dataset}", "{method}", "{seed}")),


ruleorder: train_without_embeddings > train


use rule train as tune with:
    input:
        data=lambda wc: STUDY.data_dir(wc.dataset, wc.seed),
    output:
        json=tune_path("{dataset}", "{method}", "{point}", "{seed}"),
        per_user=per_user_of(tune_path("{dataset}", "{method}", "{point}", "{seed}")),
    log:
        f"{LOGS}/tune/{{dataset}}/{{method}}/{{point}}/seed{{seed}}.log",
    benchmark:
        bench_path("tune", "{dataset}", "{method}", "{point}", "seed{seed}")
    params:
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        config="",
        sets=lambda wc: tune_params(wc)["sets"],
        labels=lambda wc: STUDY.labels("tune", wc.dataset, wc.method, wc.seed, wc.point),
        embeddings="",
        checkpoint=lambda wc: checkpoint_path(
            "tune", f"{wc.dataset}/{wc.method}/{wc.point}/seed{wc.seed}-{tune_params(wc)['tag']}"
        ),


rule select_setting:
    """The setting of a method with the best mean validation metric over the tuning seeds."""
    input:
        lambda wc: STUDY.tune_runs(wc.dataset, wc.method),
    output:
        selected_path("{dataset}", "{method}"),
    log:
        f"{LOGS}/select_setting/{{dataset}}/{{method}}.log",
    params:
        points=lambda wc: STUDY.tune_points(wc.dataset, wc.method),
        fixed=lambda wc: STUDY.fixed_params(wc.method),
        metric=config["tune"]["metric"],
    conda:
        "../envs/pmtrec.yaml"
    script:
        "../scripts/select_setting.py"
