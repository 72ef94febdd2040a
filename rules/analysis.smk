# DeepHEMNMA stage 3: conformational space (PCA/UMAP), groups, per-group half maps, FSC,
# trajectories along the principal axes, and the benchmark tables across the grid.


rule reduce:
    input:
        unpack(pooled_alignment),
        unpack(set2_estimates),
        truth=truth_table,
    output:
        space=res("analysis/{dataset}/space.csv"),
        pca=res("analysis/{dataset}/pca.json"),
        plot=report(
            res("analysis/{dataset}/space.png"),
            caption="../report/space.rst",
            category="Conformational space",
            subcategory="{dataset}",
        ),
    log:
        res("logs/reduce/{dataset}.log"),
    benchmark:
        res("benchmarks/reduce/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cfg=stage_params("reduce"),
        source="network",
        extra=lambda wc, input: " ".join(
            f"--{k.replace('_', '-')} {input[k]}"
            for k in ("align_star", "align_amplitudes", "truth")
            if k in input.keys() and input[k]
        ),
    shell:
        "NUMBA_NUM_THREADS={threads} python -m cryopipe reduce --params {params.cfg:q} --infer-star {input.star}"
        " --infer-amplitudes {input.amplitudes} --infer-source {params.source} {params.extra} --out-space {output.space} --out-pca {output.pca}"
        " --out-plot {output.plot} > {log} 2>&1"


rule cluster:
    input:
        space=rules.reduce.output.space,
        raw=raw_star,
    output:
        table=res("analysis/{dataset}/groups.csv"),
        stars=expand(res("analysis/{{dataset}}/groups/group{group}.star"), group=GROUPS),
        coordinates=res("analysis/{dataset}/coordinates.csv"),
        plot=report(
            res("analysis/{dataset}/groups.png"),
            caption="../report/groups.rst",
            category="Conformational space",
            subcategory="{dataset}",
        ),
    log:
        res("logs/cluster/{dataset}.log"),
    benchmark:
        res("benchmarks/cluster/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        cfg=stage_params("cluster"),
    shell:
        "python -m cryopipe cluster --params {params.cfg:q} --space {input.space}"
        " --raw-star {input.raw} --out-table {output.table} --out-groups {output.stars} --out-plot {output.plot}"
        " --out-coordinates {output.coordinates} > {log} 2>&1"


rule backproject:
    input:
        star=res("analysis/{dataset}/groups/group{group}.star"),
    output:
        half1=res("analysis/{dataset}/maps/group{group}_half1.mrc"),
        half2=res("analysis/{dataset}/maps/group{group}_half2.mrc"),
        map=res("analysis/{dataset}/maps/group{group}.mrc"),
    log:
        res("logs/backproject/{dataset}/group{group}.log"),
    benchmark:
        res("benchmarks/backproject/{dataset}/group{group}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=backproject_mem_mb,
        runtime=60,
    params:
        cfg=stage_params("backproject"),
    shell:
        "python -m cryopipe backproject --params {params.cfg:q} --star {input.star} --out-half1 {output.half1}"
        " --out-half2 {output.half2} --out-map {output.map} > {log} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_improved),
        table=rules.cluster.output.table,
        half1=expand(res("analysis/{{dataset}}/maps/group{group}_half1.mrc"), group=GROUPS),
        half2=expand(res("analysis/{{dataset}}/maps/group{group}_half2.mrc"), group=GROUPS),
        maps=expand(res("analysis/{{dataset}}/maps/group{group}.mrc"), group=GROUPS),
        atoms=rules.reference.output.atoms,
        modes=rules.modes.output.modes,
        truth=truth_table,
    output:
        fsc=res("analysis/{dataset}/fsc.csv"),
        resolutions=report(
            res("analysis/{dataset}/resolutions.csv"),
            caption="../report/resolutions.rst",
            category="Maps",
            subcategory="{dataset}",
        ),
        plot=report(
            res("analysis/{dataset}/fsc.png"), caption="../report/fsc.rst", category="Maps", subcategory="{dataset}"
        ),
    log:
        res("logs/evaluate/{dataset}.log"),
    benchmark:
        res("benchmarks/evaluate/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=stage_params("evaluate"),
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
        improved=lambda wc, input: (
            f"--improved {' '.join(input.improved)} --improved-kinds {' '.join(improved_kinds())}"
            f" --improved-info {' '.join(input.improved_info)}"
            if "improved" in input.keys() and input.improved
            else ""
        ),
    shell:
        "python -m cryopipe evaluate --params {params.cfg:q} --groups-table {input.table}"
        " --half1 {input.half1} --half2 {input.half2} --maps {input.maps} --atoms {input.atoms} --modes {input.modes}"
        " {params.truth} {params.improved} --out-fsc {output.fsc} --out-resolutions {output.resolutions} --out-plot {output.plot} > {log} 2>&1"


rule trajectory:
    input:
        pca=rules.reduce.output.pca,
        pdb=rules.reference.output.pdb,
        modes=rules.modes.output.modes,
    output:
        pdbs=expand(res("analysis/{{dataset}}/trajectory_pc{pc}.pdb"), pc=TRAJECTORY_PCS),
    log:
        res("logs/trajectory/{dataset}.log"),
    benchmark:
        res("benchmarks/trajectory/{dataset}.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("trajectory"),
    shell:
        "python -m cryopipe trajectory --params {params.cfg:q} --pca {input.pca} --reference-pdb {input.pdb}"
        " --modes {input.modes} --out-pdbs {output.pdbs} > {log} 2>&1"


rule benchmark_tables:
    input:
        benchmark_inputs,
    output:
        parameters=report(res("benchmark/parameters.csv"), caption="../report/benchmark.rst", category="Benchmark"),
        groups=report(res("benchmark/groups.csv"), caption="../report/benchmark.rst", category="Benchmark"),
        summary=report(res("benchmark/summary.csv"), caption="../report/benchmark.rst", category="Benchmark"),
        path=report(res("benchmark/path.csv"), caption="../report/benchmark.rst", category="Benchmark"),
        markdown=multiext(res("benchmark/"), "parameters.md", "groups.md", "summary.md", "path.md"),
        plot=report(res("benchmark/summary.png"), caption="../report/benchmark.rst", category="Benchmark"),
    log:
        res("logs/benchmark_tables.log"),
    benchmark:
        res("benchmarks/benchmark_tables.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=stage_params("tables"),
    shell:
        "python -m cryopipe tables --params {params.cfg:q} --out-parameters {output.parameters}"
        " --out-groups {output.groups} --out-summary {output.summary} --out-path {output.path} --out-plot {output.plot} > {log} 2>&1"
