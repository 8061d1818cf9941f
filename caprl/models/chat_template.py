"""The Qwen-style (ChatML) chat template shared by the tiny captioner and reader.

It renders the same text a Qwen2/Qwen2.5-VL checkpoint's template renders, so code written against the tiny
models works unchanged on real ones: a default system turn, `<|im_start|>role ... <|im_end|>` turns, image and
video parts as `<|vision_start|><|image_pad|><|vision_end|>` (the processor expands the pad to the right number
of tokens), and `add_generation_prompt` opening an assistant turn.
"""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Kept as a raw string: the '\n' escapes are Jinja string-literal escapes, not Python ones.
CHAT_TEMPLATE = r"""{%- set ns = namespace(images=0, videos=0) -%}
{%- for message in messages -%}
{%- if loop.first and message['role'] != 'system' -%}
{{- '<|im_start|>system\nDEFAULT_SYSTEM_PROMPT<|im_end|>\n' -}}
{%- endif -%}
{{- '<|im_start|>' + message['role'] + '\n' -}}
{%- if message['content'] is string -%}
{{- message['content'] -}}
{%- elif message['content'] is not none -%}
{%- for part in message['content'] -%}
{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
{%- set ns.images = ns.images + 1 -%}
{%- if add_vision_id -%}{{- 'Picture ' + ns.images|string + ': ' -}}{%- endif -%}
{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
{%- elif part['type'] == 'video' or 'video' in part -%}
{%- set ns.videos = ns.videos + 1 -%}
{%- if add_vision_id -%}{{- 'Video ' + ns.videos|string + ': ' -}}{%- endif -%}
{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
{%- elif 'text' in part -%}
{{- part['text'] -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}""".replace("DEFAULT_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
