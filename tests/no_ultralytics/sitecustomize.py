"""On PYTHONPATH, makes `import ultralytics` fail in every process (Ray's workers too), as it does
where the [detect] extra is not installed: classification must not need it."""

import sys


class _NoUltralytics:
    def find_spec(self, name, path=None, target=None):
        if name == "ultralytics" or name.startswith("ultralytics."):
            raise ModuleNotFoundError("No module named 'ultralytics' (blocked by tests/no_ultralytics)")


sys.meta_path.insert(0, _NoUltralytics())
