rule preprocess:
    input:
        star=raw_star,
    output:
        star=res("preprocess/{dataset}/particles.star"),
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        split=res("preprocess/{dataset}/split.csv"),
        set1=res("preprocess/{dataset}/set1.star"),
        set2=res("preprocess/{dataset}/set2.star"),
        preview=report(
            res("preprocess/{dataset}/preview.png"),
            caption="../report/preprocess.rst",
            category="Preprocessing",
            subcategory="{dataset}",
        ),
    log:
        res("logs/preprocess/{dataset}.log"),
    benchmark:
        res("benchmarks/preprocess/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=stage_params("preprocess"),
    shell:
        "python -m cryopipe preprocess --params {params.cfg:q} --star {input.star}"
        " --out-star {output.star} --out-mrcs {output.mrcs} --out-split {output.split} --out-set1 {output.set1}"
        " --out-set2 {output.set2} --out-preview {output.preview} > {log} 2>&1"
