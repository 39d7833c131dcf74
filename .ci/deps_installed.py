"""Exit 0 when this Python has moa-lit installed from this checkout and every
requirement in pyproject.toml (plus the extras named as arguments) installed
at a version the pins allow; else exit 1, so `make` installs. Catches an
environment left on older pins (e.g. hydra-core 1.3) after the pins moved."""

import pathlib
import sys
from importlib import metadata

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: read the installed metadata instead
    tomllib = None
from packaging.requirements import Requirement

root = pathlib.Path(__file__).resolve().parents[1]
try:
    import moa_lit
except ImportError:
    sys.exit(1)
if pathlib.Path(moa_lit.__file__).resolve().parent != root / "src" / "moa_lit":
    sys.exit(1)
if tomllib is not None:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in sys.argv[1:]:
        wanted += project["optional-dependencies"][extra]
else:
    wanted = [r for r in metadata.requires("moa-lit") or [] if "extra ==" not in r]
for line in wanted:
    req = Requirement(line)
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
