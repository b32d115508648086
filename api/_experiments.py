"""Admin endpoints for A/B experiments: start, stop, promote the winner, and the list with
per-variant statistics. Every endpoint needs an admin token; each change is audited.

Experiments live in ``recommender.stores.experiments``; the recommender serves a started
experiment within its profile poll interval, and its counts reach Redis within its flush
interval (``HOTFEED_SERVER_EXPERIMENT_FLUSH_MS``). Only the events of viewers exposed to an
experiment (served one of its pages) count (``recommender.stores.experiment_counts``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api._identity import admin_identity
from recommender.experiments import Experiment, variant_stats
from recommender.stores.experiments import ExperimentStore
from recommender.stores.profiles import MAX_COMMENT_CHARS

__all__ = ["experiments_router"]

Admin = Annotated[str, Depends(admin_identity)]


class VariantBody(BaseModel):
    """One variant of a new experiment: a published version and its share of viewers in percent."""

    version: str = Field(max_length=64)
    percent: float


class StartBody(BaseModel):
    """A new experiment: its name, the profile it splits and the variants (percentages summing to 100)."""

    name: str = Field(max_length=64)
    profile: str = Field(max_length=64)
    variants: list[VariantBody] = Field(max_length=20)
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)


class StopBody(BaseModel):
    """Why the experiment stops (optional)."""

    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)


class PromoteBody(BaseModel):
    """The winning variant to publish, and why (required: it goes with the publish)."""

    version: str = Field(max_length=64)
    comment: str = Field(max_length=MAX_COMMENT_CHARS)


def experiment_json(experiment: Experiment, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Return the JSON of an experiment with one row of counts, rates and 95 % intervals per variant.

    ``exposed_viewers`` is the number of distinct viewers served a page of the variant; the
    event counts (click, like, chat, purchase) are those of these viewers only.
    """
    variants = []
    for variant in experiment.variants:
        stats = variant_stats(variant, counts.get(variant.version, {}))
        variants.append({
            "version": stats.version, "percent": stats.percent, "impressions": stats.impressions,
            "exposed_viewers": stats.exposed_viewers, **stats.events,
            **{name: {"rate": rate, "low": low, "high": high} for name, (rate, low, high) in stats.rates.items()},
        })
    return {
        "name": experiment.name, "profile": experiment.profile, "state": experiment.state,
        "created_by": experiment.created_by, "created_at": experiment.created_at,
        "stopped_by": experiment.stopped_by, "stopped_at": experiment.stopped_at,
        "promoted_version": experiment.promoted_version, "variants": variants,
    }


def experiments_router(store: ExperimentStore) -> APIRouter:
    """Return the router of ``/admin/experiments``; every endpoint needs an admin token."""
    router = APIRouter(prefix="/admin/experiments", tags=["admin"], dependencies=[Depends(admin_identity)])

    def with_counts(experiment: Experiment) -> dict[str, Any]:
        return experiment_json(experiment, store.counts(experiment.name))

    @router.get("")
    def list_experiments() -> dict[str, Any]:
        """Return every experiment, running first, each with its per-variant statistics."""
        return {"experiments": [with_counts(e) for e in store.all()]}

    @router.post("")
    def start_experiment(body: StartBody, who: Admin) -> dict[str, Any]:
        """Return the started experiment; 400 naming the problem for unknown or unpublished
        versions, percentages not summing to 100, a used name or a profile already under test."""
        experiment = store.start(body.name, body.profile, [(v.version, v.percent) for v in body.variants],
                                 actor=who, comment=body.comment)
        return with_counts(experiment)

    @router.get("/{name}")
    def get_experiment(name: str) -> dict[str, Any]:
        """Return one experiment with its per-variant statistics; 404 for an unknown name."""
        return with_counts(store.get(name))

    @router.post("/{name}/stop")
    def stop_experiment(name: str, body: StopBody, who: Admin) -> dict[str, Any]:
        """Return the stopped experiment: everyone gets the live version again."""
        return with_counts(store.stop(name, actor=who, comment=body.comment))

    @router.post("/{name}/promote")
    def promote_experiment(name: str, body: PromoteBody, who: Admin) -> dict[str, Any]:
        """Return the experiment, stopped, after publishing the winning ``version`` with the comment."""
        return with_counts(store.promote(name, body.version, actor=who, comment=body.comment))

    return router
