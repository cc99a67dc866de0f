"""The `build` fixture: compiles every runtime test binary once per session."""
import subprocess

import pytest

from rtkit import build_jobs


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """Compiles every binary the tests need, two at a time; returns name -> path.
    Every build must be free of warnings (-Werror plus an empty log)."""
    out = tmp_path_factory.mktemp("build")
    pending = list(build_jobs().items())
    running, paths = [], {}
    while pending or running:
        while pending and len(running) < 2:
            name, cmd = pending.pop(0)
            cmd = [str(c) for c in cmd] + ["-o", str(out / name)]
            running.append((name, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT)))
        name, p = running.pop(0)
        log = p.communicate()[0].decode()
        assert p.returncode == 0 and log == "", f"building {name} failed or warned:\n{log}"
        paths[name] = out / name
    return paths
