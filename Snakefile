# morphoflow: download -> preprocess -> autoencoder -> latents -> conditional flow -> samples -> metrics.
# Run: snakemake --cores all results/metrics.json      (see README.md)

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Fill the defaults of every section (snakemake fills them at the top level only), then check.
# The schemas ship with the package (morphoflow/schemas/).
from morphoflow.config import DEFAULT_SCHEMA, fill_defaults

fill_defaults(config, DEFAULT_SCHEMA)
validate(config, str(DEFAULT_SCHEMA))


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/realdata.smk"
include: "rules/owndata.smk"
include: "rules/autoencoder.smk"


if config["mode"] == "particles":

    include: "rules/particles.smk"

else:

    include: "rules/flow.smk"
    include: "rules/sampling.smk"
    include: "rules/metrics.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/metrics.json",
