# Stage 6: aggregate. Every result JSON (validated against pmtrec/schemas/result.schema.json; each
# says what it is in the study through its labels), the Snakemake benchmark files, the dataset
# statistics and the embedding analysis's probes and maps -> tidy CSV tables in results/tables/
# (pmtrec.aggregate; the columns are documented in config/README.md).
# The comparisons and claims tables also read each main/ablation result's per-user metrics
# (<result stem>.per_user.npz, an output of the train rules beside the result; a baseline model's
# too). pmtrec.aggregate reads them beside each result (a results folder from elsewhere without
# them only means "no per-user metrics: no test").

ENTRIES = STUDY.result_entries()
AGG_RES = STUDY.resources["aggregate"]


rule aggregate:
    """All results -> results/tables/*.csv (means, stds, significance, curves, efficiency, ...)."""
    input:
        results=[e["path"] for e in ENTRIES],
        per_user=[per_user_of(e["path"]) for e in ENTRIES if e["kind"] in ("main", "ablation")],
        benchmarks=[e["benchmark"] for e in ENTRIES],
        data=[prepared_dir(d) for d in STUDY.datasets],
        probes=[e["path"] for e in STUDY.probe_entries()],
        maps=list(STUDY.maps().values()),
    output:
        expand(f"{TABLES}/{{name}}.csv", name=TABLE_NAMES),
    log:
        f"{LOGS}/aggregate.log",
    params:
        datasets={d: prepared_dir(d) for d in STUDY.datasets},
        maps=STUDY.maps(),
        significance=canon(config["significance"]),
        tune_metric=config["tune"]["metric"],
        protocol=canon(STUDY.tuning_protocol()),
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
    threads: AGG_RES["threads"]
    resources:
        mem_mb=AGG_RES["mem_mb"],
        runtime=AGG_RES["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    script:
        "../scripts/aggregate.py"
