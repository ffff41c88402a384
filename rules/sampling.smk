# Stage 2 sampling (issue 4): one generated counterpart per test galaxy, at its conditions.
# results/samples/flow.h5: latents from the flow; results/samples/gaussian.h5: the baseline
# z ~ N(0, I) in the decoder's latent space. Both decoded, PSF-convolved and given noise from
# the test galaxy's noise model; data-contract layout plus a dataset 'z' of the latents.


rule sample:
    input:
        test=f"{RESULTS}/data/test.h5",
        autoencoder=f"{RESULTS}/autoencoder/model.pt",
        flow=branch(lambda wc: wc.method == "flow", then=f"{RESULTS}/flow/model.pt"),
    output:
        samples=f"{RESULTS}/samples/{{method}}.h5",
    log:
        log_path("sample_{method}"),
    benchmark:
        bench_path("sample_{method}")
    wildcard_constraints:
        method="|".join(config["sample"]["methods"]),
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime_min(30),
    params:
        config=pick("sample", "seed", "flow.out_of_range"),
    script:
        "../workflow/scripts/sample.py"


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
        config=pick("sample", "seed"),
    script:
        "../workflow/scripts/plot_draws.py"
