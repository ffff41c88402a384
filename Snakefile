# morphoflow: download -> preprocess -> autoencoder -> latents -> conditional flow -> samples -> metrics.
# Run: snakemake --cores all results/metrics.json      (see README.md)

from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Fill the defaults of every section (snakemake fills them at the top level only), then check.
from morphoflow.config import fill_defaults

fill_defaults(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
validate(config, "workflow/schemas/config.schema.yaml")


include: "rules/common.smk"


# One rule file per stage; a stage that is not written yet is simply absent.
for _stage in STAGES:
    if (Path(workflow.basedir) / "rules" / f"{_stage}.smk").exists():

        include: f"rules/{_stage}.smk"


rule all:
    default_target: True
    input:
        final_target(),
