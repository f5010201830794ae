"""`mmgr serve RUN|BUNDLE`: the HTTP recommender of a trained run or an exported bundle (see `mmgr.serving.app`);
`mmgr export RUN --out BUNDLE`: a trained run's serving parts as a checked bundle (see `mmgr.serving.bundle`)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmgr.cli.common import console


def serve(
    run: Path = typer.Argument(..., help="Run directory with a trained model, or a bundle from `mmgr export`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="TCP port."),
    batching: bool = typer.Option(True, help="Decode concurrent requests together (dynamic micro-batching)."),
    max_batch: int = typer.Option(32, min=1, help="Most requests decoded together."),
    max_wait_ms: float = typer.Option(5.0, min=0.0, help="Longest a request waits for others to join its batch."),
    workers: int = typer.Option(1, min=1, max=64, help="Batches decoded at once, each in its own thread (the "
                                "torch threads are shared out between them)."),
    processes: int = typer.Option(1, min=1, max=64, help="Server processes on the port, each with its own model, "
                                  "batcher and workers (no lock shared between them; onboarded items reach every "
                                  "process through the run's store; /metrics sums the processes)."),
    max_k: int = typer.Option(100, min=1, help="Largest k a request may ask for."),
    max_history: int = typer.Option(1000, min=1, help="Longest history a request may send."),
    onboarding: bool = typer.Option(True, help="Accept new items (POST /items), kept in RUN/serving/."),
    allow_no_auth: bool = typer.Option(False, "--allow-no-auth", help="Serve a --host other than loopback "
                                       "without MMGR_API_KEY (anyone who reaches it may query and onboard)."),
) -> None:
    """Serve recommendations over HTTP: POST /recommend, POST /items (onboard), GET /items/{id}, /health, /metrics
    (set MMGR_API_KEY to require an x-api-key header; needed for a --host other than loopback)."""
    import uvicorn

    from mmgr.serving.app import API_KEY_ENV, api_key_from_env, check_exposure
    from mmgr.serving.onboarding import IMAGES
    from mmgr.serving.processes import ServerSettings, app_of, share_threads, shared_metrics

    api_key = api_key_from_env()
    check_exposure(host, api_key, allow_no_auth)
    settings = ServerSettings(str(run), max_k, max_history, onboarding, batching, max_batch, max_wait_ms, workers,
                              processes)
    recommender, app = app_of(settings)      # in this process: checks the run, sweeps orphans once, serves alone
    if onboarding:
        swept = recommender.sweep_images()
        console.print(f"onboarding on: removed {swept} orphan image{'s' * (swept != 1)} from {IMAGES.as_posix()}")
    threads = share_threads(workers * processes)
    console.print(f"serving {run} on http://{host}:{port} ({len(recommender.item_ids)} items; {processes} "
                  f"process{'es' * (processes != 1)} x {workers} decoding worker{'s' * (workers != 1)} x {threads} "
                  f"torch thread{'s' * (threads != 1)})")
    console.print("auth on: x-api-key required on every endpoint but /health" if api_key else
                  f"auth off: {API_KEY_ENV} is not set")
    if processes == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:
        del recommender, app
        settings.export()
        with shared_metrics():
            uvicorn.run("mmgr.serving.processes:app_from_environment", factory=True, workers=processes, host=host,
                        port=port, log_level="warning")


def export(
    run: Path = typer.Argument(..., help="Run directory with a trained model."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for the bundle."),
) -> None:
    """Write a trained run's serving parts (catalog, histories, weights, vocabulary, codes, tokenizers, tries) as a
    bundle that `mmgr serve` and `mmgr.serving.bundle.load_bundle` load after checking every part."""
    from mmgr.serving.bundle import export_bundle

    description = export_bundle(run, out)
    console.print(f"[green]wrote[/green] bundle {out}: {len(description['parts'])} parts, {description['items']} "
                  f"items, format version {description['format_version']}")
