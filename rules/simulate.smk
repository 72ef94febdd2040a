rule conformations:
    input:
        modes=rules.modes.output.modes,
        atoms=rules.reference.output.atoms,
    output:
        table=res("conformations/truth.csv"),
        plot=report(res("conformations/truth.png"), caption="../report/conformations.rst", category="Simulation"),
    log:
        res("logs/conformations.log"),
    benchmark:
        res("benchmarks/conformations.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("conformations"),
    shell:
        "python -m cryopipe conformations --params {params.cfg:q} --modes {input.modes}"
        " --atoms {input.atoms} --out-truth {output.table} --out-plot {output.plot} > {log} 2>&1"


# One job per SNR × defocus grid point: the grid values are in the dataset name, so editing
# one value of config simulate.grid only creates (and runs) that branch.
rule simulate:
    input:
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        conformations=rules.conformations.output.table,
    output:
        star=res("simulate/{dataset}/particles.star"),
        mrcs=res("simulate/{dataset}/particles.mrcs"),
        truth=res("simulate/{dataset}/truth.csv"),
        preview=report(
            res("simulate/{dataset}/preview.png"),
            caption="../report/simulate.rst",
            category="Simulation",
            subcategory="{dataset}",
        ),
    log:
        res("logs/simulate/{dataset}.log"),
    benchmark:
        res("benchmarks/simulate/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=stage_params("simulate"),
    shell:
        "python -m cryopipe simulate --params {params.cfg:q} --dataset {wildcards.dataset}"
        " --atoms {input.atoms} --modes {input.modes} --conformations {input.conformations}"
        " --out-star {output.star} --out-mrcs {output.mrcs} --out-truth {output.truth} --out-preview {output.preview} > {log} 2>&1"


rule import_particles:
    input:
        star=lambda wc: config["data"]["import"]["star"] or [],
    output:
        star=res("import/{dataset}/particles.star"),
    log:
        res("logs/import/{dataset}.log"),
    benchmark:
        res("benchmarks/import/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("import_star"),
    shell:
        "python -m cryopipe import --params {params.cfg:q} --out-star {output.star} > {log} 2>&1"
