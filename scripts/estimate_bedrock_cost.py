"""Estimate what describing images with the bedrock provider costs, from the sample images, without
an AWS account: image tokens from each model's documented rule, prompt and reply tokens from the
request this code really sends (characters / 4), prices as published. docs/providers.md quotes the
output; `make smoke-aws` (with credentials) prints the real token counts Bedrock reports.

    .venv/bin/python scripts/estimate_bedrock_cost.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from filebatch.services.bedrock_provider import SYSTEM_PROMPT, TOOL_NAME, TOOL_SCHEMA, USER_PROMPT

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_IMAGES = sorted(p for p in (ROOT / "samples").iterdir() if p.suffix in {".jpg", ".png", ".webp"})
REPLY_FIXTURE = ROOT / "tests" / "fixtures" / "bedrock" / "converse_tool_use_image.json"

# Amazon Nova (v1) user guide, "Image understanding" > "Image to tokens conversion": sample
# resolutions and their approximate token counts. An image is rescaled to the closest of Nova's
# aspect ratios first; its estimate is the row closest in aspect ratio, then in area.
NOVA_IMAGE_TOKENS = {
    (900, 450): 800,
    (900, 900): 1300,
    (1400, 900): 1800,
    (1800, 900): 2400,
    (1300, 1300): 2600,
}
# Anthropic, "Vision" > "Calculate image costs": tokens = width * height / 750, after scaling an image
# down to at most 1568 px on its long edge and about 1.15 megapixels.
CLAUDE_LONG_EDGE, CLAUDE_MAX_PIXELS = 1568, 1_150_000
# Anthropic, tool use pricing: the tool-use system prompt Claude 4 models add with tool_choice "tool".
CLAUDE_TOOL_PROMPT_TOKENS = 313
# USD per 1,000 tokens, on-demand, us-east-1 (aws.amazon.com/bedrock/pricing): (input, output).
PRICES = {
    "amazon.nova-lite-v1:0": (0.00006, 0.00024),
    "global.anthropic.claude-haiku-4-5-20251001-v1:0": (0.001, 0.005),
    "us.anthropic.claude-haiku-4-5-20251001-v1:0": (0.0011, 0.0055),
}
CHARACTERS_PER_TOKEN = 4


def nova_image_tokens(width: int, height: int) -> int:
    long, short = max(width, height), min(width, height)
    ratio = long / short

    def distance(row: tuple[int, int]) -> tuple[float, float]:
        row_long, row_short = max(row), min(row)
        return (
            abs(math.log(ratio / (row_long / row_short))),
            abs(math.log(long * short / (row_long * row_short))),
        )

    return NOVA_IMAGE_TOKENS[min(NOVA_IMAGE_TOKENS, key=distance)]


def claude_image_tokens(width: int, height: int) -> int:
    scale = min(1.0, CLAUDE_LONG_EDGE / max(width, height), math.sqrt(CLAUDE_MAX_PIXELS / (width * height)))
    return math.ceil(round(width * scale) * round(height * scale) / 750)


def main() -> None:
    tool = {
        "name": TOOL_NAME,
        "description": "Record the description of the file.",
        "inputSchema": TOOL_SCHEMA,
    }
    prompt_characters = len(SYSTEM_PROMPT) + len(USER_PROMPT) + len(json.dumps(tool))
    prompt_tokens = math.ceil(prompt_characters / CHARACTERS_PER_TOKEN)
    content = json.loads(REPLY_FIXTURE.read_text())["output"]["message"]["content"]
    tool_input = next(block["toolUse"]["input"] for block in content if "toolUse" in block)
    reply_tokens = math.ceil(len(json.dumps(tool_input)) / CHARACTERS_PER_TOKEN)

    print(
        f"prompt (system, instruction, tool schema): {prompt_characters} characters, ~{prompt_tokens} tokens"
    )
    print(f"reply (the tool call's input, a typical one): ~{reply_tokens} tokens\n")
    print("| sample | pixels | Nova Lite image tokens (table) | Claude image tokens (w*h/750) |")
    print("| --- | --- | ---: | ---: |")
    nova, claude = [], []
    for path in SAMPLE_IMAGES:
        with Image.open(path) as image:
            width, height = image.size
        nova.append(nova_image_tokens(width, height))
        claude.append(claude_image_tokens(width, height))
        print(f"| {path.name} | {width}\u00d7{height} | {nova[-1]:,} | {claude[-1]:,} |")
    print(f"| mean | | {sum(nova) / len(nova):,.0f} | {sum(claude) / len(claude):,.0f} |\n")

    print("| model | input tokens / image | output tokens / image | USD per 1,000 images |")
    print("| --- | ---: | ---: | ---: |")
    for model, (input_price, output_price) in PRICES.items():
        image_tokens = sum(nova if model.startswith("amazon.") else claude) / len(SAMPLE_IMAGES)
        extra = 0 if model.startswith("amazon.") else CLAUDE_TOOL_PROMPT_TOKENS
        input_tokens = image_tokens + prompt_tokens + extra
        cost = 1000 * (input_tokens * input_price + reply_tokens * output_price) / 1000
        print(f"| {model} | {input_tokens:,.0f} | {reply_tokens:,} | {cost:,.2f} |")


if __name__ == "__main__":
    main()
