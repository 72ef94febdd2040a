# The supervised homologue-classification benchmark (PNNL PDX1.2 / PDX1.3): `snakemake classification`.
# Not part of the default target. Classes that differ by one loop → noiseless images → one data set per
# SNR → classifiers trained per SNR (GPU rules) → scores per SNR → a summary across SNR.


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


rule homologue_signal:
    input:
        classes=rules.homologues.output.classes,
    output:
        mrcs=res("classification/signal.mrcs"),
        truth=res("classification/truth.csv"),
        preview=report(
            res("classification/classes.png"),
            caption="../report/homologue_classes.rst",
            category="Classification",
        ),
    log:
        res("logs/homologue_signal.log"),
    benchmark:
        res("benchmarks/homologue_signal.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cfg=stage_params("homologue_signal"),
    shell:
        "python -m cryopipe homologue-signal --params {params.cfg:q} --classes {input.classes}"
        " --out-mrcs {output.mrcs} --out-truth {output.truth} --out-preview {output.preview} > {log} 2>&1"


rule homologue_images:
    input:
        classes=rules.homologues.output.classes,
        signal=rules.homologue_signal.output.mrcs,
        truth=rules.homologue_signal.output.truth,
    output:
        star=res("classification/snr{snr}/particles.star"),
        mrcs=res("classification/snr{snr}/particles.mrcs"),
        preview=res("classification/snr{snr}/preview.png"),
    log:
        res("logs/homologue_images/snr{snr}.log"),
    benchmark:
        res("benchmarks/homologue_images/snr{snr}.tsv")
    wildcard_constraints:
        snr=r"[0-9.eE+-]+",
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=stage_params("homologue_images"),
    shell:
        "python -m cryopipe homologue-images --params {params.cfg:q} --snr {wildcards.snr}"
        " --classes {input.classes} --signal {input.signal} --truth {input.truth}"
        " --out-star {output.star} --out-mrcs {output.mrcs} --out-preview {output.preview} > {log} 2>&1"


rule classify_train:
    input:
        star=rules.homologue_images.output.star,
        mrcs=rules.homologue_images.output.mrcs,
        truth=rules.homologue_signal.output.truth,
        classes=rules.homologues.output.classes,
    output:
        model=res("classification/snr{snr}/{architecture}/model.pt"),
        history=res("classification/snr{snr}/{architecture}/history.csv"),
        curve=report(
            res("classification/snr{snr}/{architecture}/learning_curve.png"),
            caption="../report/classify_train.rst",
            category="Classification",
            subcategory="SNR {snr}",
        ),
    log:
        res("logs/classify_train/snr{snr}/{architecture}.log"),
    benchmark:
        res("benchmarks/classify_train/snr{snr}/{architecture}.tsv")
    wildcard_constraints:
        snr=r"[0-9.eE+-]+",
        architecture="cnn2|resnet18|resnet50|resnet18_pose",
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    params:
        cfg=stage_params("classify_train"),
    shell:
        "python -m cryopipe classify-train --params {params.cfg:q} --architecture {wildcards.architecture}"
        " --star {input.star} --truth {input.truth} --snr {wildcards.snr} --classes {input.classes}"
        " --out-model {output.model}"
        " --out-history {output.history} --out-curve {output.curve} > {log} 2>&1"


rule classify_evaluate:
    input:
        star=rules.homologue_images.output.star,
        mrcs=rules.homologue_images.output.mrcs,
        truth=rules.homologue_signal.output.truth,
        classes=rules.homologues.output.classes,
        models=lambda wc: expand(
            res("classification/snr{snr}/{architecture}/model.pt"),
            snr=wc.snr,
            architecture=classification_networks(),
        ),
    output:
        predictions=res("classification/snr{snr}/predictions.csv"),
        accuracy=res("classification/snr{snr}/accuracy.csv"),
        confusion=report(
            res("classification/snr{snr}/confusion.png"),
            caption="../report/classify_confusion.rst",
            category="Classification",
            subcategory="SNR {snr}",
        ),
        gradcam=report(
            res("classification/snr{snr}/gradcam.png"),
            caption="../report/classify_gradcam.rst",
            category="Classification",
            subcategory="SNR {snr}",
        ),
    log:
        res("logs/classify_evaluate/snr{snr}.log"),
    benchmark:
        res("benchmarks/classify_evaluate/snr{snr}.tsv")
    wildcard_constraints:
        snr=r"[0-9.eE+-]+",
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        cfg=stage_params("classify_evaluate"),
    shell:
        "python -m cryopipe classify-evaluate --params {params.cfg:q} --snr {wildcards.snr}"
        " --star {input.star} --truth {input.truth} --classes {input.classes} --models {input.models}"
        " --out-predictions {output.predictions} --out-accuracy {output.accuracy}"
        " --out-confusion {output.confusion} --out-gradcam {output.gradcam} > {log} 2>&1"


rule classify_summary:
    input:
        accuracy=expand(res("classification/snr{snr}/accuracy.csv"), snr=classification_snrs()),
    output:
        table=res("classification/summary.csv"),
        markdown=res("classification/summary.md"),
        plot=report(
            res("classification/accuracy_vs_snr.png"),
            caption="../report/classify_summary.rst",
            category="Classification",
        ),
    log:
        res("logs/classify_summary.log"),
    benchmark:
        res("benchmarks/classify_summary.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        classes=len(config["classification"]["classes"]["arrangements"]),
    shell:
        "python -m cryopipe classify-summary --accuracy {input.accuracy} --classes {params.classes}"
        " --out-table {output.table} --out-markdown {output.markdown} --out-plot {output.plot} > {log} 2>&1"


rule classification:
    input:
        rules.homologues.output.table,
        rules.classify_summary.output,
        expand(res("classification/snr{snr}/gradcam.png"), snr=classification_snrs()),
