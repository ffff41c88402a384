# Stage 2 sampling (issue 4): one generated counterpart per test galaxy, at its conditions.
# results/samples/flow.h5: latents from the flow; results/samples/gaussian.h5: the baseline
# z ~ N(0, I) in the decoder's latent space. Both decoded, PSF-convolved and given noise from
# the test galaxy's noise model; data-contract layout plus a dataset 'z' of the latents.
# results/samples/parametric.h5 (issue 13): the smooth GalSim profile of each galaxy at its catalog
# parameters (morphoflow.parametric; simulated data set and COSMOS). results/samples/<method>_train.h5:
# the same for the train split (rule sample_split; the powered C2ST of the metrics trains on them).

SAMPLE_METHODS = [*config["sample"]["methods"], "parametric"]


rule sample:
    input:
        unpack(_sample_inputs(f"{RESULTS}/data/test.h5")),
    output:
        samples=f"{RESULTS}/samples/{{method}}.h5",
    log:
        log_path("sample_{method}"),
    benchmark:
        bench_path("sample_{method}")
    wildcard_constraints:
        method="|".join(SAMPLE_METHODS),
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(30),
    params:
        config=pick(
            "sample",
            "seed",
            "flow.out_of_range",
            "data.source",
            "simulate",
            "preprocess.target_psf",
            "cosmos",
            "download.sample",
            omit=["sample.draws"],
        ),
    script:
        "../workflow/scripts/sample.py"


use rule sample as sample_split with:
    input:
        unpack(_sample_inputs(f"{RESULTS}/data/{{split}}.h5")),
    output:
        samples=f"{RESULTS}/samples/{{method}}_{{split}}.h5",
    log:
        log_path("sample_{method}_{split}"),
    benchmark:
        bench_path("sample_{method}_{split}")
    wildcard_constraints:
        method="|".join(SAMPLE_METHODS),
        split="train",


rule plot_draws:
    input:
        test=f"{RESULTS}/data/test.h5",
        autoencoder=f"{RESULTS}/autoencoder/model.pt",
        flow=f"{RESULTS}/flow/model.pt",
    output:
        plot=report(f"{RESULTS}/plots/draws.png", caption="../report/draws.rst", category="Generated galaxies"),
        spread=f"{RESULTS}/samples/draws_spread.json",
    log:
        log_path("plot_draws"),
    benchmark:
        bench_path("plot_draws")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(10),
    params:
        config=pick("sample.draws", "seed"),
    script:
        "../workflow/scripts/plot_draws.py"
