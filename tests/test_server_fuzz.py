"""Schemathesis fuzzes the live reward service from its own OpenAPI schema: valid and invalid bodies alike must
never get a 5xx, and every answer must match the documented status codes, content types and schemas.

Bounded: ``MAX_EXAMPLES`` per operation and generation mode, derandomized (the same cases every run), with the
server's limits set low so that a generated body is cheap to score. The bulk endpoint is fuzzed a second time on a
service that also holds a (rule-based) VLM judge and a media root, where generated judge items reach media
decoding and path checks.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_server_support import RuleJudgeCaptioner  # noqa: E402

from caprl.reward.engine import RewardConfig, RewardEngine  # noqa: E402
from caprl.reward.judge import VLMJudge  # noqa: E402
from caprl.server.serve import BackgroundServer  # noqa: E402
from caprl.server.settings import ServerSettings  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def engine(tiny_models):
    from caprl.readers.transformers import TransformersReader

    return RewardEngine(TransformersReader(tiny_models.reader), RewardConfig(seed=0))


LIMITS = dict(max_request_items=4, max_pending=64, max_caption_chars=400, max_questions_per_item=8)


@pytest.fixture(scope="module")
def service(engine):
    with BackgroundServer(engine, ServerSettings(**LIMITS)) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


@pytest.fixture(scope="module")
def judge_schema(engine, tmp_path_factory):
    from caprl.synth.samples import make_image_sample

    root = tmp_path_factory.mktemp("fuzz_media")
    (root / "string").write_bytes(make_image_sample(0, size=56)[1])  # a name generators come up with
    limits = ServerSettings(**LIMITS, media_root=root, max_judge_frames=4)
    with BackgroundServer(engine, limits, judge=VLMJudge(RuleJudgeCaptioner(), retries=0)) as srv:
        yield schemathesis.openapi.from_url(srv.url + "/openapi.json")


# GET operations take no input, so they have no invalid cases to generate.
CASES = [
    ("POST", "/v1/rewards", GenerationMode.POSITIVE),
    ("POST", "/v1/rewards", GenerationMode.NEGATIVE),
    ("POST", "/get_reward", GenerationMode.POSITIVE),
    ("POST", "/get_reward", GenerationMode.NEGATIVE),
    ("GET", "/health", GenerationMode.POSITIVE),
    ("GET", "/metrics", GenerationMode.POSITIVE),
]


def _fuzz(schema, method: str, path: str, mode: GenerationMode, examples: int) -> None:
    operation = schema[path][method]

    # Schemathesis's own pytest loader does not run under this pytest; hypothesis drives its strategies directly.
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case):
        case.call_and_validate(checks=CHECKS)

    fuzz()


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_5xx_and_answers_match_the_schema(api_schema, method, path, mode):
    _fuzz(api_schema, method, path, mode, MAX_EXAMPLES if method == "POST" else 3)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda g: g.value)
def test_judge_service_no_5xx(judge_schema, mode):
    _fuzz(judge_schema, "POST", "/v1/rewards", mode, MAX_EXAMPLES)
