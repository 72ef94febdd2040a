rule train:
    input:
        star=rules.align.output.star,
        amplitudes=rules.align.output.amplitudes,
        split=res("preprocess/{dataset}/split.csv"),
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        truth=truth_table,
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
    output:
        model=res("train/{dataset}/{kind}/model.pt"),
        history=res("train/{dataset}/{kind}/history.csv"),
        curve=report(
            res("train/{dataset}/{kind}/learning_curve.png"),
            caption="../report/train.rst",
            category="Network",
            subcategory="{dataset}",
        ),
    log:
        res("logs/train/{dataset}/{kind}.log"),
    benchmark:
        res("benchmarks/train/{dataset}/{kind}.tsv")
    wildcard_constraints:
        kind="amplitudes|orientation|shifts|combined",
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=TRAIN_GPUS,
    params:
        cfg=stage_params("train"),
        launch=TRAIN_LAUNCH,
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "{params.launch} cryopipe train --params {params.cfg:q} --kind {wildcards.kind} --star {input.star}"
        " --amplitudes {input.amplitudes} --split {input.split} {params.truth} --atoms {input.atoms}"
        " --modes {input.modes} --out-model {output.model}"
        " --out-history {output.history} --out-curve {output.curve} > {log} 2>&1"


rule infer:
    input:
        star=res("preprocess/{dataset}/set2.star"),
        all_star=res("preprocess/{dataset}/particles.star"),
        split=res("preprocess/{dataset}/split.csv"),
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        models=lambda wc: expand(res("train/{dataset}/{kind}/model.pt"), dataset=wc.dataset, kind=train_kinds()),
    output:
        star=res("infer/{dataset}/particles.star"),
        amplitudes=res("infer/{dataset}/amplitudes.csv"),
        test_star=res("infer/{dataset}/test.star"),
        test_amplitudes=res("infer/{dataset}/test_amplitudes.csv"),
    log:
        res("logs/infer/{dataset}.log"),
    benchmark:
        res("benchmarks/infer/{dataset}.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    params:
        cfg=stage_params("infer"),
    shell:
        "python -m cryopipe infer --params {params.cfg:q} --star {input.star} --models {input.models}"
        " --out-star {output.star} --out-amplitudes {output.amplitudes} --preprocessed-star {input.all_star} --split {input.split}"
        " --out-test-star {output.test_star} --out-test-amplitudes {output.test_amplitudes} > {log} 2>&1"


rule refine:
    input:
        star=rules.infer.output.star,
        amplitudes=rules.infer.output.amplitudes,
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        reference=rules.align.output.reference,
        prior=res("preprocess/{dataset}/set2.star"),
        truth=truth_table,
    output:
        star=res("refine/{dataset}/particles.star"),
        amplitudes=res("refine/{dataset}/amplitudes.csv"),
        plot=report(
            res("refine/{dataset}/refinement.png"),
            caption="../report/refine.rst",
            category="Network",
            subcategory="{dataset}",
        ),
    log:
        res("logs/refine/{dataset}.log"),
    benchmark:
        res("benchmarks/refine/{dataset}.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        cfg=stage_params("refine"),
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "python -m cryopipe refine --params {params.cfg:q} --star {input.star} --amplitudes {input.amplitudes}"
        " --atoms {input.atoms} --modes {input.modes} --reference {input.reference} --prior-star {input.prior}"
        " {params.truth} --out-star {output.star}"
        " --out-amplitudes {output.amplitudes} --out-plot {output.plot} > {log} 2>&1"
