"""QA curation: a VLM writes MCQs about each item; a visual-dependency filter keeps those that need the media.

>>> from caprl.qa import FilterConfig, filter_qa, generate_qa, rethreshold
>>> generate_qa("data/shapes", vlm, "runs/qa-gen", k=5)                       # doctest: +SKIP
>>> filter_qa("runs/qa-gen", vlm, "runs/qa-filtered", config=FilterConfig())   # doctest: +SKIP
>>> rethreshold("runs/qa-filtered", hi=0.5, lo=0.25)                          # doctest: +SKIP

Modules: ``prompts`` (generation and answer prompts), ``parse`` (tolerant MCQ parsing), ``generate``, ``checks``
(option checks, duplicates), ``answer`` (the with/without-media legs), ``filter``, ``dataset`` (writing curated
datasets), ``oracle`` (a rule-based shapes-world VLM for tests and examples).
"""

from caprl.qa.filter import FilterConfig, FilterSummary, QuestionRecord, decide, filter_qa, read_stats, rethreshold
from caprl.qa.generate import GeneratedRecord, GenerateSummary, generate_qa, read_generated
from caprl.qa.parse import ParsedQuestions, parse_mcqs

__all__ = [
    "FilterConfig",
    "FilterSummary",
    "GenerateSummary",
    "GeneratedRecord",
    "ParsedQuestions",
    "QuestionRecord",
    "decide",
    "filter_qa",
    "generate_qa",
    "parse_mcqs",
    "read_generated",
    "read_stats",
    "rethreshold",
]
