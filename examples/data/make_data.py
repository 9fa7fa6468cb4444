"""Writes the two small data sets the examples ship, deterministically (no download, nothing copied from anywhere):

    python examples/data/make_data.py          # rewrites examples/data/corpus.txt and examples/data/sentiment.tsv
    python examples/data/make_data.py --check  # exits 1 if the shipped files differ from what this script writes

corpus.txt     ~150 KB of English-like short stories from a small story grammar (char_lm.py's training text).
sentiment.tsv  ~3000 labelled one-sentence movie reviews (sentiment.py's data set), built from templates where the
               label depends on word order: negation ("not good"), contrast ("good but dull" -> the clause after "but"
               decides), concession ("although good , dull" -> the main clause decides), intensifiers that do not
               change polarity. Many sentences have a twin with exactly the same words and the opposite label, so a
               bag-of-words model cannot solve the task.

Both are written by this project and dedicated to the public domain (CC0). Python's `random.Random(seed)` with an int
seed gives the same stream on every Python 3 version, so the files are reproducible.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
SENTIMENT = HERE / "sentiment.tsv"

# ------------------------------------------------------------------------------------------------ story corpus
PEOPLE = ["the old sailor", "the young baker", "the miller's daughter", "the king", "the queen", "a tired soldier",
          "the blacksmith", "a little girl", "the shepherd", "the fisherman", "the widow", "a clever fox",
          "the innkeeper", "the prince", "the farmer's son", "an old woman", "the carpenter", "the schoolmaster",
          "a wandering poet", "the knight"]
NAMES = ["Anna", "Tom", "Margaret", "John", "Elsie", "Peter", "Rose", "William", "Clara", "Henry", "Martha", "Jack"]
PLACES = ["the harbour", "the forest", "the market", "the mill", "the castle", "the church", "the river", "the hill",
          "the village", "the bridge", "the garden", "the inn", "the meadow", "the old road", "the well"]
THINGS = ["a silver key", "a loaf of bread", "a letter", "a lantern", "a golden ring", "an old map", "a basket of apples",
          "a wooden box", "a red shawl", "a small boat", "a fiddle", "a bag of coins", "a white horse", "a song"]
TIMES = ["One morning", "That evening", "Long ago", "At dawn", "In the winter", "On a rainy day", "At midnight",
         "The next day", "In the spring", "When the bells rang", "Before the harvest", "After the storm"]
VERBS_PLACE = ["walked to", "ran to", "rode to", "came back to", "looked across", "waited near", "slept by",
               "sang at", "hurried past", "wandered through"]
# (simple past, past participle)
VERBS_THING = [("found", "found"), ("lost", "lost"), ("carried", "carried"), ("gave away", "given away"),
               ("hid", "hidden"), ("sold", "sold"), ("mended", "mended"), ("stole", "stolen"),
               ("dropped", "dropped"), ("kept", "kept")]
FEELINGS = ["happy", "afraid", "angry", "sad", "tired", "hungry", "proud", "lonely", "glad", "worried"]
SAYINGS = ["I will come back tomorrow", "The river is rising", "Give me your hand", "We must go before dark",
           "Nobody will believe us", "It is only the wind", "Look what I found", "Do not be afraid",
           "The king is coming", "I have never seen such a thing", "Let us go home"]
QUESTIONS = ["Where have you been", "Who left the gate open", "Will you help me", "What is in the box",
             "Why are you so late", "Can you hear the bells", "Is it far to the sea"]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _story_sentence(rng: random.Random, hero: str) -> str:
    kind = rng.randrange(8)
    other = rng.choice([p for p in PEOPLE + NAMES if p != hero])
    place, thing = rng.choice(PLACES), rng.choice(THINGS)
    past, participle = rng.choice(VERBS_THING)
    if kind == 0:
        return f"{rng.choice(TIMES)}, {hero} {rng.choice(VERBS_PLACE)} {place}."
    if kind == 1:
        return f"{_cap(hero)} {past} {thing} near {place}."
    if kind == 2:
        return f"\"{rng.choice(SAYINGS)},\" said {hero}."
    if kind == 3:
        return f"{_cap(other)} was {rng.choice(FEELINGS)}, because {hero} had {participle} {thing}."
    if kind == 4:
        return f"{_cap(hero)} and {other} {rng.choice(VERBS_PLACE)} {place} together."
    if kind == 5:
        return f"When {hero} saw {thing}, {hero} felt {rng.choice(FEELINGS)}."
    if kind == 6:
        return f"{_cap(other)} asked {hero}, \"{rng.choice(QUESTIONS)}?\""
    return f"So {hero} {past} {thing} and {rng.choice(VERBS_PLACE)} {place}."


def make_corpus(size: int = 150_000, seed: int = 1234) -> str:
    rng = random.Random(seed)
    paragraphs, total = [], 0
    while total < size:
        hero = rng.choice(PEOPLE + NAMES)
        para = " ".join(_story_sentence(rng, hero) for _ in range(rng.randint(3, 7)))
        paragraphs.append(para)
        total += len(para) + 2
    return "\n\n".join(paragraphs) + "\n"


# ------------------------------------------------------------------------------------------------ sentiment set
SUBJECTS = ["the movie", "the film", "the plot", "the acting", "the story", "the ending", "the cast", "the script",
            "the music", "the dialogue", "the pacing", "the director's work"]
POSITIVE = ["good", "great", "excellent", "wonderful", "brilliant", "charming", "delightful", "clever", "moving",
            "enjoyable", "funny", "gripping"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "weak", "clumsy", "painful", "silly", "tedious", "bland",
            "messy"]
INTENSIFIERS = ["very", "really", "truly", "extremely", "quite", "so", "incredibly"]
COPULAS = ["was", "is", "seemed", "felt"]  # "not"/"never" only follow "was"/"is"
OPENERS = ["", "", "", "honestly ,", "overall ,", "in the end ,", "to be fair ,", "i think"]


def _predicate(rng: random.Random, polarity: int, negated: bool) -> str:
    """[not|never] [INT] ADJ whose meaning has `polarity` (+1/-1): negated, the adjective has the opposite one."""
    adj_pol = -polarity if negated else polarity
    words = [rng.choice(["not", "never"])] if negated else []
    if rng.random() < 0.4:
        words.append(rng.choice(INTENSIFIERS))
    words.append(rng.choice(POSITIVE if adj_pol > 0 else NEGATIVE))
    return " ".join(words)


def _clause(rng: random.Random, polarity: int, negated: bool) -> str:
    """SUBJ COP PREDICATE, e.g. "the plot was not very good" (polarity -1)."""
    copula = rng.choice(COPULAS[:2] if negated else COPULAS)
    return f"{rng.choice(SUBJECTS)} {copula} {_predicate(rng, polarity, negated)}"


def _review(rng: random.Random) -> tuple:
    """(sentence, label 1=positive 0=negative)."""
    label = rng.choice([1, -1])
    neg = lambda: rng.random() < 0.4  # noqa: E731
    form = rng.randrange(5)
    if form == 0:  # one clause
        text = _clause(rng, label, neg())
    elif form == 1:  # "A but B": B decides; A has the opposite polarity
        text = f"{_clause(rng, -label, neg())} but {_clause(rng, label, neg())}"
    elif form == 2:  # "although A , B": the main clause B decides
        text = f"although {_clause(rng, -label, neg())} , {_clause(rng, label, neg())}"
    elif form == 3:  # "A , although B": the main clause A decides
        text = f"{_clause(rng, label, neg())} , although {_clause(rng, -label, neg())}"
    else:  # "i expected it to be A but it was B"
        first = rng.choice(POSITIVE if label < 0 else NEGATIVE)
        text = f"i expected it to be {first} but it was {_predicate(rng, label, neg())}"
    opener = rng.choice(OPENERS[:-1] if form == 4 else OPENERS)
    return (f"{opener} {text}".strip(), 1 if label > 0 else 0)


def make_sentiment(count: int = 3000, seed: int = 4321) -> str:
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < count:
        text, label = _review(rng)
        if text not in seen:
            seen.add(text)
            rows.append(f"{label}\t{text}")
    return "label\ttext\n" + "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with the shipped files instead of writing them")
    args = p.parse_args(argv)
    outputs = {CORPUS: make_corpus(), SENTIMENT: make_sentiment()}
    stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} differs from what make_data.py writes", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text)
        print(f"wrote {path} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
