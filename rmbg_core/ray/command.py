"""``rmbg remove INPUT... -o OUTPUT --engine ray``: the local job (same planning, outputs, resume, summary and
exit codes) with the images processed by a Ray Data job; INPUT and OUTPUT may also be URIs."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import ray

from ..cli.inputs import find_images
from ..cli.jobs import LOCAL_FILES, Plan, Summary, plan_found
from ..cli.arguments import STDIN, UsageError
from ..cli.remove import check_output_folder, finish_job, output_folder, report_plan
from ..cli.report import Reporter
from ..formats import OutputFormat
from ..model.model import load_model
from .job import Cluster, connect, run_on_ray
from .storage import RemoteStore, find_uri_images, is_uri


def run_remove_on_ray(args: argparse.Namespace, output_format: OutputFormat, edges: dict[str, Any]) -> int:
    """Plan on the driver, run on the cluster, report as the local engine does; returns the exit code."""
    if STDIN in args.inputs:
        raise UsageError("'-' (stdin) works with the local engine only; drop --engine ray")
    cluster = Cluster(address=args.address, num_workers=args.num_workers,
                      gpus_per_worker=args.gpus_per_worker or 0.0, cpus_per_worker=args.cpus_per_worker or 1.0,
                      batch_size=args.batch_size)
    predictor = predictor_options(args, edges, cluster)
    check_local_model(predictor["model"])
    plan, input_store, output_store = plan_ray_job(args.inputs, args.output_dir, suffix=output_format.suffix,
                                                   recursive=args.recursive, overwrite=args.overwrite)
    reporter = Reporter(sys.stderr)
    summary = report_plan(plan, reporter)
    if plan.tasks:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the summary's (--json): Ray's own messages go to stderr
            run_planned(plan, summary, reporter, predictor=predictor, cluster=cluster, input_store=input_store,
                        output_store=output_store)
    return finish_job(summary, reporter, args.json)


def run_planned(plan: Plan, summary: Summary, reporter: Reporter, *, predictor: dict[str, Any], cluster: Cluster,
                input_store: RemoteStore | None, output_store: RemoteStore | None) -> None:
    """Join (or start) the cluster, run the planned tasks on it and leave it as found."""
    joined = connect(cluster.address)
    try:
        if cluster.gpus_per_worker > ray.cluster_resources().get("GPU", 0):
            reporter.note(f"the Ray cluster has fewer than {cluster.gpus_per_worker:g} GPUs now; the job waits "
                          "for GPU nodes to join (Ctrl-C stops it)")
        reporter.start(len(plan.tasks))
        run_on_ray(plan.tasks, summary, predictor=predictor, cluster=cluster, input_store=input_store,
                   output_store=output_store, on_done=reporter.done)
    finally:
        if joined:
            ray.shutdown()


def predictor_options(args: argparse.Namespace, edges: dict[str, Any], cluster: Cluster) -> dict[str, Any]:
    """:class:`RemoveBackground`'s options from the command line; a local model path is made absolute."""
    device = args.device
    if cluster.gpus_per_worker == 0:
        if device.strip().lower() not in ("auto", "cpu"):
            raise UsageError(f"--device {device} needs --gpus-per-worker above 0 with --engine ray "
                             "(Ray gives GPUs only to the workers that ask for them)")
        device = "cpu"
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    return {"model": model, "device": device, "dtype": args.dtype, "return_mask": args.mask_only,
            "background": args.background, **edges, "output_format": args.format,
            "input_size": args.input_size, "workers": args.workers}


def check_local_model(model: str) -> None:
    """Load a checkpoint this machine can see once here, so a bad one is one error line before the job
    starts rather than a failed job (hub ids and paths only the cluster has are loaded by the workers)."""
    if os.path.exists(model):
        load_model(model, device="cpu", dtype="float32")


def plan_ray_job(inputs: Sequence[str], output: str | None, *, suffix: str, recursive: bool = False,
                 overwrite: bool = False) -> tuple[Plan, RemoteStore | None, RemoteStore | None]:
    """Find the inputs and plan their outputs as the local engine does; local paths or URIs on each side.

    Returns the plan and the input and output stores (None for local paths). All INPUTs are local
    paths, or all URIs of one file system.
    """
    if output is not None and is_uri(output):
        output_store, out_dir = RemoteStore.open(output)
        check_remote_folder(output_store, out_dir)
    else:
        output_store, out_dir = None, output_folder(output)
    uris = [is_uri(argument) for argument in inputs]
    if any(uris) and not all(uris):
        raise UsageError("INPUTs must be all local paths or all URIs (s3://..., file://...)")
    if any(uris):
        opened = [RemoteStore.open(argument) for argument in inputs]
        input_store = opened[0][0]
        if any(store != input_store for store, _ in opened):
            raise UsageError("INPUT URIs must all be on one file system (one scheme, bucket options and host)")
        exclude = out_dir if output_store == input_store else None
        found = find_uri_images([(argument, location) for argument, (_, location) in zip(inputs, opened)],
                                input_store, recursive=recursive, exclude=exclude)
    else:
        input_store = None
        local_out = out_dir if output_store is None else (output_store.path(out_dir) if output_store.is_local else None)
        found = find_images(inputs, recursive=recursive, exclude=local_out)
    plan = plan_found(found, out_dir, suffix=suffix, recursive=recursive, overwrite=overwrite,
                      input_store=input_store or LOCAL_FILES, output_store=output_store or LOCAL_FILES)
    if plan.tasks and output_store is None:
        check_output_folder(Path(out_dir))
    return plan, input_store, output_store


def check_remote_folder(store: RemoteStore, location: str) -> None:
    """Refuse an output URI that names a file (an unreachable store fails here too, before any work)."""
    if store.is_file(location):
        raise UsageError(f"{location}: output path exists and is not a folder")
