"""The `--ray` option and the cluster-wide progress bar (the rendering itself is in cluster.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

RayAddress = Annotated[str | None, typer.Option(
    "--ray", show_default=False,
    help="Render on Ray: local (start it on this machine), auto (the running cluster) or HOST:PORT; needs higgs-cli[ray].")]


def ray_settings(address: str | None, base: Any = None) -> Any:
    """RaySettings from --ray (over a project file's `ray:`), checked before anything renders; None without Ray."""
    if address is None and base is None:
        return None
    from dataclasses import replace

    from .cluster import check
    from .options import RaySettings

    settings = replace(base or RaySettings(), **({"address": address} if address else {}))
    check(settings)
    return settings


def cluster_bar(console: Any, quiet: bool) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """(update, stop) for one bar across the cluster: chunks done/total, elapsed, ETA, each worker's rate."""
    if quiet:
        return (lambda p: None), (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                   TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), TextColumn("[dim]{task.fields[rates]}"),
                   console=console, transient=False)
    task: list[Any] = []

    def update(p: Any) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(f"ray, {len(p.workers)} worker{'' if len(p.workers) == 1 else 's'}", total=p.total, eta="", rates=""))
        eta = "ETA -" if p.eta is None else f"ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}"
        rates = " ".join(f"{w.name} {w.rate:.2f}/s" for w in p.workers) + (f" ({p.restarts} re-sent)" if p.restarts else "")
        bar.update(task[0], total=p.total, completed=p.done, eta=eta, rates=rates)

    def stop() -> None:
        if task and bar.live.is_started:
            bar.stop()

    return update, stop


def render_on_ray(plan: Any, output: Any, settings: Any, cache: Any, console: Any, quiet: bool, subtitles: Any, stems: Any,
                  retake_chunks: frozenset[int] = frozenset()) -> dict[str, Any]:
    """cluster.render with the cluster bar on stderr."""
    from .cluster import render

    update, stop = cluster_bar(console, quiet)
    try:
        return render(plan, output, settings, cache, update, subtitles=subtitles, stems=stems, retake_chunks=retake_chunks)
    finally:
        stop()
