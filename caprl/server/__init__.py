"""The reward service: one reward engine (and/or a VLM judge) behind HTTP, and its client.

- ``caprl.server.app.create_app`` — the FastAPI app (auth, metrics middleware, error bodies) over
  ``caprl.server.routes`` (bulk ``/v1/rewards``, CapRL ``/get_reward``, ``/health``, ``/metrics``) and
  ``caprl.server.state`` (the models, coalescers and status); ``caprl.server.serve`` runs it
  (``caprl reward serve``, from ``caprl.server.cli``, on the command line);
- ``caprl.server.judging`` — judge items: media checked under the media root, loaded, scored by the VLM judge;
- ``caprl.server.client`` — ``AsyncRewardClient`` / ``RewardClient`` for trainers: several servers, retries;
- ``caprl.server.batcher`` — coalescing requests into engine batches with bounded in-flight work;
- ``caprl.server.parse`` — request bodies to engine items, each bad item named by index and field.

Importing this package (or the client) does not import FastAPI or uvicorn.
"""

from caprl.server.client import (
    AsyncRewardClient,
    RewardClient,
    RewardRequestError,
    RewardServiceError,
    RewardServiceUnavailable,
)
from caprl.server.protocol import JudgeItemInput, JudgeRewardResult

__all__ = [
    "AsyncRewardClient",
    "JudgeItemInput",
    "JudgeRewardResult",
    "RewardClient",
    "RewardRequestError",
    "RewardServiceError",
    "RewardServiceUnavailable",
]
