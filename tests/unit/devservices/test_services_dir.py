"""Where the engines are installed: a folder their service user can enter."""

from __future__ import annotations

import os

from devservices.local import _reachable_dir


def test_a_services_dir_under_a_private_folder_moves_to_a_stand_in_when_root(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    configured = private / "checkout" / ".services"
    chosen = _reachable_dir(configured)
    if os.geteuid() == 0:
        assert chosen.parent.as_posix() == "/var/tmp/hotfeed-services"
        assert chosen == _reachable_dir(configured), "the stand-in must be the same on every call"
    else:
        assert chosen == configured


def test_a_reachable_services_dir_is_kept(tmp_path):
    tmp_path.chmod(0o755)
    configured = tmp_path / ".services"
    if all(os.stat(p).st_mode & 0o001 for p in [tmp_path, *tmp_path.parents]):
        assert _reachable_dir(configured) == configured
    else:
        assert _reachable_dir(configured) != configured
