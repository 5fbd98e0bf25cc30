"""The DC² prompts (Wang et al., AAAI 2025; wording as in the authors' public code), the
multiple-choice prompt of HR-Bench, and the object-list parser.

The prompts are data the method is defined by, so they keep the authors' wording, including
its grammar, except for one obvious typo ("repectively").
"""

from __future__ import annotations

import json
import re
from typing import Any

CAPTION = "Please describe this image."

REFINE = ("Give you patch captions which describe the sub patch of the image respectively, you are required "
          "to combine all the information to generate refined caption about the image. "
          'Patch Captions: "{captions}"\n')

EXTRACT = """# System message
You are a language assistant that helps to extract information from given sentences.
# Prompt
Given a sentence which describe the image, extract the existent entities within the sentence for me. Extract the common objects and summarize them as general categories without repetition, merge essentially similar objects. Avoid extracting abstract or non-specific entities. Only extract concrete, certainly existent objects that fall in general categories and are described in a certain tone in the sentece. Extract entity in a JSON DICT. Output all the extracted types of items in one line and separate each object type with a period. You should ignore the singular and plural forms of nouns, and all extracted objects should be represented in singular form. If there is noting to output, then output a single empty list [].
Examples:
Sentence: "The bus is surrounded by a few other vehicles, including a car and a truck, which are driving in the same direction as the bus. A person can be seen standing on the sidewalk, possibly waiting for the bus or observing the scene."
Output: {{"object_list": ["bus","car","truck","person"]}}
Input:
Sentence: "{caption}"
Output: """

# the paper's "more information ... answer NONE" prompt, asked of each relevant crop
MORE_INFO = ('Question: "{question}" You should provide more information to help you answer the question '
             "and explain the reasons. If no any helpful information, you should answer NONE.")

FINAL = ("Here are some useful information to help you answer the question: {info}\n\n"
         "Query: {question}\nJust answer the question only.")

CROPS = "The following images are high-resolution crops of regions of the first image that may matter.\n\n{question}"


def multiple_choice(question: str, options: dict[str, str]) -> str:
    """HR-Bench's multiple-choice prompt (as in its VLMEvalKit evaluation)."""
    text = f"{question}\n"
    if options:
        text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
        text += "Please select the correct answer from the options above. \n"
    return text


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_ARTICLE = re.compile(r"^(?:a|an|the|some|one)\s+")


def normalize_object(name: str) -> str:
    """Lower case, single spaces, no leading article or trailing punctuation."""
    text = " ".join(str(name).lower().replace("_", " ").split()).strip(" .,;:!\"'")
    return _ARTICLE.sub("", text)


def parse_objects(text: str) -> tuple[list[str] | None, str | None]:
    """(objects, None) from a reply holding ``{"object_list": [...]}`` or a bare list, repaired
    where it is only slightly off (code fences, single quotes, trailing commas, prose around it);
    (None, reason) when no list can be recovered. Never raises."""
    body = text or ""
    m = _FENCE.search(body)
    if m:
        body = m.group(1)
    candidates = []
    start = body.find("{")
    if start >= 0:
        candidates.append(body[start: body.rfind("}") + 1])
    lb = body.find("[")
    if lb >= 0:
        candidates.append(body[lb: body.rfind("]") + 1])
    for cand in candidates:
        for attempt in (cand, _repair(cand)):
            try:
                obj: Any = json.loads(attempt)
            except (json.JSONDecodeError, RecursionError):
                continue
            items = obj.get("object_list", obj.get("objects")) if isinstance(obj, dict) else obj
            if isinstance(items, list):
                names = [normalize_object(x) for x in items if isinstance(x, (str, int, float))]
                return list(dict.fromkeys(n for n in names if n)), None
    return None, "no JSON object list in the reply"


def _repair(text: str) -> str:
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", '"', text)  # single-quoted strings, not apostrophes
    return re.sub(r",\s*([\]}])", r"\1", text)
