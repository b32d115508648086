"""Score profiles held in memory and reloaded within a poll interval of any change in Redis.

The cache polls the store's revision counter (one cheap GET) every ``poll_ms``; when it moved,
every active profile is re-read. A profile that no longer validates is logged and the last
good version of it keeps serving; if Redis is down at start, the shipped default serves.

Running A/B experiments are reloaded with the profiles (starting or stopping one bumps the
same revision): ``for_viewer`` serves a viewer the variant ``assign_variant`` picks for them.

Previews (the admin console) ask for one stored version, drafts included: ``version`` reads it
from the store once and keeps it by (name, version); a stored version never changes.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from recommender.errors import HotfeedError, NotFound, ProfileRejected, StoreUnavailable
from recommender.experiments import Experiment, assign_variant
from recommender.profiles import ItemFields, ScoreProfile, load_default_profile, profile_version
from recommender.stores.experiments import ExperimentStore
from recommender.stores.profiles import ProfileStore, StoredProfile

__all__ = ["ProfileCache", "LiveProfile"]

_log = logging.getLogger(__name__)
# Stored versions kept for previews: a console session looks at a handful at a time.
_PREVIEW_VERSIONS = 64


class LiveProfile:
    """A profile as serving uses it: the parsed profile, its name and version, and the
    experiment that chose this version ("" when none did)."""

    def __init__(self, name: str, version: str, profile: ScoreProfile, *, experiment: str = ""):
        self.name = name
        self.version = version
        self.profile = profile
        self.experiment = experiment

    @classmethod
    def from_stored(cls, stored: StoredProfile, *, experiment: str = "") -> "LiveProfile":
        return cls(stored.name, stored.version, stored.profile, experiment=experiment)


class ProfileCache:
    def __init__(self, store: ProfileStore, *, fields: ItemFields, poll_ms: int = 250,
                 experiments: ExperimentStore | None = None):
        self.store = store
        self.experiments = experiments
        # profile name -> (running experiment, version -> its LiveProfile)
        self._experiments: dict[str, tuple[Experiment, dict[str, LiveProfile]]] = {}
        self.poll_s = poll_ms / 1000
        self._profiles: dict[str, LiveProfile] = {}
        self._revision: int | None = None
        # (name, version) -> a stored version asked for by a preview
        self._versions: OrderedDict[tuple[str, str], LiveProfile] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        default = load_default_profile(fields=fields)
        self._profiles["default"] = LiveProfile("default", profile_version(default), default)

    def start(self) -> None:
        """Load what the store has (storing the shipped default if needed) and start polling."""
        try:
            self.store.ensure_default()
            self.reload()
        except StoreUnavailable as exc:
            _log.warning("profiles: Redis unavailable at start (%s); serving the shipped default", exc)
        self._thread = threading.Thread(target=self._poll, name="profile-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def reload(self) -> None:
        """Re-read every active profile; keep the last good one of any that fails validation."""
        revision = self.store.revision()
        loaded: dict[str, LiveProfile] = {}
        names = self.store.names()
        for name in names:
            try:
                stored = self.store.active(name)
            except ProfileRejected as exc:
                _log.error("profile %r no longer validates; keeping the last good version: %s", name, exc)
                continue
            if stored is not None:
                loaded[name] = LiveProfile.from_stored(stored)
        experiments = self._load_experiments()
        with self._lock:
            # Rejected profiles keep their last good version; deleted ones go; default always stays.
            kept = {n: p for n, p in self._profiles.items() if n not in loaded and (n in names or n == "default")}
            self._profiles = {**kept, **loaded}
            self._experiments = experiments
            self._revision = revision
            # Versions of deleted profiles are no longer previewable.
            for key in [k for k in self._versions if k[0] not in names]:
                del self._versions[key]

    def _load_experiments(self) -> dict[str, tuple[Experiment, dict[str, LiveProfile]]]:
        """Return the running experiments with their variants' profiles; an experiment with a
        variant that cannot be served is left out (logged), so its viewers get the live version."""
        out: dict[str, tuple[Experiment, dict[str, LiveProfile]]] = {}
        if self.experiments is None:
            return out
        for experiment in self.experiments.running():
            variants: dict[str, LiveProfile] = {}
            for variant in experiment.variants:
                try:
                    stored = self.store.get_version(experiment.profile, variant.version)
                except ProfileRejected as exc:
                    stored, reason = None, str(exc)
                else:
                    reason = "that version is no longer stored"
                if stored is None:
                    _log.error("experiment %r not served: variant %s of profile %r: %s", experiment.name,
                               variant.version, experiment.profile, reason)
                    break
                variants[variant.version] = LiveProfile.from_stored(stored, experiment=experiment.name)
            else:
                out[experiment.profile] = (experiment, variants)
        return out

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.store.revision() != self._revision:
                    self.reload()
                    _log.info("profiles reloaded (revision %s): %s", self._revision, sorted(self._profiles))
            except HotfeedError as exc:
                _log.warning("profile poll failed (%s); serving the profiles already loaded", exc)

    def get(self, name: str) -> LiveProfile:
        """Return the live profile by name. Raises NotFound naming the known ones."""
        with self._lock:
            profile = self._profiles.get(name)
            known = sorted(self._profiles)
        if profile is None:
            raise NotFound(f"score profile {name!r} does not exist; known profiles: {known}")
        return profile

    def version(self, name: str, version: str) -> LiveProfile:
        """Return the stored ``version`` of profile ``name`` (a never-published draft too), or the
        live one when ``version`` is "", for a preview: never an experiment's variant.

        Raises NotFound when that version is not stored, ProfileRejected when it no longer
        validates, StoreUnavailable when Redis cannot be read.
        """
        if not version:
            return self.get(name)
        key = (name, version)
        with self._lock:
            cached = self._versions.get(key)
            if cached is not None:
                self._versions.move_to_end(key)
                return cached
        stored = self.store.get_version(name, version)
        if stored is None:
            raise NotFound(f"score profile {name!r} has no stored version {version!r}; "
                           f"the profile's history lists its versions")
        loaded = LiveProfile.from_stored(stored)
        with self._lock:
            self._versions[key] = loaded
            while len(self._versions) > _PREVIEW_VERSIONS:
                self._versions.popitem(last=False)
        return loaded

    def for_viewer(self, name: str, viewer: str) -> LiveProfile:
        """Return the profile ``name`` as ``viewer`` (user id, else session id; "" for none) is
        served: the variant of the experiment running on it, else the live version.

        A viewer with no id at all gets the live version: there is nothing stable to split on.
        Raises NotFound naming the known profiles.
        """
        live = self.get(name)
        with self._lock:
            running = self._experiments.get(name)
        if running is None or not viewer:
            return live
        experiment, variants = running
        return variants[assign_variant(experiment, viewer).version]

    def variants_for_viewer(self, viewer: str) -> list[tuple[str, str]]:
        """Return (experiment, version) of every running experiment for ``viewer``: the variants
        their events count towards (none for a viewer with no id)."""
        if not viewer:
            return []
        with self._lock:
            running = list(self._experiments.values())
        return [(e.name, assign_variant(e, viewer).version) for e, _ in running]
