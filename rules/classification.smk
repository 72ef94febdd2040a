# The supervised homologue-classification benchmark (PNNL PDX1.2 / PDX1.3): `snakemake classification`.
# Not part of the default target. So far: the class builder (classes that differ only by one loop).


rule homologues:
    output:
        classes=res("classification/classes.npz"),
        table=report(
            res("classification/classes.csv"),
            caption="../report/homologues.rst",
            category="Classification",
        ),
    log:
        res("logs/homologues.log"),
    benchmark:
        res("benchmarks/homologues.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        cfg=stage_params("homologues"),
    shell:
        "python -m cryopipe homologues --params {params.cfg:q}"
        " --out-classes {output.classes} --out-table {output.table} > {log} 2>&1"


rule classification:
    input:
        rules.homologues.output.table,
