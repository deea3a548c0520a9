"""Prompt nouns: the offline textblob fallback on real sentences, and NLTK's perceptron path."""

from __future__ import annotations

import logging

import pytest

from synesthesia.core.v2a import tagger as tg


@pytest.fixture(autouse=True)
def _fresh_tagger():
    tg.reset_tagger()
    yield
    tg.reset_tagger()


def _force_fallback(monkeypatch):
    import nltk

    def missing(resource, *a, **k):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", missing)


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("A dog barks loudly by a red car while children play in the park", ["dog", "car", "children", "park"]),
        ("a man is chopping wood with an axe", ["man", "wood", "axe"]),
        ("Glass bottles shattering on the kitchen floor", ["glass bottles", "kitchen floor"]),
        ("A dog runs after another dog in the snow.", ["dog", "snow"]),
    ],
)
def test_fallback_tagger_finds_nouns_in_real_sentences(monkeypatch, prompt, expected):
    _force_fallback(monkeypatch)
    _, name = tg.get_tagger()
    assert "textblob" in name
    assert tg.extract_nouns(prompt) == expected


def test_fallback_is_logged_once(monkeypatch, caplog):
    _force_fallback(monkeypatch)
    with caplog.at_level(logging.INFO, logger=tg.__name__):
        tg.extract_nouns("a dog and a cat")
        tg.extract_nouns("a bird in a tree")
    msgs = [r.getMessage() for r in caplog.records if "PatternTagger" in r.getMessage() and "tagger:" in r.getMessage()]
    assert len(msgs) == 1


def test_comma_prompt_is_a_list_of_object_names(monkeypatch):
    def boom(tokens):  # a comma list must never be tagged
        raise AssertionError("tagger called on a comma list")

    assert tg.extract_nouns("dog, car", tagger=boom) == ["dog", "car"]
    assert tg.extract_nouns(" Red Car ,dog,, dog. ", tagger=boom) == ["red car", "dog"]
    # "barking" would not be a noun to a tagger, but in a list it is an object name as given
    assert tg.extract_nouns("barking, engine", tagger=boom) == ["barking", "engine"]


def test_empty_prompts():
    assert tg.extract_nouns(None) == []
    assert tg.extract_nouns("   ") == []


HAND_TAGGED = [
    [("the", "DT"), ("dog", "NN"), ("barks", "VBZ"), ("at", "IN"), ("the", "DT"), ("car", "NN")],
    [("a", "DT"), ("cat", "NN"), ("sleeps", "VBZ"), ("on", "IN"), ("the", "DT"), ("sofa", "NN")],
    [("the", "DT"), ("car", "NN"), ("honks", "VBZ"), ("near", "IN"), ("a", "DT"), ("tree", "NN")],
    [("birds", "NNS"), ("sing", "VBP"), ("in", "IN"), ("the", "DT"), ("garden", "NN")],
    [("a", "DT"), ("dog", "NN"), ("runs", "VBZ"), ("past", "IN"), ("the", "DT"), ("cat", "NN")],
    [("the", "DT"), ("engine", "NN"), ("roars", "VBZ"), ("loudly", "RB")],
]


def test_nltk_perceptron_path(monkeypatch):
    """NLTK's PerceptronTagger, trained here on hand-tagged sentences, is picked and used when installed."""
    import random

    import nltk
    from nltk.tag import perceptron

    random.seed(0)
    trained = perceptron.PerceptronTagger(load=False)
    trained.train([list(s) for s in HAND_TAGGED] * 3, nr_iter=8)

    monkeypatch.setattr(nltk.data, "find", lambda resource, *a, **k: resource)
    monkeypatch.setattr(perceptron, "PerceptronTagger", lambda *a, **k: trained)
    _, name = tg.get_tagger()
    assert name.startswith("nltk")
    # Seen words in a new sentence; the verb "barks" must not come out as a noun.
    assert tg.extract_nouns("the cat barks at the tree") == ["cat", "tree"]
    assert tg.extract_nouns("a dog sleeps near the engine") == ["dog", "engine"]
