"""Registering the nightly deployment with a Prefect server's process work pool (`claimscrub deploy`)."""

from pathlib import Path

from pipeline.config import ScrubConfig


def ensure_work_pool(name: str) -> bool:
    """Create the process work pool ``name`` with Prefect's default job template if missing; True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
            except ObjectAlreadyExists:  # created meanwhile by someone else
                return False
            return True
    if pool.type != "process":
        raise ValueError(f"work pool {name!r} is of type {pool.type!r}, not process")
    return False


def other_nightly_deployments(keep: str) -> list[str]:
    """Names of the other nightly-scrub deployments on the server (each fires on its own schedule)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly-scrub"])))
    return sorted(d.name for d in found if d.name != keep)


def deploy_nightly(config: ScrubConfig, root: Path | None, config_path: Path | None, work_pool: str,
                   name: str):
    """Register the nightly deployment on ``work_pool`` (created if missing); returns (id, pool created)."""
    from pipeline.flows import build_deployment

    created = ensure_work_pool(work_pool)
    dep = build_deployment(config, root, config_path, name=name)
    return dep.apply(work_pool_name=work_pool), created
