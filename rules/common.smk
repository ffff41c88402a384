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


def has_floors():
    """Whether simulation_floors runs (the simulated data set, stamps not re-convolved by preprocess)."""
    return mode_is("images") and source_is("simulate") and config["preprocess"]["target_psf"] is None


def floors_input(wildcards):
    """Optional input of evaluate_autoencoder (the oracle chi2 floors of the simulated test split)."""
    return {"floors": f"{RESULTS}/data/test_floors.json"} if has_floors() else {}


def train_gpus():
    """GPUs a training job requests (resource `gpu` -> sbatch --gpus): config cluster.gpu_training."""
    return 1 if config["cluster"]["gpu_training"] else 0


# Inputs of rule `metrics` (rules/metrics.smk).
def _stage_exists(stage):
    """Whether rules/<stage>.smk exists (a stage that is not written yet is absent)."""
    return (Path(workflow.basedir) / "rules" / f"{stage}.smk").exists()


def _metrics_inputs(wildcards):
    """Required: the test split and the samples; the other stages' summaries when their rule file exists."""
    inputs = {
        "test": f"{RESULTS}/data/test.h5",
        **{f"samples_{m}": f"{RESULTS}/samples/{m}.h5" for m in config["metrics"]["models"]},
    }
    if _stage_exists("data"):
        inputs.update(
            train=f"{RESULTS}/data/train.h5",
            val=f"{RESULTS}/data/val.h5",
            cleaning=f"{RESULTS}/data/cleaning.json",
        )
    if _stage_exists("autoencoder"):
        inputs.update(
            latents=f"{RESULTS}/latents/test.h5",
            ae_metrics=f"{RESULTS}/autoencoder/test_metrics.json",
            ae_history=f"{RESULTS}/autoencoder/history.csv",
        )
    if _stage_exists("flow"):
        inputs.update(
            flow_metrics=f"{RESULTS}/flow/test_metrics.json",
            flow_history=f"{RESULTS}/flow/history.csv",
        )
    return inputs
