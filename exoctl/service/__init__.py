"""The daemon side of exoctl: local control API, clinician CLI, systemd glue.

Recordings (the store, the recorder and its writer, exports, reports, the recorded event
kinds and field rules) were modules here and are ``exoctl.recordings`` now. Importing one by
its old name fails with a ``ModuleNotFoundError`` that names the module to import instead,
rather than "No module named ...": a script written against the old layout is told how to
change, and no second name for one module lives on.
"""

import importlib.abc
import sys

MOVED_TO_RECORDINGS = ("events", "export", "fields", "recorder", "report", "store", "writer")
"""The modules (and ``report``'s submodules) moved from ``exoctl.service`` to
``exoctl.recordings``, under the same names."""


class _MovedModules(importlib.abc.MetaPathFinder):
    """Consulted last, only for names no other finder found: an old module name to an error
    that says where the module is now."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        head, _, rest = fullname.partition(f"{__name__}.")
        if head or rest.split(".")[0] not in MOVED_TO_RECORDINGS:
            return None
        new = f"exoctl.recordings.{rest}"
        raise ModuleNotFoundError(
            f"{fullname} has moved to {new} (recordings are their own package, used with the "
            f"daemon stopped as well): import {new} instead",
            name=fullname,
        )


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
