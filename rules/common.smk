# Helpers shared by the rule files. Nothing here runs a job.

import copy

RESULTS = "results"


def pick(*keys, omit=()):
    """The named parts of the validated config as one nested dict: the `config` argument of a rule's
    run_<rule> function, passed as params so that a change of these keys (and only these) reruns the rule.
    A key is a top-level section ("simulate") or a dotted path into one ("autoencoder.evaluate");
    `omit` lists dotted paths to leave out of what `keys` selected."""
    out = {}
    for key in keys:
        node, dst = config, out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
            dst = dst.setdefault(part, {})
        dst[parts[-1]] = copy.deepcopy(node[parts[-1]])
    for key in omit:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node[part]
        del node[last]
    return out


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


def own_input(key, section=None):
    """The input file named by config `section.key` (data.path for source file); None fails at DAG load."""
    value = config["data"][key] if section is None else config[section][key]
    if value is None:
        name = f"data.{key}" if section is None else f"{section}.{key}"
        raise ValueError(f"data.source '{config['data']['source']}' needs config key '{name}' (a file path)")
    return value


def has_floors():
    """Whether simulation_floors runs (the simulated data set, stamps not re-convolved by preprocess)."""
    return mode_is("images") and source_is("simulate") and config["preprocess"]["target_psf"] is None


def floors_input(wildcards):
    """Optional input of evaluate_autoencoder (the oracle chi2 floors of the simulated test split)."""
    return {"floors": f"{RESULTS}/data/test_floors.json"} if has_floors() else {}


def train_gpus():
    """GPUs a training job requests (resource `gpu` -> sbatch --gpus): config cluster.gpu_training."""
    return 1 if config["cluster"]["gpu_training"] else 0


# Inputs of rules sample / sample_split (rules/sampling.smk): the split's galaxies, and the models of
# the method (parametric: none; on COSMOS data the training-sample tarball, rules/realdata.smk).
def _sample_inputs(data):
    def inputs(wildcards):
        if wildcards.method == "parametric":
            return {"test": data, **({"cosmos": ancient(COSMOS_TARBALL)} if source_is("cosmos") else {})}
        out = {"test": data, "autoencoder": f"{RESULTS}/autoencoder/model.pt"}
        if wildcards.method == "flow":
            out["flow"] = f"{RESULTS}/flow/model.pt"
        return out

    return inputs


def metrics_models():
    """The generated sets the metrics compare: metrics.models, less `parametric` where the data source has
    no profile parameters (morphoflow.parametric; the metrics then mark it unavailable)."""
    return [m for m in config["metrics"]["models"] if m != "parametric" or source_is("simulate") or source_is("cosmos")]


# Inputs of the metrics job, see rules/metrics.smk. The test split, the samples (test and train
# counterparts), and every stage's summary.
def _metrics_inputs(wildcards):
    return {
        "test": f"{RESULTS}/data/test.h5",
        **{f"samples_{m}": f"{RESULTS}/samples/{m}.h5" for m in metrics_models()},
        **{f"train_samples_{m}": f"{RESULTS}/samples/{m}_train.h5" for m in metrics_models()},
        "autoencoder": f"{RESULTS}/autoencoder/model.pt",
        "train": f"{RESULTS}/data/train.h5",
        "val": f"{RESULTS}/data/val.h5",
        "cleaning": f"{RESULTS}/data/cleaning.json",
        "latents": f"{RESULTS}/latents/test.h5",
        "ae_metrics": f"{RESULTS}/autoencoder/test_metrics.json",
        "ae_history": f"{RESULTS}/autoencoder/history.csv",
        "flow_metrics": f"{RESULTS}/flow/test_metrics.json",
        "flow_history": f"{RESULTS}/flow/history.csv",
        "draws": f"{RESULTS}/samples/draws_spread.json",
    }
