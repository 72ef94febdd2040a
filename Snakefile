# cryopipe: continuous conformational heterogeneity in cryo-EM images (DeepHEMNMA and beyond).
# Thin on purpose: config validation and helpers live in rules/common.smk, the science in the
# `cryopipe` package that every rule calls as `python -m cryopipe <command>`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.+-]+",
    group=r"\d+",


include: "rules/reference.smk"
include: "rules/simulate.smk"
include: "rules/preprocess.smk"
include: "rules/align.smk"
include: "rules/network.smk"
include: "rules/analysis.smk"
include: "rules/improve.smk"
include: "rules/classification.smk"
include: "rules/vae.smk"


rule all:
    default_target: True
    input:
        all_targets(),
