# The cryoDRGN-style VAE beside DeepHEMNMA: `snakemake vae`. Not part of the default target.
# Preprocessed particles at given poses → VAE (GPU rule) → z per particle, which goes through the same
# reduce / cluster / backproject / evaluate stages as DeepHEMNMA's amplitudes (the `use rule` copies below
# change only paths) → maps decoded at the groups' centres and along PC1 of z → a side-by-side summary.


rule vae_train:
    input:
        star=res("preprocess/{dataset}/particles.star"),
        mrcs=res("preprocess/{dataset}/particles.mrcs"),
        poses=vae_pose_files,
    output:
        model=res("vae/{dataset}/model.pt"),
        history=res("vae/{dataset}/history.csv"),
        latent=res("vae/{dataset}/latent.csv"),
        star=res("vae/{dataset}/particles.star"),
        curve=report(
            res("vae/{dataset}/learning_curve.png"),
            caption="../report/vae_train.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
    log:
        res("logs/vae_train/{dataset}.log"),
    benchmark:
        res("benchmarks/vae_train/{dataset}.tsv")
    conda:
        "../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        cfg=stage_params("vae_train"),
    shell:
        "python -m cryopipe vae-train --params {params.cfg:q} --star {input.star} --poses {input.poses}"
        " --out-model {output.model} --out-history {output.history} --out-curve {output.curve}"
        " --out-latent {output.latent} --out-star {output.star} > {log} 2>&1"


use rule reduce as vae_reduce with:
    input:
        star=rules.vae_train.output.star,
        amplitudes=rules.vae_train.output.latent,
        truth=truth_table,
    output:
        space=res("vae/{dataset}/analysis/space.csv"),
        pca=res("vae/{dataset}/analysis/pca.json"),
        plot=report(
            res("vae/{dataset}/analysis/space.png"),
            caption="../report/space.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
    log:
        res("logs/vae_reduce/{dataset}.log"),
    benchmark:
        res("benchmarks/vae_reduce/{dataset}.tsv")
    params:
        cfg=stage_params("reduce", pool_alignment=False),
        source="vae",
        extra=lambda wc, input: f"--truth {input.truth}" if input.truth else "",


use rule cluster as vae_cluster with:
    input:
        space=rules.vae_reduce.output.space,
        raw=raw_star,
    output:
        table=res("vae/{dataset}/analysis/groups.csv"),
        stars=expand(res("vae/{{dataset}}/analysis/groups/group{group}.star"), group=GROUPS),
        coordinates=res("vae/{dataset}/analysis/coordinates.csv"),
        plot=report(
            res("vae/{dataset}/analysis/groups.png"),
            caption="../report/groups.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
    log:
        res("logs/vae_cluster/{dataset}.log"),
    benchmark:
        res("benchmarks/vae_cluster/{dataset}.tsv")


use rule backproject as vae_backproject with:
    input:
        star=res("vae/{dataset}/analysis/groups/group{group}.star"),
    output:
        half1=res("vae/{dataset}/analysis/maps/group{group}_half1.mrc"),
        half2=res("vae/{dataset}/analysis/maps/group{group}_half2.mrc"),
        map=res("vae/{dataset}/analysis/maps/group{group}.mrc"),
    log:
        res("logs/vae_backproject/{dataset}/group{group}.log"),
    benchmark:
        res("benchmarks/vae_backproject/{dataset}/group{group}.tsv")


use rule evaluate as vae_evaluate with:
    input:
        table=rules.vae_cluster.output.table,
        half1=expand(res("vae/{{dataset}}/analysis/maps/group{group}_half1.mrc"), group=GROUPS),
        half2=expand(res("vae/{{dataset}}/analysis/maps/group{group}_half2.mrc"), group=GROUPS),
        maps=expand(res("vae/{{dataset}}/analysis/maps/group{group}.mrc"), group=GROUPS),
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        truth=truth_table,
    output:
        fsc=res("vae/{dataset}/analysis/fsc.csv"),
        resolutions=report(
            res("vae/{dataset}/analysis/resolutions.csv"),
            caption="../report/resolutions.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
        plot=report(
            res("vae/{dataset}/analysis/fsc.png"),
            caption="../report/fsc.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
    log:
        res("logs/vae_evaluate/{dataset}.log"),
    benchmark:
        res("benchmarks/vae_evaluate/{dataset}.tsv")


rule vae_volumes:
    input:
        model=rules.vae_train.output.model,
        latent=rules.vae_train.output.latent,
        table=rules.vae_cluster.output.table,
        pca=rules.vae_reduce.output.pca,
    output:
        groups=expand(res("vae/{{dataset}}/volumes/group{group}.mrc"), group=GROUPS),
        pc1=expand(res("vae/{{dataset}}/volumes/pc1_frame{frame}.mrc"), frame=VAE_PC1_FRAMES),
        plot=report(
            res("vae/{dataset}/volumes/volumes.png"),
            caption="../report/vae_volumes.rst",
            category="VAE",
            subcategory="{dataset}",
        ),
    log:
        res("logs/vae_volumes/{dataset}.log"),
    benchmark:
        res("benchmarks/vae_volumes/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        cfg=stage_params("vae_volumes"),
    shell:
        "python -m cryopipe vae-volumes --params {params.cfg:q} --model {input.model} --latent {input.latent}"
        " --groups-table {input.table} --pca {input.pca} --out-groups {output.groups} --out-pc1 {output.pc1}"
        " --out-plot {output.plot} > {log} 2>&1"


rule vae_summary:
    input:
        truth=expand(res("simulate/{dataset}/truth.csv"), dataset=datasets()),
        deephemnma_space=expand(res("analysis/{dataset}/space.csv"), dataset=datasets()),
        deephemnma_resolutions=expand(res("analysis/{dataset}/resolutions.csv"), dataset=datasets()),
        vae_space=expand(res("vae/{dataset}/analysis/space.csv"), dataset=datasets()),
        vae_resolutions=expand(res("vae/{dataset}/analysis/resolutions.csv"), dataset=datasets()),
        vae_history=expand(res("vae/{dataset}/history.csv"), dataset=datasets()),
    output:
        table=report(res("vae/summary.csv"), caption="../report/vae_summary.rst", category="VAE"),
        markdown=res("vae/summary.md"),
        plot=report(res("vae/summary.png"), caption="../report/vae_summary.rst", category="VAE"),
    log:
        res("logs/vae_summary.log"),
    benchmark:
        res("benchmarks/vae_summary.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("vae_summary"),
        datasets=datasets(),
    shell:
        "python -m cryopipe vae-summary --params {params.cfg:q} --datasets {params.datasets} --truth {input.truth}"
        " --deephemnma-space {input.deephemnma_space} --deephemnma-resolutions {input.deephemnma_resolutions}"
        " --vae-space {input.vae_space} --vae-resolutions {input.vae_resolutions} --vae-history {input.vae_history}"
        " --out-table {output.table} --out-markdown {output.markdown} --out-plot {output.plot} > {log} 2>&1"


rule vae:
    input:
        vae_targets(),
