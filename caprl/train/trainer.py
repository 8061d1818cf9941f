"""``CaptionGRPOTrainer``: TRL's ``GRPOTrainer`` with images *and videos* encoded by caprl, and RLOO advantages.

What TRL does unchanged: sampling groups of captions, calling the reward function, group advantages, the clipped
policy loss (``loss_type``), the optimizer, checkpoints and resume, logging.

What this subclass adds:

- **Media.** TRL only collects images from dataset columns and never video. Here dataset rows carry a
  ``sample_id``; the trainer loads the sample's media (``TrainData.media``), encodes each prompt with the processor
  (:class:`caprl.train.media.MediaEncoder`: images, or sampled frames with their real times), generates with those
  tensors, and passes the same per-row tensors to every log-prob pass (policy, old policy, reference) with
  ``mm_token_type_ids`` laid out for [left-padded prompt | completion], so 3-D rope positions match generation.
  Rows keep their media tensors apart (a list TRL shuffles and splits with the batch) and are concatenated per
  micro-batch. Images and videos go through the same path, so mixed batches work.
- **RLOO.** With ``advantage="rloo"`` TRL computes ``r - mean(group)`` without std scaling; multiplying by
  ``G / (G - 1)`` turns that into ``r - mean(others)``, the leave-one-out baseline CapRL uses.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from caprl.train.data import TrainData
from caprl.train.media import EncodedPrompt, MediaEncoder, collate_media, token_types

ROWS_KEY = "caprl_rows"


class CaptionGRPOTrainer(GRPOTrainer):
    """GRPO/RLOO on a VLM captioner, for image and video prompts (see the module docstring)."""

    def __init__(self, *args: Any, train_data: TrainData, advantage: str = "rloo", **kwargs: Any):
        self.train_data = train_data
        self.advantage = advantage
        self._batch_ids: list[str] | None = None  # sample ids of the batch being generated
        self._rows: list[EncodedPrompt] | None = None  # encoded prompt rows of the batch in the current pass
        grpo_args = kwargs.get("args")
        if grpo_args is not None and getattr(grpo_args, "use_vllm", False):
            raise ValueError("caprl's trainer generates with transformers; vLLM rollouts are not wired for media yet")
        super().__init__(*args, **kwargs)
        self.encoder = MediaEncoder(self.processing_class)

    # -- generation -------------------------------------------------------------------------------------------------

    def _readable_inputs(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The batch with every sample whose media cannot be read replaced, in all its rows, by the next readable
        sample: the group structure (G consecutive rows per prompt) stays whole, and the step goes on."""
        data = self.train_data
        ids = dict.fromkeys(x["sample_id"] for x in inputs)
        swap = {sid: data.substitute(sid) for sid in ids if not data.readable(sid)}
        if not swap:
            return inputs
        return [{**x, **data.row(swap[x["sample_id"]])} if x["sample_id"] in swap else x for x in inputs]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = self._readable_inputs(inputs)
        self._batch_ids = [x["sample_id"] for x in inputs]
        try:
            out = super()._generate_and_score_completions(inputs)
            out[ROWS_KEY] = self._rows
        finally:
            self._batch_ids, self._rows = None, None
        if self.advantage == "rloo" and self.model.training:
            g = self.num_generations
            out["advantages"] = out["advantages"] * (g / (g - 1))
        return out

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict[str, Any]]:
        if self._batch_ids is None:
            raise RuntimeError("prompts reached the trainer without their sample ids")
        encoded: dict[str, EncodedPrompt] = {}
        rows = []
        # A prompt repeats num_generations times in a batch: encode each sample's media once.
        for prompt, sid in zip(prompts, self._batch_ids, strict=True):
            if sid not in encoded:
                encoded[sid] = self.encoder.encode(prompt, self.train_data.media(sid))
            rows.append(encoded[sid])
        self._rows = rows
        fields: dict[str, Any] = collate_media([r.media for r in rows])
        types = [r.token_types for r in rows]
        if all(t is not None for t in types):
            fields["mm_token_type_ids"] = types  # a list of lists: TRL left-pads it like the prompt ids
        # No images returned: TRL's own image path would re-encode them for the log-prob pass without videos.
        return [r.input_ids for r in rows], None, fields

    # -- resume -----------------------------------------------------------------------------------------------------

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # transformers' Trainer loads a checkpoint's safetensors as a raw state dict, but save_pretrained wrote
        # Qwen-VL weights under their legacy names (visual.*, model.layers.*): every key misses, only a warning is
        # logged and training goes on from the *initial* weights. Loading through from_pretrained applies the
        # checkpoint conversion; strict loading makes any remaining mismatch an error.
        from pathlib import Path

        target = model if model is not None else self.model
        full = any(
            (Path(resume_from_checkpoint) / n).exists() for n in ("model.safetensors", "model.safetensors.index.json")
        )
        if not full or self.is_fsdp_enabled or self.is_deepspeed_enabled or hasattr(target, "peft_config"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        param = next(target.parameters())
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=param.dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)
        del loaded

    # -- log-probs --------------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        self._rows = inputs.get(ROWS_KEY)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._rows = None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **_media_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        rows = self._rows
        if rows is None:
            raise RuntimeError("a log-prob pass without the batch's encoded prompts would ignore the media")
        if len(rows) != input_ids.size(0):
            raise RuntimeError(f"{len(rows)} encoded prompts for a batch of {input_ids.size(0)} sequences")
        return per_token_logps(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            rows,
            batch_size=batch_size,
            compute_entropy=compute_entropy,
            compute_aux_loss=compute_aux_loss,
            autocast=self.accelerator.autocast,
        )


def per_token_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    rows: list[EncodedPrompt],
    *,
    batch_size: int | None = None,
    compute_entropy: bool = False,
    compute_aux_loss: bool = False,
    autocast=None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row, with the rows' media.

    The model must carry TRL's fused LM head (``add_fused_lm_head``), as the trainer's policy does: it returns
    temperature-scaled log-probs of the labels without materialising the full logits.
    """
    from contextlib import nullcontext

    batch_size = batch_size or input_ids.size(0)
    device = input_ids.device
    logps, entropies, aux = [], [], []
    for start in range(0, input_ids.size(0), batch_size):
        end = min(start + batch_size, input_ids.size(0))
        ids, mask = input_ids[start:end], attention_mask[start:end]
        chunk = rows[start:end]
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        inputs.update({k: v.to(device) for k, v in collate_media([r.media for r in chunk]).items()})
        types = token_types([r.token_types for r in chunk], ids.size(1), logits_to_keep, device)
        if types is not None:
            inputs["mm_token_type_ids"] = types
        if compute_aux_loss:
            inputs["output_router_logits"] = True
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, :-logits_to_keep] = -100
        with autocast() if autocast is not None else nullcontext():
            out = model(**inputs, labels=labels, fused_lm_head=True)
        logps.append(out.log_probs[:, -logits_to_keep:])
        if compute_entropy:
            entropies.append(out.entropy[:, -logits_to_keep:])
        if compute_aux_loss:
            aux.append(out.aux_loss)
    return (
        torch.cat(logps, dim=0),
        torch.cat(entropies, dim=0) if compute_entropy else None,
        torch.stack(aux).mean() if compute_aux_loss else None,
    )
