"""Nouns of a text prompt: the object names that VTA-SAM grounds in the frames (sec. II-C).

The paper takes the nouns of the prompt with NLTK's part-of-speech tagger. NLTK's tagger data
(``averaged_perceptron_tagger_eng``) is not a Python package; when it is installed (``synesthesia
download`` fetches it, or ``python -m nltk.downloader averaged_perceptron_tagger_eng``) it is used.
Without it we fall back to textblob's bundled lexicon tagger (``textblob.en.taggers.PatternTagger``,
the data ships inside the textblob wheel, Penn Treebank tags like NLTK's). Which one runs is logged
once.

Rules of :func:`extract_nouns` (documented in ``docs/grounding_and_metrics.md``):

* A prompt containing a comma is always a list of object names: ``"dog, car"`` -> ``["dog", "car"]``;
  each item is taken whole (``"red car"`` stays ``"red car"``), no tagging.
* Otherwise the prompt is tokenised and tagged; tokens tagged ``NN``, ``NNS``, ``NNP`` or ``NNPS``
  are nouns. Consecutive noun tokens form one compound name (``"kitchen floor"``,
  ``"glass bottles"``), so a detector receives the whole object name. Adjectives are not kept.
* Words are lower-cased and kept as written (no lemmatisation: ``"dogs"`` stays ``"dogs"``; the
  detector and CLIP handle plurals). Duplicates are dropped, first occurrence order kept.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Callable, Sequence

log = logging.getLogger(__name__)

NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})

# A token is a word (letters, inner apostrophes/hyphens), a number, or one punctuation mark.
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:['\-][A-Za-z]+)*|[0-9]+(?:\.[0-9]+)?|[^\sA-Za-z0-9]")

Tagger = Callable[[Sequence[str]], list]  # tokens -> [(token, penn_tag), ...]

_lock = threading.Lock()
_tagger: Tagger | None = None
_tagger_name: str | None = None


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word, number and punctuation tokens (no tagger data needed)."""
    return _TOKEN_RE.findall(text)


def _nltk_tagger() -> Tagger | None:
    try:
        import nltk
        from nltk.tag.perceptron import PerceptronTagger
    except ImportError:
        return None
    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
    except LookupError:
        return None
    tagger = PerceptronTagger()
    return lambda tokens: tagger.tag(list(tokens))


def _pattern_tagger() -> Tagger:
    try:
        from textblob.en.taggers import PatternTagger
    except ImportError as e:  # textblob is a core dependency; this only happens in broken installs
        from ..errors import InputError

        raise InputError(f"no part-of-speech tagger available ({e}): pip install textblob") from None
    tagger = PatternTagger()

    def tag(tokens: Sequence[str]) -> list:
        tokens = [t for t in tokens if t.strip()]
        if not tokens:
            return []
        # tokenize=False: pattern splits on spaces, so our tokenisation is kept exactly.
        return [(w, t) for w, t in tagger.tag(" ".join(tokens), tokenize=False)]

    return tag


def get_tagger() -> tuple[Tagger, str]:
    """Return ``(tag_fn, name)``: NLTK's perceptron tagger if its data is installed, else textblob's."""
    global _tagger, _tagger_name
    with _lock:
        if _tagger is None:
            tagger = _nltk_tagger()
            if tagger is not None:
                _tagger, _tagger_name = tagger, "nltk averaged_perceptron_tagger_eng"
            else:
                _tagger, _tagger_name = _pattern_tagger(), "textblob PatternTagger (offline lexicon)"
                log.info(
                    "nltk tagger data 'averaged_perceptron_tagger_eng' not installed; "
                    "using textblob's offline PatternTagger for prompt nouns"
                )
            log.info("part-of-speech tagger: %s", _tagger_name)
        return _tagger, _tagger_name


def reset_tagger() -> None:
    """Forget the chosen tagger (after installing NLTK data, or in tests)."""
    global _tagger, _tagger_name
    with _lock:
        _tagger, _tagger_name = None, None


def nouns_from_tags(tagged: Sequence[tuple[str, str]]) -> list[str]:
    """Group consecutive noun-tagged tokens into lower-case names, deduplicated in order."""
    names: list[str] = []
    current: list[str] = []
    for word, tag in list(tagged) + [("", "END")]:
        if tag in NOUN_TAGS and re.match(r"[A-Za-z]", word):
            current.append(word.lower())
            continue
        if current:
            name = " ".join(current)
            if name not in names:
                names.append(name)
            current = []
    return names


def split_object_list(prompt: str) -> list[str]:
    """``"dog, car ,  red car"`` -> ``["dog", "car", "red car"]`` (lower-case, deduplicated)."""
    names: list[str] = []
    for item in prompt.split(","):
        name = " ".join(item.strip().strip(".;:").lower().split())
        if name and name not in names:
            names.append(name)
    return names


def extract_nouns(prompt: str | None, tagger: Tagger | None = None) -> list[str]:
    """The object names of ``prompt`` (see the module docstring for the rules).

    ``tagger`` is any ``tokens -> [(token, tag)]`` callable with Penn tags; by default the one of
    :func:`get_tagger`.
    """
    if prompt is None:
        return []
    if not isinstance(prompt, str):
        from ..errors import InputError

        raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
    prompt = prompt.strip()
    if not prompt:
        return []
    if "," in prompt:
        return split_object_list(prompt)
    if tagger is None:
        tagger, _ = get_tagger()
    return nouns_from_tags(tagger(tokenize(prompt)))
