"""A local S3 (moto's server) for the Triton instance rehearsal, and the S3 requests read back from it.

The server's access log (werkzeug's, one line per request) is the record of what a client sent: method,
path and query, status. Each request maps to the IAM action S3 authorizes it with, its resource ARN and the
condition keys it carries:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import instance_shims
from iam_policy import Request

from localdev.processes import stop_process
from localdev.tritonserver import free_port

CREDENTIALS = {
    # moto accepts any credentials; real-looking names keep every AWS client on its usual code path.
    "AWS_ACCESS_KEY_ID": "AKIAREHEARSAL000000",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "scripts"


@dataclass(frozen=True)
class S3Call:
    """One request the S3 server answered."""

    method: str
    target: str  # path and query as sent
    status: int

    def iam_request(self, partition: str = "aws") -> Request:
        """The IAM action, resource and condition keys S3 authorizes this request with."""
        parts = urlsplit(self.target)
        query = parse_qs(parts.query, keep_blank_values=True)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        bucket_arn = f"arn:{partition}:s3:::{bucket}"
        if key:
            if self.method in ("GET", "HEAD") and not query:
                return Request("s3:GetObject", f"{bucket_arn}/{key}")
            raise AssertionError(f"no IAM mapping here for {self.method} {self.target}")
        if self.method == "HEAD" and not query:
            # HeadBucket: "you must have permission to perform the s3:ListBucket action"; it has no prefix.
            return Request("s3:ListBucket", bucket_arn)
        if self.method == "GET" and "location" in query:
            return Request("s3:GetBucketLocation", bucket_arn)
        if self.method == "GET" and set(query) <= {"list-type", "prefix", "delimiter", "max-keys",
                                                   "continuation-token", "start-after", "encoding-type",
                                                   "marker", "fetch-owner"}:  # fmt: skip
            # ListObjects(V2): s3:ListBucket, with s3:prefix, s3:delimiter, s3:max-keys where the request has
            # them.
            keys = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}
            context = {keys[name]: query[name][0] for name in keys if name in query}
            return Request("s3:ListBucket", bucket_arn, context)
        raise AssertionError(f"no IAM mapping here for {self.method} {self.target}")


def sync_models(s3: LocalS3, models_dir: Path, bucket: str, prefix: str, scratch: Path) -> list[str]:
    """Run deploy/scripts/sync-models.sh, unchanged, on ``models_dir`` into the local server's ``bucket``
    (which the bootstrap stack would have created), with a stand-in ``aws`` that does ``aws s3 sync``'s work
    against it; return the keys under ``prefix``. The scripts run from a copy of the repository's layout
    whose models/ is ``models_dir``, so the script's own REPO_ROOT finds them."""
    repo = scratch / "repo"
    shutil.copytree(SCRIPTS, repo / "deploy" / "scripts")
    shutil.copytree(models_dir, repo / "models")
    instance_shims.install(scratch / "bin", ("aws",))
    s3.create_bucket(bucket)
    env = {
        "PATH": f"{scratch / 'bin'}:/usr/bin:/bin",
        "HOME": str(scratch),
        "MODEL_PREFIX": prefix,
        "REHEARSAL_DIR": str(scratch),
        "REHEARSAL_S3_ENDPOINT": s3.endpoint,
        "REHEARSAL_MODEL_BUCKET": bucket,
        **CREDENTIALS,
    }
    script = repo / "deploy" / "scripts" / "sync-models.sh"
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"sync-models.sh failed:\n{result.stdout}{result.stderr}"
    listing = boto3.client("s3", endpoint_url=s3.endpoint, **_boto_credentials()).list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/"
    )
    return sorted(item["Key"] for item in listing.get("Contents", []))


class LocalS3:
    """moto's S3 server on a free 127.0.0.1 port; a context manager that always stops it."""

    def __init__(self, log_path: Path, startup_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def triton_url(self, bucket: str, prefix: str) -> str:
        """The model repository as Triton's S3 client takes a custom endpoint."""
        return f"s3://{self.endpoint}/{bucket}/{prefix}"

    def __enter__(self) -> Self:
        self._log = self.log_path.open("wb")
        server = Path(sys.executable).parent / "moto_server"
        self._process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"moto_server did not start:\n{self.log_path.read_text()}") from None
                time.sleep(0.1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            stop_process(self._process, signal.SIGTERM, timeout=10)
        if self._log is not None:
            self._log.close()

    def create_bucket(self, bucket: str) -> None:
        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)

    def upload(self, bucket: str, keys: dict[str, Path]) -> None:
        s3 = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        for key, path in keys.items():
            s3.upload_file(str(path), bucket, key)

    def mark(self) -> int:
        """A position in the request log: calls() from here on leaves out what came before."""
        return self.log_path.stat().st_size

    def calls(self, since: int = 0) -> list[S3Call]:
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = _ANSI.sub("", log.read().decode(errors="replace"))
        calls = []
        for line in text.splitlines():
            match = _ACCESS_LINE.search(line)
            if match and not match.group(2).startswith("/moto-api"):
                calls.append(S3Call(match.group(1), match.group(2), int(match.group(3))))
        return calls


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_REGION"],
    }
