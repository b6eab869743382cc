# Stage 5b: what the embeddings learn (pmtrec.analysis, scikit-learn). Every main run with embedding
# tables gets its linear probes (`probe`: category, social link and activity group, each against a
# permuted baseline); each dataset with categories gets 2-D maps (PCA, t-SNE) of the item
# embeddings of analysis.map_methods on the first seed (`embedding_map`). Both go to `aggregate`.

AN_RES = STUDY.resources["analysis"]


rule probe:
    """Linear probes of one main run's saved embeddings."""
    input:
        result=run_path("{dataset}", "{method}", "{seed}"),
        emb=emb_path("{dataset}", "{method}", "{seed}"),
        data=lambda wc: STUDY.data_dir(wc.dataset, wc.seed),
    output:
        probe_path("{dataset}", "{method}", "{seed}"),
    log:
        f"{LOGS}/probe/{{dataset}}/{{method}}/seed{{seed}}.log",
    threads: AN_RES["threads"]
    resources:
        mem_mb=AN_RES["mem_mb"],
        runtime=AN_RES["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    shell:
        "pmtrec probe --result {input.result} --data {input.data} --out {output} > {log} 2>&1"


rule embedding_map:
    """2-D maps of the item embeddings of the map methods on one dataset (first seed)."""
    input:
        results=lambda wc: [run_path(wc.dataset, m, STUDY.seeds[0]) for m in STUDY.map_methods(wc.dataset)],
        emb=lambda wc: [emb_path(wc.dataset, m, STUDY.seeds[0]) for m in STUDY.map_methods(wc.dataset)],
        data=lambda wc: STUDY.data_dir(wc.dataset, STUDY.seeds[0]),
    output:
        map_path("{dataset}"),
    log:
        f"{LOGS}/embedding_map/{{dataset}}.log",
    params:
        n_items=config["analysis"]["map_items"],
    threads: AN_RES["threads"]
    resources:
        mem_mb=AN_RES["mem_mb"],
        runtime=AN_RES["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    shell:
        "pmtrec embedding-map --result {input.results} --data {input.data} --items {params.n_items} "
        "--out {output} > {log} 2>&1"
