"""routeflow.private: secrets and state are never readable by others."""

import os
import stat

from routeflow.private import private_dir, write_private


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_directories_are_the_owners_alone(tmp_path):
    old = os.umask(0)  # even under the most permissive umask
    try:
        directory = tmp_path / "a" / "vms"
        private_dir(directory)
        secret = directory / "frr.conf"
        write_private(secret, "neighbor 192.0.2.1 password s3cret\n")
        assert (_mode(directory), _mode(secret)) == (0o700, 0o600)
        assert secret.read_text() == "neighbor 192.0.2.1 password s3cret\n"
        # Rewritten over a file that had been opened up: private again, no temporary left.
        os.chmod(secret, 0o644)
        (directory / "frr.conf.tmp").write_text("stale")
        os.chmod(directory / "frr.conf.tmp", 0o666)
        write_private(secret, "new\n")
        assert _mode(secret) == 0o600 and secret.read_text() == "new\n"
        assert sorted(p.name for p in directory.iterdir()) == ["frr.conf"]
    finally:
        os.umask(old)
