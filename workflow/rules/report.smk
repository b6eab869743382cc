# Stages 7-8: notebook and report. Each report notebook (package data: pmtrec/report/notebooks/,
# also notebooks/ at the repository root; pmtrec.report.notebook.notebook_path) is executed by
# papermill (python -m pmtrec.report.execute: one-line errors) with the parameters it declares out of
# tables_dir, out_dir, datasets, prepared_dirs and bench_csvs; it writes its figures (SVG), tables
# and readings to results/report/NN_name/. The report step compiles those folders into
# reports/pmtrec_report.pdf (pmtrec.report.build, typst). `snakemake --report report.html` shows
# the figures and the PDF (captions in workflow/report/).

NB_RES = STUDY.resources["notebook"]


rule notebook:
    """Execute one report notebook against the aggregated tables."""
    input:
        notebook=lambda wc: notebook_path(wc.notebook),
        tables=expand(f"{TABLES}/{{name}}.csv", name=TABLE_NAMES),
        prepared=notebook_prepared,
        bench=notebook_bench,
    output:
        notebook=f"{RESULTS}/notebooks/{{notebook}}.ipynb",
        section=report(
            directory(f"{REPORT_DIR}/{{notebook}}"),
            patterns=["{name}.svg"],
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{notebook}",
        ),
    log:
        f"{LOGS}/notebook/{{notebook}}.log",
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        datasets=",".join(STUDY.datasets),
        prepared=lambda w: " ".join(f"--prepared {d}={prepared_dir(d)}" for d in notebook_datasets(w)),
        bench=lambda wildcards, input: " ".join(f"--bench {p}" for p in input.bench),
    threads: NB_RES["threads"]
    resources:
        mem_mb=NB_RES["mem_mb"],
        runtime=NB_RES["runtime"],
    conda:
        "../envs/pmtrec.yaml"
    shell:
        "python -m pmtrec.report.execute {input.notebook} {output.notebook} --tables {params.tables} "
        "--out-dir {output.section} --datasets {params.datasets} {params.prepared} {params.bench} "
        "> {log} 2>&1"


rule report:
    """The PDF report (reports/pmtrec_report.pdf), compiled atomically with typst."""
    input:
        notebooks=expand(f"{RESULTS}/notebooks/{{notebook}}.ipynb", notebook=NOTEBOOKS),
        sections=expand(f"{REPORT_DIR}/{{notebook}}", notebook=NOTEBOOKS),
        tables=expand(f"{TABLES}/{{name}}.csv", name=TABLE_NAMES),
    output:
        report(REPORT_PDF, caption="../report/pdf.rst", category="Report"),
    log:
        f"{LOGS}/report.log",
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        # provenance for the title page (git commit, run config hashes, devices)
        results=[e["path"] for e in ENTRIES],
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12],
    conda:
        "../envs/pmtrec.yaml"
    script:
        "../scripts/report.py"
