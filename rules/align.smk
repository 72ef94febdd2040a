rule align:
    input:
        star=res("preprocess/{dataset}/set1.star"),
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        truth=truth_table,
    output:
        star=res("align/{dataset}/particles.star"),
        amplitudes=res("align/{dataset}/amplitudes.csv"),
        kept=res("align/{dataset}/kept.star"),
        reference=res("align/{dataset}/second_reference.npz"),
        plot=report(
            res("align/{dataset}/estimates.png"),
            caption="../report/align.rst",
            category="Alignment",
            subcategory="{dataset}",
        ),
    log:
        res("logs/align/{dataset}.log"),
    benchmark:
        res("benchmarks/align/{dataset}.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        cfg=stage_params("align"),
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "python -m cryopipe align --params {params.cfg:q} --star {input.star} --atoms {input.atoms}"
        " --modes {input.modes} {params.truth} --out-star {output.star} --out-amplitudes {output.amplitudes}"
        " --out-kept {output.kept} --out-plot {output.plot} --out-reference {output.reference} > {log} 2>&1"
