"""Artifacts from Maven Central, through the local ~/.m2 repository so a second run is offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from recommender.errors import ServiceSetupError

__all__ = ["fetch_artifact"]

_M2 = Path.home() / ".m2" / "repository"


def _local_path(coordinates: str) -> Path:
    parts = coordinates.split(":")
    group, artifact, version = parts[0], parts[1], parts[2]
    packaging = parts[3] if len(parts) > 3 else "jar"
    return _M2.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.{packaging}")


def fetch_artifact(coordinates: str) -> Path:
    """Return the local path of ``group:artifact:version[:packaging]``, downloading it if needed.

    Raises ServiceSetupError naming the coordinates when Maven is missing or the artifact
    does not resolve.
    """
    path = _local_path(coordinates)
    if path.exists():
        return path
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceSetupError(
            f"Maven (mvn) not found; it is needed to fetch {coordinates!r}. Install it: apt-get install maven"
        )
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={coordinates}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0 or not path.exists():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise ServiceSetupError(f"could not fetch {coordinates!r} from Maven Central: {tail or 'no output'}")
    return path
