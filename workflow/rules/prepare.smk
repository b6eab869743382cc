# Stage 2: prepare. Raw files -> the canonical prepared dataset (k-core filtering, split,
# statistics in stats.json / stats.csv), written atomically by `pmtrec prepare`. `prepare`: the
# config's fixed split (resources/prepared/<dataset>); `prepare_split`: the split of one seed
# (resources/prepared/<dataset>.split<N>, split_seed: run).

# No mirror here: every raw file is read through the download step's manifest (located and
# checksummed there), so moving the mirror reruns nothing.

import re


rule prepare:
    """Canonical prepared dataset of one configured dataset."""
    input:
        unpack(download_input),
        local=local_inputs,
    output:
        directory(prepared_dir("{dataset}")),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        bench_path("prepare", "{dataset}")
    params:
        sets=lambda wc: set_args(STUDY.prepare_pairs(wc.dataset)),
        # the download step's manifest: its files are used as located and checksummed there
        manifest=lambda wc, input: f"--set dataset.manifest={shlex.quote(input.manifest)}" if input.get("manifest") else "",
    threads: STUDY.resources["prepare"]["threads"]
    resources:
        mem_mb=STUDY.resources["prepare"]["mem_mb"],
        runtime=STUDY.resources["prepare"]["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in STUDY.datasets),  # not "<dataset>.split<N>" (below)
    shell:
        "pmtrec prepare {params.sets} {params.manifest} --out {output} > {log} 2>&1"


# The prepared dataset of one split seed (split_seed: run): preprocess.seed = that seed.
use rule prepare as prepare_split with:
    output:
        directory(prepared_dir("{dataset}", "{split}")),
    log:
        f"{LOGS}/prepare/{{dataset}}.split{{split}}.log",
    benchmark:
        bench_path("prepare", "{dataset}.split{split}")
    params:
        sets=lambda wc: set_args(STUDY.prepare_pairs(wc.dataset, int(wc.split))),
        manifest=lambda wc, input: f"--set dataset.manifest={shlex.quote(input.manifest)}" if input.get("manifest") else "",
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in STUDY.datasets),
        split=r"\d+",
