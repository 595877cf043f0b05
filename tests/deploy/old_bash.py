"""macOS's bash, 3.2.57, for running the deploy scripts as a Mac runs them.

Bash before 4.4 calls an empty "${a[@]}" unbound under `set -u`, which no newer bash reproduces. The binary is
looked for in $OLD_BASH, then .local/bash-3.2.57/bin/bash; otherwise it is built there from GNU's tarball
(checksum pinned; a few minutes, once). None when it cannot be had (no network): tests needing it skip.
"""

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_DIR = REPO_ROOT / ".local" / "bash-3.2.57"
SOURCE_URL = "https://ftp.gnu.org/gnu/bash/bash-3.2.57.tar.gz"
SOURCE_SHA256 = "3fa9daf85ebf35068f090ce51283ddeeb3c75eb5bc70b1a4a7cb05868bfe06a4"
# gcc 12+ rejects the K&R-era C of 3.2 unless told to accept it.
CFLAGS = (
    "-O1 -std=gnu89 -fcommon -Wno-implicit-function-declaration -Wno-implicit-int -Wno-int-conversion "
    "-Wno-incompatible-pointer-types"
)


def _version_ok(path: Path) -> bool:
    try:
        out = subprocess.run(
            [str(path), "-c", 'echo "$BASH_VERSION"'], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return False
    return out.startswith("3.2.")


def build(prefix: Path = INSTALL_DIR, source: Path | None = None) -> Path:
    """Build bash 3.2.57 into PREFIX from SOURCE (an unpacked tree), or from GNU's tarball."""
    with tempfile.TemporaryDirectory() as work:
        if source is None:
            tarball = Path(work) / "bash.tar.gz"
            with urllib.request.urlopen(SOURCE_URL, timeout=30) as response:
                tarball.write_bytes(response.read())
            digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
            if digest != SOURCE_SHA256:
                raise RuntimeError(f"{SOURCE_URL}: sha256 {digest}, expected {SOURCE_SHA256}")
            with tarfile.open(tarball) as archive:
                archive.extractall(work, filter="data")
            source = Path(work) / "bash-3.2.57"
        env = {**os.environ, "CFLAGS": CFLAGS}
        for step in (
            ["./configure", "--without-bash-malloc", "--disable-nls", f"--prefix={prefix}"],
            ["make"],
            ["make", "install"],
        ):
            subprocess.run(step, cwd=source, env=env, check=True, capture_output=True, timeout=1200)
    return prefix / "bin" / "bash"


def bash_3_2() -> Path | None:
    """Path of a bash 3.2 binary, building it once when needed; None when there is none to be had."""
    candidates = [Path(os.environ["OLD_BASH"])] if os.environ.get("OLD_BASH") else []
    candidates.append(INSTALL_DIR / "bin" / "bash")
    for candidate in candidates:
        if candidate.exists() and _version_ok(candidate):
            return candidate
    if shutil.which("make") is None or shutil.which("gcc") is None:
        return None
    try:
        built = build()
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return built if _version_ok(built) else None
