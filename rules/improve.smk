# Map improvement of the group maps (analysis.improve.method): classical (FSC weighting + Guinier B-factor
# sharpening, one cheap job per group) and the EMReady-style network (one training per run on pairs the
# pipeline simulates, then one job per group), each map written beside the raw one; `evaluate` scores them.


rule improve_train:
    input:
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        stars=lambda wc: raw_stars(),
    output:
        model=res("improve/model.pt"),
        history=res("improve/history.csv"),
        curve=report(res("improve/learning_curve.png"), caption="../report/improve_train.rst", category="Maps"),
        pairs=report(res("improve/pairs.png"), caption="../report/improve_train.rst", category="Maps"),
    log:
        res("logs/improve_train.log"),
    benchmark:
        res("benchmarks/improve_train.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=1,
    params:
        cfg=stage_params("improve_train"),
    shell:
        "python -m cryopipe improve-train --params {params.cfg:q} --atoms {input.atoms} --modes {input.modes}"
        " --stars {input.stars} --out-model {output.model} --out-history {output.history} --out-curve {output.curve}"
        " --out-pairs {output.pairs} > {log} 2>&1"


rule improve_classical:
    input:
        map=res("analysis/{dataset}/maps/group{group}.mrc"),
        half1=res("analysis/{dataset}/maps/group{group}_half1.mrc"),
        half2=res("analysis/{dataset}/maps/group{group}_half2.mrc"),
        atoms=rules.reference.output.atoms,
    output:
        fsc_weighted=res("analysis/{dataset}/maps/group{group}_fsc_weighted.mrc"),
        sharpened=res("analysis/{dataset}/maps/group{group}_sharpened.mrc"),
        info=res("analysis/{dataset}/maps/group{group}_classical.json"),
    log:
        res("logs/improve_classical/{dataset}/group{group}.log"),
    benchmark:
        res("benchmarks/improve_classical/{dataset}/group{group}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("improve", stride=None, min_density=None, batch_size=None),
    shell:
        "python -m cryopipe improve --params {params.cfg:q} --map {input.map} --half1 {input.half1}"
        " --half2 {input.half2} --atoms {input.atoms} --out-fsc-weighted {output.fsc_weighted}"
        " --out-sharpened {output.sharpened} --out-info {output.info} > {log} 2>&1"


rule improve_network:
    input:
        map=res("analysis/{dataset}/maps/group{group}.mrc"),
        half1=res("analysis/{dataset}/maps/group{group}_half1.mrc"),
        half2=res("analysis/{dataset}/maps/group{group}_half2.mrc"),
        atoms=rules.reference.output.atoms,
        model=rules.improve_train.output.model,
    output:
        map=res("analysis/{dataset}/maps/group{group}_network.mrc"),
        info=res("analysis/{dataset}/maps/group{group}_network.json"),
    log:
        res("logs/improve_network/{dataset}/group{group}.log"),
    benchmark:
        res("benchmarks/improve_network/{dataset}/group{group}.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
        gpu=1,
    params:
        cfg=stage_params("improve"),
    shell:
        "python -m cryopipe improve --params {params.cfg:q} --map {input.map} --half1 {input.half1}"
        " --half2 {input.half2} --atoms {input.atoms} --model {input.model} --out-network {output.map}"
        " --out-info {output.info} > {log} 2>&1"
