"""Schemathesis fuzzes the live reward service from its own OpenAPI schema: valid and invalid bodies alike must
never get a 5xx, and every answer must match the documented status codes, content types and schemas.

Bounded: ``MAX_EXAMPLES`` per operation and generation mode, derandomized (the same cases every run), with the
server's limits set low so that a generated body is cheap to score.
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

from caprl.reward.engine import RewardConfig, RewardEngine  # noqa: E402
from caprl.server.serve import BackgroundServer  # noqa: E402
from caprl.server.settings import ServerSettings  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def service(tiny_models):
    from caprl.readers.transformers import TransformersReader

    engine = RewardEngine(TransformersReader(tiny_models.reader), RewardConfig(seed=0))
    limits = ServerSettings(max_request_items=4, max_pending=64, max_caption_chars=400, max_questions_per_item=8)
    with BackgroundServer(engine, limits) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


# GET operations take no input, so they have no invalid cases to generate.
CASES = [
    ("POST", "/v1/rewards", GenerationMode.POSITIVE),
    ("POST", "/v1/rewards", GenerationMode.NEGATIVE),
    ("POST", "/get_reward", GenerationMode.POSITIVE),
    ("POST", "/get_reward", GenerationMode.NEGATIVE),
    ("GET", "/health", GenerationMode.POSITIVE),
    ("GET", "/metrics", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_5xx_and_answers_match_the_schema(api_schema, method, path, mode):
    operation = api_schema[path][method]
    examples = MAX_EXAMPLES if method == "POST" else 3

    # Schemathesis's own pytest loader does not run under this pytest; hypothesis drives its strategies directly.
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case):
        case.call_and_validate(checks=CHECKS)

    fuzz()
