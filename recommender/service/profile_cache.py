"""Score profiles held in memory and reloaded within a poll interval of any change in Redis.

The cache polls the store's revision counter (one cheap GET) every ``poll_ms``; when it moved,
every active profile is re-read. A profile that no longer validates is logged and the last
good version of it keeps serving; if Redis is down at start, the shipped default serves.
"""

from __future__ import annotations

import logging
import threading

from recommender.errors import HotfeedError, NotFound, ProfileRejected, StoreUnavailable
from recommender.profiles import ItemFields, ScoreProfile, load_default_profile, profile_version
from recommender.stores.profiles import ProfileStore, StoredProfile

__all__ = ["ProfileCache", "LiveProfile"]

_log = logging.getLogger(__name__)


class LiveProfile:
    """A profile as serving uses it: the parsed profile, its name and version."""

    def __init__(self, name: str, version: str, profile: ScoreProfile):
        self.name = name
        self.version = version
        self.profile = profile

    @classmethod
    def from_stored(cls, stored: StoredProfile) -> "LiveProfile":
        return cls(stored.name, stored.version, stored.profile)


class ProfileCache:
    def __init__(self, store: ProfileStore, *, fields: ItemFields, poll_ms: int = 250):
        self.store = store
        self.poll_s = poll_ms / 1000
        self._profiles: dict[str, LiveProfile] = {}
        self._revision: int | None = None
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
        with self._lock:
            # Rejected profiles keep their last good version; deleted ones go; default always stays.
            kept = {n: p for n, p in self._profiles.items() if n not in loaded and (n in names or n == "default")}
            self._profiles = {**kept, **loaded}
            self._revision = revision

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
