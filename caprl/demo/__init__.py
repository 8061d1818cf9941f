"""The CPU demo on the shapes world (``make demo`` / ``caprl demo``): GRPO against the real reader makes a tiny
captioner's captions measurably more useful. See :mod:`caprl.demo.pipeline`."""

from caprl.demo.cli import demo_command
from caprl.demo.pipeline import DemoSettings, run_demo

__all__ = ["DemoSettings", "demo_command", "run_demo"]
