# Stage 2 (issue 4): the conditional normalizing flow on the autoencoder's latents.
# train_flow: latents (train, val) -> results/flow/model.pt (+ history.csv); training checkpoints
# live under results/flow/checkpoints/ (resume after SIGTERM/pre-emption), they are not outputs.
# evaluate_flow: test NLL (nats per latent dimension, standardised latents) -> test_metrics.json.


rule train_flow:
    input:
        train=f"{RESULTS}/latents/train.h5",
        val=f"{RESULTS}/latents/val.h5",
    output:
        model=f"{RESULTS}/flow/model.pt",
        history=f"{RESULTS}/flow/history.csv",
    log:
        log_path("train_flow"),
    benchmark:
        bench_path("train_flow")
    conda:
        "../envs/morphoflow.yaml"
    threads: 2
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime_min(60),
        gpu=train_gpus(),
    params:
        config=pick("flow", "seed"),
        checkpoints=f"{RESULTS}/flow/checkpoints",
    script:
        "../workflow/scripts/train_flow.py"


rule evaluate_flow:
    input:
        model=f"{RESULTS}/flow/model.pt",
        test=f"{RESULTS}/latents/test.h5",
    output:
        metrics=f"{RESULTS}/flow/test_metrics.json",
    log:
        log_path("evaluate_flow"),
    benchmark:
        bench_path("evaluate_flow")
    conda:
        "../envs/morphoflow.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
        runtime=runtime_min(10),
    script:
        "../workflow/scripts/evaluate_flow.py"
