rule reference:
    input:
        # an EM map as the reference (reference.map): a new map re-runs the conversion
        em_map=lambda wc: config["reference"]["map"] or [],
    output:
        atoms=res("reference/atoms.npz"),
        pdb=res("reference/reference.pdb"),
        map=res("reference/map.mrc"),
    log:
        res("logs/reference.log"),
    benchmark:
        res("benchmarks/reference.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=stage_params("reference"),
    shell:
        "python -m cryopipe reference --params {params.cfg:q}"
        " --out-atoms {output.atoms} --out-pdb {output.pdb} --out-map {output.map} > {log} 2>&1"


rule modes:
    input:
        pdb=rules.reference.output.pdb,
    output:
        modes=res("modes/modes.npz"),
        nmd=res("modes/modes.nmd"),
    log:
        res("logs/modes.log"),
    benchmark:
        res("benchmarks/modes.tsv")
    conda:
        "../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        cfg=stage_params("modes"),
    shell:
        "python -m cryopipe modes --params {params.cfg:q}"
        " --pdb {input.pdb} --out-modes {output.modes} --out-nmd {output.nmd} > {log} 2>&1"
