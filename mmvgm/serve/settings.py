"""What a running service is configured with: one dataclass, filled by ``mmvgm serve``'s options."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from mmvgm.errors import InputError

TOKEN_ENV = "MMVGM_TOKEN"


@dataclass
class ServeSettings:
    """Everything ``create_app`` needs; the defaults are ``mmvgm serve``'s."""

    checkpoint: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: Optional[str] = None
    max_upload_mb: float = 512.0
    state_dir: Path = field(default_factory=lambda: Path("mmvgm-state"))
    database_url: Optional[str] = None          # default: SQLite under state_dir
    allow_roots: List[Path] = field(default_factory=list)
    protect_encoder: Optional[str] = None
    protect_model_path: Optional[str] = None
    protect_config: str = "default"             # as ``mmvgm protect --config``
    lpips_weights: Optional[str] = None
    max_protect_steps: int = 1000               # the research schedule's length
    workers: Optional[int] = None               # decoding processes [default: as scan's, runtime.workers]
    threads: Optional[int] = None               # compute threads [default: a core left per worker on CPU]
    device: Optional[str] = None
    precision: str = "auto"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    request_timeout_s: float = 120.0
    max_pixels: Optional[int] = None            # None: the CLI's budgets (mmvgm.io.limits)
    max_frames: Optional[int] = None
    max_files_per_job: int = 10_000
    job_lease_s: float = 30.0
    job_poll_s: float = 0.5

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(Path(self.state_dir) / 'jobs.sqlite').resolve()}"

    def check(self) -> "ServeSettings":
        """Refuse settings that cannot serve: a public bind without a token, bad limits."""
        if not is_loopback(self.host) and not self.token:
            raise InputError(f"refusing to listen on {self.host} without a token: set --token-file FILE "
                             f"or ${TOKEN_ENV} (loopback hosts such as 127.0.0.1 need none)")
        for name in ("max_upload_mb", "max_batch", "request_timeout_s", "job_lease_s", "job_poll_s",
                     "max_protect_steps"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name.replace('_', '-')} must be > 0 (got {getattr(self, name)})")
        if self.max_wait_ms < 0 or (self.workers or 0) < 0 or (self.threads is not None and self.threads < 1):
            raise InputError("max-wait-ms and workers must be >= 0, threads >= 1")
        if self.protect_model_path and not self.protect_encoder:
            self.protect_encoder = "auto"
        return self


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: Optional[str]) -> Optional[str]:
    """The bearer token: the first line of ``token_file``, else ``$MMVGM_TOKEN``, else None."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            token = lines[0].strip() if lines else ""
        except OSError as exc:
            raise InputError(f"cannot read the token file ({exc.strerror})", path) from None
        if not token:
            raise InputError("the token file is empty", path)
        return token
    return os.environ.get(TOKEN_ENV) or None
