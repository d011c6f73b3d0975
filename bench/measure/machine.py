"""What a result was measured on: the processor or GPU by name, and the software around it."""
from __future__ import annotations

import platform
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def run_environment(device: torch.device) -> dict[str, Any]:
    """What a run's config.json and eval.json record of where it ran."""
    return {"device_name": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def fingerprint() -> dict[str, Any]:
    """What makes two timings comparable: processor, GPU, torch and its threads."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "cpu": device_name(torch.device("cpu")),
        "gpus": gpus,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
