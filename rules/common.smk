# Helpers shared by the rule files. Nothing here runs a job.

from pathlib import Path

RESULTS = "results"

# Stage rule files in DAG order; the last one present decides `rule all`'s target.
# In particles mode the image stages (flow, sampling, metrics, report) give way to rules/particles.smk.
if config["mode"] == "particles":
    STAGES = ["data", "realdata", "autoencoder", "particles"]
else:
    STAGES = ["data", "realdata", "autoencoder", "flow", "sampling", "metrics", "report"]

_STAGE_TARGETS = [
    ("particles", f"{RESULTS}/metrics.json"),
    ("metrics", f"{RESULTS}/metrics.json"),
    ("sampling", f"{RESULTS}/samples/flow.h5"),
    ("flow", f"{RESULTS}/flow/model.pt"),
    ("autoencoder", f"{RESULTS}/latents/test.h5"),
    ("data", f"{RESULTS}/data/train.h5"),
]


def final_target():
    """The final output of the furthest stage whose rule file exists."""
    for stage, target in _STAGE_TARGETS:
        if stage in STAGES and (Path(workflow.basedir) / "rules" / f"{stage}.smk").exists():
            return target
    raise ValueError("no stage rule file found under rules/")


def log_path(rule_name):
    return f"logs/{rule_name}.log"


def bench_path(rule_name):
    return f"benchmarks/{rule_name}.tsv"


SPLITS = ["train", "val", "test"]


# Resources grow with Snakemake's `attempt`, so `--retries N` reruns a failed job with more
# memory and time (SLURM out-of-memory or time-limit kills).
def mem_mb(base_mb):
    return lambda wildcards, attempt: int(base_mb * (1 + 0.5 * (attempt - 1)))


def runtime_min(base_min):
    return lambda wildcards, attempt: int(base_min * attempt)


def mode_is(name):
    return config["mode"] == name


def source_is(name):
    return config["data"]["source"] == name


def train_gpus():
    """GPUs a training job requests (resource `gpu` -> sbatch --gpus): config cluster.gpu_training."""
    return 1 if config["cluster"]["gpu_training"] else 0
