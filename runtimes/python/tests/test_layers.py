"""The bootstrap's part in layers: /opt content may appear after the interpreter
started (a runtime started ahead, or forked by a zygote), so lookups it cached for /opt paths
before the layers were mounted must not survive into the handler's import.

Run from the repository root:  python3 -m pytest -q runtimes/python/tests
"""

import importlib.util
import os
import sys

BOOTSTRAP = os.environ.get("TERN_PY_BOOTSTRAP") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "bootstrap.py")
)


def load_bootstrap():
    spec = importlib.util.spec_from_file_location("tern_bootstrap_under_test", BOOTSTRAP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lookups_cached_for_opt_before_the_layers_were_mounted_are_forgotten():
    bootstrap = load_bootstrap()
    stale = ["/opt/python", "/opt/python/lib/python3.11/site-packages", "/opt"]
    kept = ["/optional", "/var/task"]
    saved = dict(sys.path_importer_cache)
    try:
        for path in stale + kept:
            # None: "this directory had no finder", as cached for a missing directory.
            sys.path_importer_cache[path] = None
        bootstrap._forget_opt_lookups()
        assert [p for p in stale if p in sys.path_importer_cache] == []
        assert [p for p in kept if p in sys.path_importer_cache] == kept
    finally:
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(saved)
