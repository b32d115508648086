"""A/B experiments in Redis, and the keys of their per-variant counts and exposures.

Redis layout (``P`` is ``settings.redis.key_prefix``):

    P experiments:all                      hash    experiment name -> JSON of the Experiment
    P experiments:running                  hash    profile name -> the name of its running experiment
    P experiments:<name>:counts            hash    "<version>:<count>" -> integer, count being
                                                   "impressions", "exposed_viewers" or one of
                                                   COUNTED_EVENTS
    P experiments:<name>:exposed:<version> set     the viewers (user id, else session id) served a
                                                   page of that variant while it ran
    P profiles:revision                    string  bumped by every start and stop, so the serving
                                                   profile cache (which polls it) reloads
                                                   experiments with profiles
    P audit                                stream  the admin audit trail (``recommender.stores.audit``)

At most one experiment runs per profile: the running hash is checked and set in the same
script as the start. Starting, stopping and promoting append their audit entry in the script
that makes the change. Counts are kept after an experiment stops, for its final table; the
exposed sets are deleted by the stop (they only decide which events count while it runs; the
number of exposed viewers stays in the counts). ``recommender.stores.experiment_counts``
writes the counts and the exposed sets.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import AbstractContextManager

import redis

from recommender.errors import InvalidRequest, NotFound
from recommender.experiments import (
    Experiment,
    Variant,
    checked_experiment_name,
    checked_variants,
)
from recommender.settings import RedisSettings
from recommender.stores._redis import redis_errors_translated
from recommender.stores.audit import audit_key, audit_payload
from recommender.stores.profiles import ProfileStore, checked_comment

__all__ = ["ExperimentStore", "counts_key", "experiments_key", "exposed_key"]

_log = logging.getLogger(__name__)

# KEYS: all, running, revision, audit. ARGV: name, profile, experiment JSON, audit entry JSON.
# Returns the new revision; -1 when the name is taken; -2 when the profile already runs one.
_START_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return -1
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return -2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'entry', ARGV[4])
return redis.call('INCR', KEYS[3])
"""

# KEYS: all, running, revision, audit, then the exposed set of each variant. ARGV: name,
# profile, stopped experiment JSON, audit entry JSON, only_if_running ("1": refuse a stopped
# experiment). Returns the new revision; 0 when only_if_running and it is not running.
_STOP_LUA = """
local running = redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1]
if ARGV[5] == '1' and not running then
  return 0
end
if running then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
for i = 5, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[4], '*', 'entry', ARGV[4])
return redis.call('INCR', KEYS[3])
"""


def _experiment_json(e: Experiment) -> str:
    return json.dumps({
        "name": e.name, "profile": e.profile, "variants": [[v.version, v.percent] for v in e.variants],
        "state": e.state, "created_by": e.created_by, "created_at": e.created_at, "stopped_by": e.stopped_by,
        "stopped_at": e.stopped_at, "promoted_version": e.promoted_version,
    }, ensure_ascii=False)


def _experiment(payload: str) -> Experiment:
    d = json.loads(payload)
    return Experiment(
        name=d["name"], profile=d["profile"], variants=tuple(Variant(v, float(p)) for v, p in d["variants"]),
        state=d["state"], created_by=d["created_by"], created_at=float(d["created_at"]),
        stopped_by=d.get("stopped_by", ""), stopped_at=d.get("stopped_at"),
        promoted_version=d.get("promoted_version", ""),
    )


def experiments_key(prefix: str) -> str:
    """Return the key of the hash of every experiment (name -> JSON) under ``prefix``."""
    return f"{prefix}experiments:all"


def counts_key(prefix: str, name: str) -> str:
    """Return the key of the per-variant counts hash of experiment ``name`` under ``prefix``."""
    return f"{prefix}experiments:{name}:counts"


def exposed_key(prefix: str, name: str, version: str) -> str:
    """Return the key of the set of viewers exposed to variant ``version`` of experiment ``name``."""
    return f"{prefix}experiments:{name}:exposed:{version}"


