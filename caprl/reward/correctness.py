"""The correctness term (CCCaption-style): the share of a caption's statements that a verifier confirms.

CapRL's QA reward pays for coverage: a wrong answer and a "cannot be answered" answer both score 0, so a caption
that guesses loses nothing by it. CCCaption (CVPR 2026) pairs that completeness reward with a correctness reward:
the caption split into atomic claims, each verified. Here the verifier is the scene graph of the shapes world,
where captions are written in the generator's sentences and every sentence is one atomic statement
(``caprl.synth.truth``): the term is true statements / (read statements + unread sentences), so a sentence the
checker cannot read earns nothing, and a caption that states nothing scores 0 (it has verified nothing).

For real media there is no scene graph; that verifier (a reader splitting claims, a VLM judge checking each) is not
built yet, and an item without ``scene`` is refused when the term is on.

>>> from caprl.reward.engine import RewardItem                                        # doctest: +SKIP
>>> verified_share(RewardItem(caption="There is 1 object in total.", mcqs=mcqs, scene=scene))  # doctest: +SKIP
1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caprl.reward.engine import RewardItem

NO_SCENE = (
    "the correctness term needs a verifier: items must carry their shapes-world 'scene' (Sample.metadata['scene']); "
    "real media have no verifier yet, so set correctness_weight to 0 for them"
)


def verified_share(item: RewardItem) -> float:
    """True statements over everything the caption says (statements read plus sentences unread); 0 for nothing."""
    from caprl.synth.truth import check_caption

    if item.scene is None:
        raise ValueError(f"item {item.id!r}: {NO_SCENE}")
    truth = check_caption(item.scene, item.caption)
    said = len(truth.statements) + len(truth.unread)
    return sum(s.true for s in truth.statements) / said if said else 0.0
