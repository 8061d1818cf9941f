"""What the sections of the GPU benchmark share: the sizes of a run, the device, a work folder, and the models
saved once for the loaders that take a folder (the reward service, the trainer, the captioner)."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Sizes:
    """What one run measures. ``REAL`` is sized for one H100/H200 in about 7 minutes; ``TINY`` for the CPU test."""

    readers: tuple[str, ...]
    caption_tokens: tuple[int, int]
    questions: int
    score_captions: int
    """Captions per measured engine call on the letter-scoring path."""
    generate_captions: int
    """Captions per measured call on the generate path (8x the prompts, each computed in full)."""
    batch_tokens: tuple[int, ...]
    """The reader's ``batch_tokens`` (tokens of one forward), swept upwards until throughput stops rising."""
    matmul_rows: int
    min_measure_s: float
    service_reader: str
    clients: int
    captions_per_request: int
    requests_per_client: int
    max_batch: int
    policy: str
    image_px: int
    group: int
    completion_tokens: int
    grpo_steps: int
    lora_r: int
    annotate_images: int
    annotate_batch: int
    annotate_single: int
    annotate_new_tokens: int
    budgets: dict[str, float]
    """Each section's time box; time an earlier section leaves unused goes to the later ones."""
    budget_s: float
    threads: int | None


REAL = Sizes(
    readers=("qwen2.5-1.5b", "qwen2.5-7b"), caption_tokens=(200, 600), questions=8, score_captions=64,
    generate_captions=16, batch_tokens=(8192, 16384, 32768, 65536, 131072), matmul_rows=8192, min_measure_s=1.0,
    service_reader="qwen2.5-1.5b", clients=32, captions_per_request=8, requests_per_client=3, max_batch=64,
    policy="qwen2.5-vl-3b", image_px=448, group=8, completion_tokens=512, grpo_steps=2, lora_r=16,
    annotate_images=16, annotate_batch=16, annotate_single=3, annotate_new_tokens=256,
    budgets={"reader": 150, "service": 70, "grpo": 145, "annotation": 45}, budget_s=420, threads=None,
)  # fmt: skip
TINY = Sizes(
    readers=("tiny",), caption_tokens=(20, 60), questions=8, score_captions=4, generate_captions=2,
    batch_tokens=(256, 1024), matmul_rows=256, min_measure_s=0.0, service_reader="tiny", clients=8,
    captions_per_request=2, requests_per_client=1, max_batch=8, policy="tiny", image_px=112, group=4,
    completion_tokens=8, grpo_steps=2, lora_r=4, annotate_images=4, annotate_batch=4, annotate_single=2,
    annotate_new_tokens=8, budgets={"reader": 60, "service": 60, "grpo": 90, "annotation": 30}, budget_s=300,
    threads=1,
)  # fmt: skip


@dataclass
class Bench:
    """What the sections share: sizes, device, a work folder, and the models saved for loaders that take a folder
    (the service, the trainer, the captioner), built once."""

    sizes: Sizes
    device: str
    work: Path
    started: float = field(default_factory=time.perf_counter)
    deadline: float = float("inf")
    """When the running section's time is up (``time.perf_counter``)."""
    _tokenizer: Any = None
    _reader_dir: Path | None = None
    _policy_dir: Path | None = None
    _policy_params: int | None = None
    _service: Any = None

    @property
    def tiny(self) -> bool:
        return self.sizes.policy == "tiny"

    def left(self) -> float:
        """Seconds left of the running section's budget."""
        return self.deadline - time.perf_counter()

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def dtype(self) -> torch.dtype:
        # The real models' dtype on a GPU; float32 for the tiny ones on a CPU (as caprl's tests run them).
        return torch.bfloat16 if self.cuda else torch.float32

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = new_tokenizer()
        return self._tokenizer

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reader_dir(self) -> Path:
        """The service's reader (shape ``sizes.service_reader``), saved like a real checkpoint."""
        if self._reader_dir is None:
            from benchmarks.gpu.shapes import build_reader

            tokenizer = new_tokenizer()  # its own: saving a VL processor stamps its class on a shared one
            built = build_reader(self.sizes.service_reader, tokenizer, device=self.device, dtype=self.dtype)
            path = self.work / "reader"
            built.model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            del built
            free_memory()
            self._reader_dir = path
        return self._reader_dir

    def policy_dir(self) -> tuple[Path, int]:
        """The policy / captioner (shape ``sizes.policy``) and its processor, saved like a real checkpoint."""
        if self._policy_dir is None:
            from benchmarks.gpu.shapes import build_policy
            from caprl.models.tiny import CaptionerVision, captioner_processor

            tokenizer = new_tokenizer()
            built = build_policy(self.sizes.policy, tokenizer, device=self.device, dtype=self.dtype)
            path = self.work / "policy"
            built.model.save_pretrained(path)
            captioner_processor(tokenizer, CaptionerVision(max_side=self.sizes.image_px)).save_pretrained(path)
            self._policy_params = built.params
            del built
            free_memory()
            self._policy_dir = path
        assert self._policy_params is not None
        return self._policy_dir, self._policy_params

    def service(self) -> Any:
        """``caprl reward serve`` with the reader of :meth:`reader_dir`, on this device, started once."""
        if self._service is None:
            from caprl.server.process import ServiceProcess

            s = self.sizes
            args = ["--seed", "0", "--max-batch", str(s.max_batch), "--max-wait-ms", "5", "--device", self.device]
            args += ["--max-pending", str(max(4096, s.clients * s.captions_per_request * 4))]
            env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            if s.threads:
                env["OMP_NUM_THREADS"] = str(s.threads)
            log = self.work / "serve.log"
            svc = ServiceProcess(self.reader_dir(), args, env=env, log_path=log)
            try:
                svc.start(timeout=180)
            except BaseException as exc:  # a stop (SIGTERM) while it loads must not leave it running
                svc.stop()
                if not isinstance(exc, Exception):
                    raise
                # The work folder goes when the run ends: the service's own words go into the error.
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise RuntimeError(f"caprl reward serve did not start: {exc}\n--- serve.log ---\n{tail}") from exc
            self._service = svc
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None


def new_tokenizer() -> Any:
    """The tokenizer caprl's tiny models use, trained locally on shapes-world text (about a second)."""
    from caprl.models.tokenizer import train_tokenizer

    return train_tokenizer(None, vocab_size=2048)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory allocated since the last reset, or on a CPU the process's peak resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
