"""How a resumable job over many items runs: which part of the items this process takes (``ShardSettings``: item
``i`` belongs to rank ``i mod world_size``; several processes or machines run the same command with their own
``--rank`` and write apart) and what a rerun does (``ResumeSettings``). ``annotate`` and ``qa`` take both."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from caprl.flags import flag_name


class ShardSettings(BaseModel):
    """This process's share of the items."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rank: int = Field(default=0, ge=0)
    """This process's part of the items (item index mod world-size == rank)."""
    world_size: int = Field(default=1, ge=1)
    """How many processes share the items."""

    @model_validator(mode="after")
    def _rank_in_world(self) -> ShardSettings:
        if not self.rank < self.world_size:
            rank, world = flag_name(ShardSettings, "rank"), flag_name(ShardSettings, "world_size")
            raise ValueError(f"{rank} {self.rank}: must be in [0, {world} {self.world_size})")
        return self


class ResumeSettings(BaseModel):
    """What a rerun of the same command does beyond skipping what its output already holds."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    retry_failed: bool = False
    """Ask again for this rank's items that failed (or gave nothing usable) the last time."""
    allow_config_change: bool = False
    """Resume even though the settings changed."""