class ExperimentStore:
    """Experiments over the profiles of ``profiles`` (same Redis, same prefix).

    Every method raises StoreUnavailable when Redis is down or times out.
    """

    def __init__(self, settings: RedisSettings, *, profiles: ProfileStore, client: redis.Redis | None = None):
        self.settings = settings
        self.profiles = profiles
        self.client = client or profiles.client
        self._prefix = settings.key_prefix
        self._all_key = experiments_key(self._prefix)
        self._running_key = f"{self._prefix}experiments:running"
        self._revision_key = f"{self._prefix}profiles:revision"
        self._audit_key = audit_key(self._prefix)
        self._start = self.client.register_script(_START_LUA)
        self._stop = self.client.register_script(_STOP_LUA)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return redis_errors_translated(what, self.settings.url)

    def start(self, name: str, profile: str, variants: list[tuple[str, float]], *, actor: str,
              comment: str = "") -> Experiment:
        """Return the new experiment, running from now on (serving picks it up within its poll interval).

        Raises InvalidRequest for a bad name, bad variants (see ``checked_variants``), a name
        already used, or a profile that already runs an experiment; NotFound for an unknown profile.
        """
        checked_experiment_name(name)
        comment = checked_comment(comment, required=False, action="experiment start")
        if self.profiles.active(profile) is None:
            raise NotFound(f"score profile {profile!r} does not exist; known profiles: {self.profiles.names()}")
        checked = checked_variants(variants, published=set(self.profiles.published(profile)), profile=profile)
        experiment = Experiment(name=name, profile=profile, variants=checked, state="running", created_by=actor,
                                created_at=time.time())
        entry = audit_payload(at=experiment.created_at, actor=actor, action="start_experiment", target="experiment",
                              name=name, version="", comment=comment)
        with self._errors(f"starting experiment {name!r}"):
            result = int(self._start(keys=[self._all_key, self._running_key, self._revision_key, self._audit_key],
                                     args=[name, profile, _experiment_json(experiment), entry]))
        if result == -1:
            raise InvalidRequest(f"experiment name {name!r} is already used (experiments are kept with their "
                                 f"counts); choose another name")
        if result == -2:
            other = self.running_for(profile)
            raise InvalidRequest(f"profile {profile!r} already runs experiment {other!r}; stop it first "
                                 f"(one experiment per profile)")
        _log.info("experiment %r started on profile %r by %r: %s", name, profile, actor, checked)
        return experiment

    def get(self, name: str) -> Experiment:
        """Return the experiment ``name``; raises NotFound naming the known ones."""
        checked_experiment_name(name)
        with self._errors(f"reading experiment {name!r}"):
            payload = self.client.hget(self._all_key, name)
        if payload is None:
            raise NotFound(f"experiment {name!r} does not exist; known experiments: "
                           f"{[e.name for e in self.all()]}")
        return _experiment(payload)

    def all(self) -> list[Experiment]:
        """Return every experiment, running ones first, then newest first."""
        with self._errors("listing experiments"):
            payloads = self.client.hvals(self._all_key)
        experiments = [_experiment(p) for p in payloads]
        return sorted(experiments, key=lambda e: (e.state != "running", -e.created_at))

    def running(self) -> list[Experiment]:
        """Return the running experiments (at most one per profile)."""
        with self._errors("reading the running experiments"):
            names = list(self.client.hvals(self._running_key))
            payloads = self.client.hmget(self._all_key, names) if names else []
        return [_experiment(p) for p in payloads if p is not None]

    def running_for(self, profile: str) -> str | None:
        """Return the name of the experiment running on ``profile``, or None."""
        with self._errors(f"reading the experiment of profile {profile!r}"):
            return self.client.hget(self._running_key, profile)

    def stop(self, name: str, *, actor: str, comment: str = "") -> Experiment:
        """Return the experiment, stopped (the live version serves everyone again, within the poll interval).

        Raises NotFound for an unknown experiment and InvalidRequest when it is not running.
        """
        return self._stopped(name, actor=actor, comment=comment, promoted="")

    def promote(self, name: str, version: str, *, actor: str, comment: str) -> Experiment:
        """Return the experiment, stopped, after publishing its variant ``version`` as the live
        version of its profile with ``comment`` (the publish and the promote are both audited).

        Raises InvalidRequest for an empty comment or a version that is not one of its variants.
        A stopped experiment can still be promoted (the decision often comes after the stop).
        """
        comment = checked_comment(comment, required=True, action="promote")
        experiment = self.get(name)
        if version not in {v.version for v in experiment.variants}:
            raise InvalidRequest(f"version {version!r} is not a variant of experiment {name!r}; its variants are "
                                 f"{[v.version for v in experiment.variants]}")
        self.profiles.publish(experiment.profile, version, actor=actor,
                              comment=f"{comment} (winner of experiment {name!r})")
        return self._stopped(name, actor=actor, comment=comment, promoted=version, experiment=experiment)

    def _stopped(self, name: str, *, actor: str, comment: str, promoted: str,
                 experiment: Experiment | None = None) -> Experiment:
        comment = checked_comment(comment, required=False, action="experiment stop")
        experiment = experiment or self.get(name)
        if not promoted and experiment.state != "running":
            raise InvalidRequest(f"experiment {name!r} is already stopped; start a new experiment to test again")
        at = time.time()
        stopped = Experiment(
            name=experiment.name, profile=experiment.profile, variants=experiment.variants, state="stopped",
            created_by=experiment.created_by, created_at=experiment.created_at,
            stopped_by=experiment.stopped_by or actor, stopped_at=experiment.stopped_at or at,
            promoted_version=promoted,
        )
        entry = audit_payload(at=at, actor=actor, action="promote_experiment" if promoted else "stop_experiment",
                              target="experiment", name=name, version=promoted, comment=comment)
        with self._errors(f"stopping experiment {name!r}"):
            exposed = [exposed_key(self._prefix, name, v.version) for v in experiment.variants]
            result = int(self._stop(keys=[self._all_key, self._running_key, self._revision_key, self._audit_key,
                                          *exposed],
                                    args=[name, experiment.profile, _experiment_json(stopped), entry,
                                          "0" if promoted else "1"]))
        if result == 0:
            raise InvalidRequest(f"experiment {name!r} was stopped meanwhile; reload the list")
        _log.info("experiment %r %s by %r", name, f"promoted {promoted}" if promoted else "stopped", actor)
        return stopped

    def counts(self, name: str) -> dict[str, dict[str, int]]:
        """Return version -> count name ("impressions", "exposed_viewers", COUNTED_EVENTS) -> count,
        for experiment ``name``."""
        with self._errors(f"reading the counts of experiment {name!r}"):
            raw = self.client.hgetall(counts_key(self._prefix, name))
        out: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            version, _, count = field.rpartition(":")
            out.setdefault(version, {})[count] = int(value)
        return out

