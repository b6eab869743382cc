# Stage 1: download. Locate every raw file of a dataset (the mirror, then the cache
# resources/raw/<source>/, then the source's URL), check its SHA-256, and record the result in a
# manifest. Synthetic data has no files and no download job. Runs on the submitting host
# (localrule): compute nodes often have no network.


rule download:
    """Raw files of one dataset: mirror, cache or URL, checked against their SHA-256 sums."""
    output:
        manifest_path("{dataset}"),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    params:
        # Content-defining settings only: the location of the mirror is read from the config by
        # the script, so moving the mirror reruns nothing.
        sets=lambda wc: STUDY.prepare_pairs(wc.dataset),
    threads: STUDY.resources["download"]["threads"]
    resources:
        mem_mb=STUDY.resources["download"]["mem_mb"],
        runtime=STUDY.resources["download"]["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    script:
        "../scripts/download.py"
