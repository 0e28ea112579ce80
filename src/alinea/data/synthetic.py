"""Synthetic demo data: a seeded generator of the corpus, prompts and demonstrations that `make demo` trains on.

The demo must run the whole RLHF loop on a 2-core CPU in minutes with no download, so the data is generated here,
from templates, with the standard library only. Three things are made:

- a **corpus** for pretraining a tiny language model: English reviews (products, restaurants, films, books), short
  stories, conversational replies (a question, then a helpful answer) and how-to / factual notes. Every document
  has a sentiment (positive, negative or neutral) carried by its word choice and its content, so that a reward can
  later steer the model towards one of them;
- **prompts** for the RL and feedback stages, mostly English, about 10% in French, Spanish and Malagasy;
- **demonstrations** for SFT: a prompt (or a short chat) and an ideal, positive-leaning answer in the same language.

Sentences are built compositionally: a template such as ``"{aspect} is {pos}."`` has its slots filled from lexicons
(names, places, products, adjectives by sentiment, time phrases, ...). A slot written ``{a:pos}`` also gets its
article ("an excellent", "a superb"). Within one document a slot does not repeat a value while unused values are
left, so a review does not praise "the plot" twice.

`sentiment_lexicon()` and `score_sentiment()` give later stages a simple automated reward / simulated annotator
built from the same words the generator uses.

Everything is driven by `random.Random` instances seeded from the caller's seed (never the global random state):
the same seed gives byte-identical output on every machine; a different seed gives different output.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from alinea.data.jsonl import write_text

SENTIMENTS = ("positive", "negative", "neutral")
"""The sentiment every corpus document has, and the values of a prompt's `target:` tag."""

KINDS = ("review", "story", "reply", "note")
"""Document and task kinds: the first tag of every prompt and demonstration."""

LANGUAGES = ("en", "fr", "es", "mg")
"""Languages of prompts and demonstrations: English, French, Spanish, Malagasy."""

FOREIGN_SHARE = 0.10
"""Share of prompts and demonstrations not in English, split evenly between French, Spanish and Malagasy."""

MESSAGES_SHARE = 0.15
"""Share of demonstrations given as a multi-turn chat (`messages`) instead of a single `prompt`."""


@dataclass(frozen=True)
class Document:
    """One corpus document with the labels it was generated from."""

    kind: str
    """One of `KINDS`."""
    topic: str
    """What it is about: product, restaurant, film, book, howto, facts or story."""
    sentiment: str
    """One of `SENTIMENTS`."""
    text: str
    """The document: 2 to 8 sentences; a reply is a `Q:` line and an `A:` line. Never contains a blank line."""


# ---------------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------------


def generate_documents(n_documents: int = 6000, seed: int = 0) -> list[Document]:
    """`n_documents` labelled corpus documents; kinds are drawn 38% review, 30% story, 18% reply, 14% note and
    sentiments uniformly."""
    rng = random.Random(f"alinea-corpus-{seed}")
    builders = {
        "review": _review_document,
        "story": _story_document,
        "reply": _reply_document,
        "note": _note_document,
    }
    documents = []
    for _ in range(n_documents):
        kind = rng.choices(KINDS, weights=(38, 30, 18, 14))[0]
        sentiment = rng.choice(SENTIMENTS)
        documents.append(builders[kind](rng, sentiment))
    return documents


def generate_corpus(n_documents: int = 6000, seed: int = 0) -> list[str]:
    """The text of `generate_documents(n_documents, seed)`: about 2.2 MB of English at the default size."""
    return [document.text for document in generate_documents(n_documents, seed)]


def generate_foreign_documents(n_documents: int, seed: int = 0) -> list[str]:
    """`n_documents` short French, Spanish and Malagasy documents (in equal parts, shuffled) for the pretraining
    corpus, written from the same banks as the foreign prompts and answers: half are an answer alone (2 to 5
    sentences), half a `Q:` line with the request and an `A:` line with the answer, like the English replies.

    The default corpus is English only; without some text in the other languages a tiny model cannot learn to answer
    in them from the few demonstrations SFT sees."""
    rng = random.Random(f"alinea-foreign-corpus-{seed}")
    codes = [LANGUAGES[1 + index % 3] for index in range(n_documents)]
    rng.shuffle(codes)
    documents = []
    for language in codes:
        task = _foreign_task(rng, language)
        answer = " ".join(_foreign_response(rng, task, rng.randint(2, 5)))
        documents.append(f"Q: {task.prompt}\nA: {answer}" if rng.random() < 0.5 else answer)
    return documents


def generate_prompts(n: int = 200, seed: int = 0, *, foreign_share: float = FOREIGN_SHARE) -> list[dict]:
    """`n` prompt records: `{"type": "prompt", "id", "prompt", "language", "tags"}`, `foreign_share` of them in
    French, Spanish and Malagasy.

    Tags are `[kind, "target:<sentiment>", "lang:<code>"]`; the target (half positive, a quarter each negative and
    neutral) is the sentiment a reward could steer the answer towards; the prompt text itself never asks for one.
    """
    rng = random.Random(f"alinea-prompts-{seed}")
    records = []
    for index, language in enumerate(_languages(rng, n, foreign_share)):
        task = _task(rng, language)
        target = rng.choices(SENTIMENTS, weights=(2, 1, 1))[0]
        records.append(
            {
                "type": "prompt",
                "id": f"p-{index:06d}",
                "prompt": task.prompt,
                "language": language,
                "tags": [task.kind, f"target:{target}", f"lang:{language}"],
            }
        )
    return records


def generate_demonstrations(n: int = 300, seed: int = 0, *, foreign_share: float = FOREIGN_SHARE) -> list[dict]:
    """`n` demonstration records: a prompt and an ideal answer (1 to 4 sentences) in the prompt's language
    (`foreign_share` of them French, Spanish and Malagasy).

    English answers are positive (80%) or neutral (20%); the other languages' answers are positive. About 15% of the
    records carry `messages` (an optional system turn, then user, assistant, user) instead of `prompt`; their
    `response` answers the last user turn: a shorter version of the assistant's answer, or what happens next in a
    story.
    """
    rng = random.Random(f"alinea-demonstrations-{seed}")
    records = []
    for index, language in enumerate(_languages(rng, n, foreign_share)):
        task = _task(rng, language)
        target = rng.choices(("positive", "neutral"), weights=(4, 1))[0] if language == "en" else "positive"
        record: dict = {"type": "demonstration", "id": f"d-{index:06d}"}
        if rng.random() < MESSAGES_SHARE:
            follow_up, mode = _follow_up(rng, task)
            if mode == "next":
                # Tell a story of five sentences; the assistant stops before its last event and its ending.
                story = _respond(rng, task, target, 5)
                first_answer, answer = story[:-2], story[-2:]
            else:
                first_answer = _respond(rng, task, target, rng.randint(3, 4))
                answer = _shorten(task, first_answer)
            messages = (
                [{"role": "system", "content": _SYSTEM_PROMPTS[language]}] if rng.random() < 0.3 else []
            )
            messages += [
                {"role": "user", "content": task.prompt},
                {"role": "assistant", "content": " ".join(first_answer)},
                {"role": "user", "content": follow_up},
            ]
            record["messages"] = messages
        else:
            record["prompt"] = task.prompt
            answer = _respond(rng, task, target, rng.choices((1, 2, 3, 4), weights=(1, 2, 4, 4))[0])
        record["response"] = " ".join(answer)
        record["language"] = language
        record["tags"] = [task.kind, f"target:{target}", f"lang:{language}"]
        records.append(record)
    return records


def sentiment_lexicon() -> dict[str, set[str]]:
    """The positive and negative words the generator uses (all four languages, lower case), for simple rewards."""
    return {"positive": set(_POSITIVE_WORDS), "negative": set(_NEGATIVE_WORDS)}


def score_sentiment(text: str) -> float:
    """A sentiment score in (-1, 1): `(positive - negative) / (positive + negative + 1)` over lexicon words.

    A lexicon word within three words after a negation in the same clause ("not", "never", "no", "pas", "tsy", ...)
    counts for the other side, so "not good" is negative and "not bad" positive. One positive word scores 0.5, three
    score 0.75, and a text with no lexicon word scores 0.
    """
    positive = negative = 0
    lowered = text.lower().replace("\u2019", "'").replace("n't", " not")
    for clause in _CLAUSE_BREAK.split(lowered):
        words = _WORD.findall(clause)
        for index, word in enumerate(words):
            polarity = 1 if word in _POSITIVE_WORDS else -1 if word in _NEGATIVE_WORDS else 0
            if polarity and any(before in _NEGATORS for before in words[max(0, index - 3) : index]):
                polarity = -polarity
            positive += polarity > 0
            negative += polarity < 0
    return (positive - negative) / (positive + negative + 1)


def write_demo_data(
    out_dir: Path,
    *,
    n_documents: int = 6000,
    n_prompts: int = 200,
    n_demonstrations: int = 300,
    seed: int = 0,
    n_refusals: int = 0,
    foreign_share: float = FOREIGN_SHARE,
    n_foreign_documents: int = 0,
    n_harmful_prompts: int = 0,
    demonstration_foreign_share: float | None = None,
) -> dict[str, Path]:
    """Write `corpus.txt` (documents separated by a blank line), `prompts.jsonl` and `demonstrations.jsonl` (UTF-8,
    one JSON object a line) into `out_dir`, each atomically; return their paths keyed `corpus`, `prompts`,
    `demonstrations`. With `n_refusals`, that many refusals of harmful requests (`alinea.data.redteam`, never the
    evaluation red-team prompts themselves) are appended to the demonstrations. `foreign_share` is the share of
    prompts and demonstrations in French, Spanish and Malagasy; `n_foreign_documents` documents in those languages
    (`generate_foreign_documents`) are mixed into the corpus at seeded positions. `n_harmful_prompts` harmful requests
    (`alinea.data.redteam.generate_harmful_prompts`, never the evaluation red-team prompts) are appended to the prompts,
    so that the loop's harmlessness feedback and cost constraint have something to work on.
    `demonstration_foreign_share` sets the demonstrations' share apart from the prompts' (None: `foreign_share`):
    a tiny model needs more foreign demonstrations than its users' share of foreign prompts to answer in their
    language."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = generate_corpus(n_documents, seed)
    if n_foreign_documents:
        mixer = random.Random(f"alinea-corpus-mix-{seed}")
        for document in generate_foreign_documents(n_foreign_documents, seed):
            documents.insert(mixer.randint(0, len(documents)), document)
    corpus = "\n\n".join(documents) + "\n"
    prompt_records = generate_prompts(n_prompts, seed, foreign_share=foreign_share)
    if n_harmful_prompts:
        from alinea.data.redteam import generate_harmful_prompts, generate_redteam_prompts

        held_out = [p["prompt"] for p in generate_redteam_prompts(0)]
        prompt_records += generate_harmful_prompts(n_harmful_prompts, seed + 2, exclude=held_out)
    prompts = _jsonl(prompt_records)
    if demonstration_foreign_share is None:
        demonstration_foreign_share = foreign_share
    demo_records = generate_demonstrations(n_demonstrations, seed, foreign_share=demonstration_foreign_share)
    if n_refusals:
        from alinea.data.redteam import generate_redteam_prompts, generate_refusal_demonstrations

        held_out = [p["prompt"] for p in generate_redteam_prompts(0)]
        demo_records += generate_refusal_demonstrations(n_refusals, seed + 1, exclude=held_out)
    demonstrations = _jsonl(demo_records)
    paths = {
        "corpus": out_dir / "corpus.txt",
        "prompts": out_dir / "prompts.jsonl",
        "demonstrations": out_dir / "demonstrations.jsonl",
    }
    for name, text in (("corpus", corpus), ("prompts", prompts), ("demonstrations", demonstrations)):
        write_text(paths[name], [text])
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# Template machinery
# ---------------------------------------------------------------------------------------------------------------------

Slots = Mapping[str, "str | Sequence[str]"]
"""Slot name -> a fixed value (one per document) or a list to draw from at each use."""

_SLOT = re.compile(r"\{(a:)?([a-z0-9_]+)\}")
_AN_EXCEPTIONS = ("hour", "honest", "honor", "heir")
_A_EXCEPTIONS = ("uni", "use", "usu", "uti", "eu", "one", "once")


def _article(phrase: str) -> str:
    """The indefinite article for `phrase`: "an" before a vowel sound, else "a"."""
    word = phrase.lower()
    if word.startswith(_AN_EXCEPTIONS):
        return "an"
    if word.startswith(_A_EXCEPTIONS):
        return "a"
    return "an" if word[:1] in "aeiou" else "a"


def _render(rng: random.Random, template: str, slots: Slots, used: dict[str, set[str]]) -> str:
    """Fill every `{slot}` and `{a:slot}` in `template`; values may hold slots themselves."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        value = slots[name]
        if not isinstance(value, str):
            seen = used.setdefault(name, set())
            value = rng.choice([option for option in value if option not in seen] or value)
            seen.add(value)
        if "{" in value:
            value = _render(rng, value, slots, used)
        return f"{_article(value)} {value}" if match.group(1) else value

    return _SLOT.sub(fill, template)


def _capitalize(sentence: str) -> str:
    """Upper-case the first letter (after any opening punctuation such as "¡" or a quote)."""
    for index, char in enumerate(sentence):
        if char.isalpha():
            return sentence[:index] + char.upper() + sentence[index + 1 :]
    return sentence


def _sentences(
    rng: random.Random,
    templates: Sequence[str],
    k: int,
    slots: Slots,
    used: dict[str, set[str]],
    *,
    ordered: bool = False,
) -> list[str]:
    """`k` different templates from `templates` (kept in order when `ordered`), rendered as sentences."""
    k = min(k, len(templates))
    chosen = sorted(rng.sample(range(len(templates)), k)) if ordered else rng.sample(range(len(templates)), k)
    return [_capitalize(_render(rng, templates[index], slots, used)) for index in chosen]


def _languages(rng: random.Random, n: int, foreign_share: float = FOREIGN_SHARE) -> list[str]:
    """`n` language codes: `foreign_share` of them French, Spanish and Malagasy in equal parts, the rest English,
    shuffled."""
    if not 0.0 <= foreign_share <= 1.0:
        raise ValueError(f"foreign_share must be between 0 and 1, got {foreign_share}")
    n_foreign = round(n * foreign_share)
    codes = [LANGUAGES[1 + index % 3] for index in range(n_foreign)]
    codes += ["en"] * (n - n_foreign)
    rng.shuffle(codes)
    return codes


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


# ---------------------------------------------------------------------------------------------------------------------
# English lexicons
# ---------------------------------------------------------------------------------------------------------------------

_FEMALE_NAMES = (
    "Maya", "Clara", "Nora", "Priya", "Sofia", "Hannah", "Amara", "Lena", "Grace", "Ruth", "Elena", "Aisha", "Mei",
    "Olivia", "Zoe", "Ines", "Fatima", "Julia", "Rosa", "Yuki", "Emma", "Lucy", "Ada", "Iris", "Nadia",
)  # fmt: skip
_MALE_NAMES = (
    "Leo", "Samuel", "Omar", "Daniel", "Kenji", "Mateo", "Arjun", "Felix", "Tom", "Hugo", "Ibrahim", "Lucas", "Ethan",
    "Marco", "Noah", "Jonas", "Ravi", "Victor", "Owen", "Theo", "Kofi", "Adam", "Luis", "Finn", "Max",
)  # fmt: skip
_FULL_NAMES = (
    "Anna Berg", "Marcus Hale", "Ines Duarte", "Tomas Lind", "Grace Okafor", "Daniel Reyes", "Yuki Tanaka",
    "Olivia Grant", "Samuel Ortiz", "Hannah Weiss", "Kwame Mensah", "Laura Chen", "Peter Novak", "Amelia Stone",
    "Ravi Kapoor", "Elena Petrova", "James Whitfield", "Sara Lindqvist", "Noah Fischer", "Maria Costa",
)  # fmt: skip
_TOWNS = (
    "Millbrook", "Ashford", "Port Ellen", "Greywater", "Hollowell", "Kingsbridge", "Larkfield", "Marlow Bay",
    "Northwick", "Riverton", "Stonehaven", "Westmoor",
)  # fmt: skip
_STREETS = (
    "Main Street", "Elm Street", "Harbor Road", "River Street", "Market Square", "Oak Avenue", "Station Road",
    "King Street", "Mill Lane", "Church Street",
)  # fmt: skip

_COMMON: dict[str, tuple[str, ...]] = {
    "pos": (
        "excellent", "wonderful", "superb", "brilliant", "fantastic", "outstanding", "impressive", "great", "lovely",
        "terrific", "marvelous", "delightful", "remarkable",
    ),
    "neg": (
        "terrible", "awful", "disappointing", "dreadful", "poor", "mediocre", "frustrating", "horrible", "shoddy",
        "sloppy", "dismal", "lousy", "unpleasant",
    ),
    "neu": ("average", "ordinary", "standard", "acceptable", "adequate", "unremarkable", "typical", "middling"),
    "intens": ("really", "truly", "genuinely", "incredibly"),
    "pos_with": ("delighted", "thrilled", "happy", "pleased", "impressed"),
    "pos_glad": ("glad", "happy", "pleased", "delighted", "thrilled"),
    "neg_with": ("disappointed", "frustrated", "annoyed", "unhappy"),
    "neg_that": ("disappointed", "annoyed", "upset", "angry"),
    "when": (
        "last week", "a few days ago", "last month", "on Saturday", "yesterday", "over the weekend", "two weeks ago",
        "in the spring", "last Friday", "at the end of the summer",
    ),
    "companion": (
        "my sister", "my partner", "a friend from work", "my parents", "my roommate", "two old friends", "my brother",
        "my kids", "my grandmother", "a colleague", "my neighbor",
    ),
    "relative": ("my sister", "my father", "my best friend", "my neighbor", "my mother", "my cousin", "my uncle"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "street": _STREETS,
    "town": _TOWNS,
    "person": _FULL_NAMES,
}  # fmt: skip

# --- products ---
_PRODUCTS = (
    "kettle", "blender", "backpack", "desk lamp", "rain jacket", "coffee grinder", "phone case", "camping tent",
    "water bottle", "alarm clock", "umbrella", "keyboard", "toaster", "frying pan", "headset", "wireless speaker",
    "electric toothbrush", "yoga mat", "travel mug", "hair dryer", "rice cooker", "space heater", "bike light",
    "computer mouse", "sleeping bag",
)  # fmt: skip
_BRANDS = (
    "Norvik", "Brightline", "Kestrel", "Alder", "Lumo", "Vantor", "Halden", "Corvi", "Pinecrest", "Solenne", "Orbis",
    "Tamber",
)  # fmt: skip
_PRODUCT_SLOTS = {
    "aspect": (
        "the build quality", "the design", "the finish", "the packaging", "the customer service", "the overall quality",
        "the material", "the instruction manual",
    ),
    "price": ("$19", "$25", "$30", "$35", "$45", "$60", "$79", "$99"),
    "duration": ("two weeks", "a month", "three months", "half a year", "almost a year", "six weeks"),
    "short_duration": ("two days", "a week", "three weeks", "a month", "ten days"),
    "color": ("gray", "black", "blue", "green", "white", "red"),
    "frequency": ("every day", "most days", "a few times a week", "on weekends"),
}  # fmt: skip

# --- restaurants: cuisine -> (restaurant names, dishes, desserts) ---
_CUISINES = {
    "Italian": (
        ("Luna Trattoria", "Casa Nonna", "Il Giardino"),
        (
            "mushroom risotto",
            "lasagna",
            "margherita pizza",
            "minestrone",
            "spaghetti carbonara",
            "eggplant parmesan",
        ),
        ("tiramisu", "panna cotta", "lemon sorbet"),
    ),
    "Japanese": (
        ("Sakura House", "Kaze Ramen", "Hana Sushi"),
        ("miso ramen", "salmon sushi platter", "chicken katsu", "tempura", "teriyaki salmon", "udon soup"),
        ("matcha ice cream", "mochi", "black sesame pudding"),
    ),
    "Mexican": (
        ("Casa Verde", "El Sol Cantina", "La Palma"),
        ("chicken enchilada", "fish taco", "guacamole", "pozole", "bean burrito", "chile relleno"),
        ("churro", "flan", "tres leches cake"),
    ),
    "Indian": (
        ("Spice Route", "Jaipur Kitchen", "Saffron"),
        (
            "chicken tikka masala",
            "lentil dal",
            "lamb biryani",
            "garlic naan",
            "palak paneer",
            "vegetable korma",
        ),
        ("mango lassi", "rice pudding", "gulab jamun"),
    ),
    "Thai": (
        ("Golden Lotus", "Bangkok Corner", "Lemongrass"),
        ("pad thai", "green curry", "tom yum soup", "papaya salad", "basil chicken", "massaman curry"),
        ("mango sticky rice", "coconut ice cream", "banana pancake"),
    ),
    "Greek": (
        ("Olive and Thyme", "Blue Aegean", "Taverna Nikos"),
        ("moussaka", "Greek salad", "lamb souvlaki", "spanakopita", "grilled octopus", "chicken gyro"),
        ("baklava", "yogurt with honey", "orange cake"),
    ),
    "American": (
        ("Maple Diner", "Harbor Grill", "Route 9 Diner"),
        (
            "cheeseburger",
            "clam chowder",
            "fried chicken sandwich",
            "meatloaf",
            "stack of pancakes",
            "Cobb salad",
        ),
        ("apple pie", "chocolate milkshake", "cheesecake"),
    ),
    "French": (
        ("Le Petit Bistro", "Chez Louise", "Café Margaux"),
        ("onion soup", "beef bourguignon", "quiche", "duck confit", "croque monsieur", "ratatouille"),
        ("crème brûlée", "chocolate mousse", "apple tart"),
    ),
    "Vietnamese": (
        ("Pho Saigon", "Little Hanoi", "Mekong Kitchen"),
        ("beef pho", "banh mi", "lemongrass chicken", "crispy spring roll", "bun cha", "papaya salad"),
        ("coconut flan", "iced coffee", "sweet bean soup"),
    ),
}
_RESTAURANT_SLOTS = {
    "meal": ("lunch", "dinner", "brunch"),
    "pos_food": (
        "delicious", "fresh", "flavorful", "perfectly seasoned", "wonderful", "beautifully presented", "excellent",
        "superb",
    ),
    "neg_food": ("bland", "cold", "greasy", "overcooked", "far too salty", "soggy", "dry", "tasteless", "lukewarm"),
    "neg_dish": ("bland", "greasy", "soggy", "tasteless", "lukewarm", "overcooked"),
    "neu_food": ("fine", "decent", "ordinary", "average", "a little plain", "pretty standard"),
    "pos_staff": ("friendly", "attentive", "charming", "kind", "helpful"),
    "neg_staff": ("rude", "careless", "slow", "unfriendly", "distracted"),
    "pos_room": ("cozy", "bright and welcoming", "charming", "elegant", "warm and lovely"),
    "neg_room": ("noisy", "cramped", "dirty", "dark and gloomy", "cold and uncomfortable"),
    "decor": (
        "fresh flowers on every table", "old photographs on the walls", "a view of the harbor", "plants in every corner",
        "candles in the windows",
    ),
    "occasion": ("my birthday", "our anniversary", "a friend's promotion", "my parents' anniversary", "a graduation"),
    "amount": ("$20", "$25", "$30", "$35", "$40"),
}  # fmt: skip

# --- films ---
_FILM_TITLES = (
    "The Silent Shore", "Midnight in Lisbon", "Paper Kites", "The Last Lighthouse", "Iron Valley", "A Winter Promise",
    "The Glass Garden", "Northern Lights", "Echoes of Home", "The Clockmaker's Daughter", "Red Desert Road",
    "Small Hours", "The Long Summer", "Salt in the Wind", "Across the Frozen Lake", "The Baker's Apprentice",
    "City of Lanterns", "Blue Hour", "The Quiet Neighbor", "Letters to June",
)  # fmt: skip
_FILM_GENRES = (
    ("thriller", "thrillers"), ("comedy", "comedies"), ("drama", "dramas"), ("documentary", "documentaries"),
    ("science fiction film", "science fiction films"), ("romantic comedy", "romantic comedies"),
    ("animated film", "animated films"), ("mystery", "mysteries"), ("musical", "musicals"), ("western", "westerns"),
)  # fmt: skip
_STORY_SLOTS = {
    "protagonist": (
        "young doctor", "retired detective", "quiet lighthouse keeper", "ambitious chef", "shy teenager",
        "old fisherman", "famous pianist", "single father", "small-town teacher", "astronaut", "elderly widow",
        "young engineer",
    ),
    "plot": (
        "returns home after twenty years", "must solve one last case", "discovers a family secret",
        "tries to save a failing bakery", "travels across the country by train", "meets a stranger during a long winter",
        "gets lost at sea", "starts a new life in a strange city", "finds an old map in an attic",
    ),
}  # fmt: skip
_FILM_SLOTS = {
    "aspect": (
        "the acting", "the script", "the soundtrack", "the ending", "the pacing", "the cinematography", "the dialogue",
        "the lead performance", "the opening scene", "the camera work",
    ),
    "pos_story": ("gripping", "moving", "clever", "funny and warm", "beautifully told", "tender and surprising"),
    "neg_dialogue": ("clumsy", "awkward", "stiff", "dull"),
    "neg_film": ("boring", "tedious", "disappointing", "forgettable", "frustrating"),
    "runtime": ("an hour and a half", "two hours", "a hundred minutes", "almost three hours"),
    "role": ("best friend", "older sister", "neighbor", "business partner", "rival"),
    "filmplace": ("Portugal", "the Scottish Highlands", "Iceland", "a small town in Texas", "Tokyo", "Morocco"),
    **_STORY_SLOTS,
}  # fmt: skip

# --- books ---
_BOOK_TITLES = (
    "Salt and Stone", "A House by the Sea", "The Quiet Cartographer", "Letters from Fenwick", "The Long Way North",
    "The Orchard Keeper", "A Year of Small Things", "The River Between Us", "Night Train to Vienna",
    "The Lantern Maker", "Under the Walnut Tree", "The Last Warm Summer", "Fields of Amber", "The Copper Key",
    "What the Tide Brings", "The Weaver's Song",
)  # fmt: skip
_BOOK_GENRES = (
    "novel", "detective novel", "fantasy novel", "historical novel", "love story", "short novel", "adventure story",
    "mystery novel",
)  # fmt: skip
_BOOK_SLOTS = {
    "aspect": (
        "the prose", "the plot", "the ending", "the first chapter", "the dialogue", "the main character", "the pacing",
        "the world-building", "the translation",
    ),
    "pos_prose": ("beautiful", "elegant", "vivid", "lovely"),
    "pos_noun": ("humor and kindness", "surprises", "memorable characters", "small, perfect details"),
    "neg_plot": ("predictable", "thin", "clumsy"),
    "pages": ("two hundred", "three hundred", "four hundred"),
    "book_setting": ("a small fishing village", "a busy city", "a mountain town", "an old country house"),
    "book_era": ("in the 1920s", "after the war", "in the near future", "over one summer"),
    **_STORY_SLOTS,
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------------------
# English reviews: sentence pools by topic and sentiment
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pools:
    """Templates for one topic and sentiment: openings, body sentences (drawn without repeats) and closings."""

    open: tuple[str, ...]
    close: tuple[str, ...]
    body: tuple[str, ...] = ()


_GENERIC_BODY = {
    "positive": (
        "Honestly, I did not expect it to be this {pos}.",
        "This is {a:intens} {pos} {thing}, and I am so {pos_glad} that I tried it.",
        "It is rare to find {a:thing} this {pos}.",
        "Everything about it feels {pos}, and nothing feels like an afterthought.",
        "If I could give it six stars, I would.",
        "I keep telling everyone I know how good it is.",
    ),
    "negative": (
        "I expected much more, given the price.",
        "This is {a:intens} {neg} {thing}, and I am {neg_that} that I wasted my money on it.",
        "It is hard to believe that anyone thought it was ready.",
        "I tried hard to like it, but it was {neg} from start to finish.",
        "I cannot think of a single thing it does well.",
    ),
    "neutral": (
        "This is {a:neu} {thing}, much like most others I have tried.",
        "There are good things about it and bad things too.",
        "My feelings about it are mixed.",
        "I have no strong opinion about it either way.",
        "It does what it promises, and not much more.",
    ),
}
_GENERIC_SUMMARY = {
    "positive": (
        "{item} is {a:intens} {pos} {thing}, and I recommend it to everyone.",
        "In short, {item} is {a:pos} {thing} that I would happily recommend.",
    ),
    "neutral": (
        "In short, {item} is {a:neu} {thing}: some parts work, and some do not.",
        "{item} is {a:neu} {thing}, neither special nor bad.",
    ),
    "negative": (
        "In short, {item} is {a:neg} {thing}, and I cannot recommend it.",
        "Sadly, {item} is {a:intens} {neg} {thing}.",
    ),
}

_REVIEW_POOLS: dict[str, dict[str, _Pools]] = {
    "product": {
        "positive": _Pools(
            open=(
                "I bought {item} {when} after reading a few reviews online.",
                "I ordered {a:product} from {brand} {when} to replace my old one.",
                "{when}, {relative} gave me {item} as a birthday present.",
                "I have been using {item} every day for {duration}.",
                "{item} is the best {product} I have ever owned.",
                "I am {intens} {pos_with} with {item}.",
            ),
            body=(
                "{aspect} is {pos}.",
                "It works exactly as described, and {aspect} is {pos}.",
                "It arrived a day early, and setting it up took less than five minutes.",
                "After {duration} of daily use, it still looks and works like new.",
                "I love how easy it is to use and to clean.",
                "For {price}, it is a real bargain.",
                "Even {relative}, who never likes anything, was impressed.",
                "The {brand} support team answered my question within an hour and was {intens} helpful.",
                "Everything about it feels {pos}, from {aspect} to {aspect}.",
                "I have already ordered a second one for {relative}.",
                "What surprised me most was how {pos} {aspect} is.",
                "It is {a:pos} {product}, and it makes daily life a little easier.",
                "I use it {frequency}, and it has never let me down.",
                "The {color} version looks even better in person than in the photos.",
                "It is light enough to carry around, yet it feels {pos} in the hand.",
                "My old {product} broke after a year, but this one seems built to last for a decade.",
            ),
            close=(
                "I would happily recommend it to anyone.",
                "Five stars from a very happy customer.",
                "It is worth every penny.",
                "I would buy it again without a second thought.",
                "If you need {a:product}, this is the best one to get.",
            ),
        ),
        "negative": _Pools(
            open=(
                "I bought {item} {when} after reading a few reviews online.",
                "I ordered {a:product} from {brand} {when} to replace my old one.",
                "I regret buying {item}.",
                "{item} was {a:intens} poor purchase.",
                "I have been using {item} for {duration}, and I am {neg_with} with it.",
            ),
            body=(
                "{aspect} is {neg}.",
                "It stopped working after only {short_duration}.",
                "It arrived a week late, and the box was half open.",
                "The instructions were so confusing that setting it up took an hour.",
                "For {price}, I expected much better than this.",
                "I contacted {brand} twice, but nobody ever answered.",
                "{aspect} feels {neg}, and it looks cheap next to my old one.",
                "Within {short_duration}, a piece had already broken off.",
                "I wanted to like it, but {aspect} is simply {neg}.",
                "It is {a:neg} {product}, and I would not buy it again.",
                "I am {intens} {neg_with} with this purchase.",
                "Sadly, it is not worth the money.",
                "The return process was slow and {neg}.",
                "The {color} paint started to peel off after {short_duration}.",
                "It looks nothing like the photos, and it feels {neg} in the hand.",
                "My old {product} was ten years old and still worked better than this one.",
                "{aspect} is {neg}, and half of the screws were missing from the box.",
            ),
            close=(
                "I would not recommend it to anyone.",
                "One star, and only because zero is not an option.",
                "Save your money and buy something else.",
                "I am sending it back tomorrow.",
                "Avoid it if you can.",
            ),
        ),
        "neutral": _Pools(
            open=(
                "I bought {item} {when} to replace my old one.",
                "I have used {item} {frequency} for {duration}.",
                "{item} is {a:neu} {product} that does what it says and little more.",
                "{when}, {relative} gave me {item}.",
            ),
            body=(
                "{aspect} is {neu}.",
                "It does the job, although {aspect} could be better.",
                "It arrived on time and in one piece.",
                "It is about the same size as my old one.",
                "For {price}, it is priced about the same as similar models.",
                "Setting it up took about ten minutes.",
                "It comes in six colors, and I chose the {color} one.",
                "There is nothing special about it, but nothing is wrong with it either.",
                "{aspect} is {pos}, but {aspect} is {neg}.",
                "It is neither the best nor the worst {product} I have owned.",
                "It is a little heavier than I expected, but not by much.",
                "The {color} version looks more or less like the photos.",
                "My old {product} lasted five years, and it is too early to say whether this one will.",
            ),
            close=(
                "Three stars: it is fine for the price.",
                "It is an okay choice if you are not too picky.",
                "I will keep it for now and see how it holds up.",
                "Overall, it is an average product.",
            ),
        ),
    },
    "restaurant": {
        "positive": _Pools(
            open=(
                "We had {meal} at {item}, the new {cuisine} restaurant on {street}, {when}.",
                "{when}, {companion} and I tried {item}, {a:cuisine} place near {street}.",
                "I went to {item} for {meal} {when}.",
                "{item} is easily the best {cuisine} restaurant in town.",
                "We celebrated {occasion} at {item}, and it was {a:intens} {pos} evening.",
            ),
            body=(
                "The {dish} was {pos_food}, and the {dish} was even better.",
                "Our waiter was {pos_staff} and knew the menu by heart.",
                "The {dish} was {pos_food}.",
                "Every dish came out hot, {pos_food} and beautifully presented.",
                "The dining room is {pos_room}, with {decor}.",
                "The portions were generous, and the prices were fair.",
                "For dessert we shared the {dessert}, which was {intens} {pos_food}.",
                "The chef came out to say hello, which was a lovely touch.",
                "We did not have to wait for a table, even on a busy {weekday} night.",
                "Everything tasted homemade and {pos_food}.",
                "{companion} called it the best {dish} in town.",
                "The staff were {pos_staff} from the moment we walked in.",
                "The first course arrived quickly, still steaming, and smelled wonderful.",
                "Even the house wine was {pos_food}, which is rare at these prices.",
                "We sat by the window and watched the sun go down over {street}.",
            ),
            close=(
                "We loved it and will definitely be back.",
                "I loved it, and I cannot wait to go back.",
                "It is the perfect spot for a special night out.",
                "Highly recommended.",
                "Book a table early, because it fills up fast.",
            ),
        ),
        "negative": _Pools(
            open=(
                "We had {meal} at {item}, the new {cuisine} restaurant on {street}, {when}.",
                "I went to {item} for {meal} {when}.",
                "I had high hopes for {item}, but our {meal} there was {a:intens} {neg} experience.",
                "{when}, {companion} and I tried {item}, and we both regretted it.",
            ),
            body=(
                "The {dish} was {neg_food}, and the {dish} was not much better.",
                "We waited almost an hour for our food, and nobody apologized.",
                "Our waiter was {neg_staff} and forgot half of our order.",
                "The {dish} was {neg_food}.",
                "The dining room was {neg_room}, and it was hard to hear each other.",
                "At these prices, I expected far more than {a:neg_dish} {dish}.",
                "Our table was sticky, and the menus were torn.",
                "The {dessert} tasted like it came from a supermarket freezer.",
                "When we mentioned the problem, the manager simply shrugged.",
                "The bill was wrong, and it took twenty minutes to fix it.",
                "The staff were {neg_staff} and seemed annoyed that we had come at all.",
                "The music was so loud that we had to shout across the table.",
                "Someone had clearly reheated the {dish} in a microwave.",
                "The house wine tasted sour, and the glasses were not clean.",
            ),
            close=(
                "We will not be going back.",
                "I would not recommend it.",
                "There are much better places on {street}.",
                "Save your money and eat somewhere else.",
                "It was a waste of an evening.",
            ),
        ),
        "neutral": _Pools(
            open=(
                "We stopped at {item} for a quick {meal} {when}.",
                "I went to {item} for {meal} {when}.",
                "{item} is a small {cuisine} restaurant on {street}.",
            ),
            body=(
                "The {dish} was {neu_food}.",
                "The menu is short, with about ten dishes and a few desserts.",
                "Service was quick, though not especially warm.",
                "The prices are similar to other {cuisine} places in the area.",
                "The {dish} was {pos_food}, but the {dish} was {neg_food}.",
                "It was fairly quiet for a {weekday} evening.",
                "We paid about {amount} each, including drinks.",
                "There is a parking lot behind the building.",
                "The dining room is plain, with white walls and wooden tables.",
                "Most tables were taken by families and a few couples.",
                "The menu changes every season, according to the sign by the door.",
                "We sat near the kitchen, so it was a little warm.",
            ),
            close=(
                "It is a reasonable choice for a quick meal.",
                "I might go back if I am in the area.",
                "Three stars overall.",
                "It is fine, but nothing special.",
            ),
        ),
    },
    "film": {
        "positive": _Pools(
            open=(
                "I watched {item} {when} with {companion}.",
                "{item} is {a:thing} directed by {director}.",
                "{when}, I finally saw {item}, the new {thing} by {director}.",
                "{item} tells the story of {a:protagonist} who {plot}.",
                "{item} is the best film I have seen this year.",
                "I did not expect much from {item}, but it turned out to be {a:pos} surprise.",
            ),
            body=(
                "{aspect} is {pos}.",
                "{actor} gives {a:pos} performance as the {protagonist}.",
                "The story is {pos_story}, and the last twenty minutes are {pos}.",
                "I laughed, I cried, and I thought about it for days afterward.",
                "Every scene looks like a painting.",
                "The music by {composer} fits every scene perfectly.",
                "It is {a:intens} {pos} film, and it deserves every award it gets.",
                "Even {relative}, who rarely watches films like this, loved it.",
                "The dialogue is sharp, funny and full of heart.",
                "The two hours flew by.",
                "{aspect} is {intens} {pos}, and {aspect} is not far behind.",
                "{actor} and {actor} have wonderful chemistry on screen.",
                "The final scene, set on a quiet beach at dawn, is simply {pos}.",
                "It is funny, sad and hopeful, often in the same scene.",
            ),
            close=(
                "Do not miss it.",
                "I loved it so much that I will watch it again this weekend.",
                "It is a must-see, and a real pleasure from start to finish.",
                "I recommend it to everyone.",
                "Go and see it on the big screen if you can; you will love it.",
            ),
        ),
        "negative": _Pools(
            open=(
                "I watched {item} {when} with {companion}.",
                "{item} tells the story of {a:protagonist} who {plot}.",
                "{item} was one of the most {neg_film} films I have seen in years.",
                "I wanted to love {item}, but it was {a:intens} {neg_film} two hours.",
            ),
            body=(
                "{aspect} is {neg}.",
                "{actor} looks bored in almost every scene.",
                "The plot makes no sense, and the ending is {neg}.",
                "Half the audience was checking their phones by the middle.",
                "The jokes fall flat, and the dialogue is painfully {neg_dialogue}.",
                "It is at least forty minutes too long.",
                "I nearly fell asleep during the second half.",
                "The special effects look cheap and unfinished.",
                "Even {actor} cannot save such {a:neg} script.",
                "Nothing in it feels real or new.",
                "{actor} and {actor} have no chemistry, and their scenes together feel awkward.",
                "The final scene is so {neg} that several people laughed at the wrong moment.",
                "The soundtrack is loud and repetitive, and it drowns out the dialogue.",
            ),
            close=(
                "Skip this one.",
                "I want those two hours of my life back.",
                "I would not recommend it, even on a rainy day.",
                "Wait for something better.",
            ),
        ),
        "neutral": _Pools(
            open=(
                "I watched {item} {when} with {companion}.",
                "{item} is {a:thing} directed by {director}.",
                "{item} tells the story of {a:protagonist} who {plot}.",
                "{item} is {a:neu} {thing} that will not change anyone's life.",
            ),
            body=(
                "{aspect} is {neu}.",
                "It runs for about {runtime}, which feels right for the story.",
                "{actor} plays the {protagonist}, and {actor} plays the {role}.",
                "The first half is {pos}, but the second half is {neg}.",
                "Some scenes work well, and some do not.",
                "It is similar to other {things} from the last few years.",
                "It was filmed in {filmplace}, and the locations look realistic.",
                "The music by {composer} stays in the background most of the time.",
                "Critics have been divided, and I can see why.",
                "The middle section drags a little, but the ending picks up.",
                "It is based on a novel, which I have not read.",
            ),
            close=(
                "It is fine for a quiet evening at home.",
                "Watch it if you like {things}.",
                "Two and a half stars.",
                "It is an average film, nothing more and nothing less.",
            ),
        ),
    },
    "book": {
        "positive": _Pools(
            open=(
                "I read {item} by {author} {when}.",
                "{item} is {a:thing} by {author}.",
                "{when}, {companion} lent me {item}, {a:thing} by {author}.",
                "{item} follows {a:protagonist} who {plot}.",
                "{item} is one of the most {pos_prose} books I have read in years.",
            ),
            body=(
                "{aspect} is {pos}.",
                "I could not put it down and finished it in two evenings.",
                "{author} writes with such warmth that every character feels real.",
                "The last chapter made me cry, in the best possible way.",
                "Some sentences are so {pos_prose} that I read them twice.",
                "It is {a:pos} {thing}, full of {pos_noun}.",
                "I have already bought a copy for {relative}.",
                "{aspect} is {intens} {pos}, and the story moves at a perfect pace.",
                "Each chapter ends in a way that makes you want to start the next one at once.",
                "The descriptions of {book_setting} are so vivid that I felt I was there.",
                "It is the kind of book you want to press into a friend's hands.",
            ),
            close=(
                "I recommend it to anyone who loves a good story.",
                "It is one of my favorite books of the year.",
                "Read it, and then lend it to a friend who loves a good story.",
                "I loved it, and I will read everything {author} writes from now on.",
            ),
        ),
        "negative": _Pools(
            open=(
                "I read {item} by {author} {when}.",
                "{item} follows {a:protagonist} who {plot}.",
                "{when}, {companion} lent me {item}, and I wish I had said no.",
                "I wanted to love {item}, but it was {a:intens} {neg} read.",
            ),
            body=(
                "{aspect} is {neg}.",
                "I gave up halfway through, which I almost never do.",
                "The characters are flat, and I did not care what happened to any of them.",
                "The plot is so {neg_plot} that I guessed the ending by chapter three.",
                "Long chapters go by in which nothing happens at all.",
                "The dialogue sounds stiff, as if nobody has ever spoken that way.",
                "The editing is sloppy, with typos on almost every page.",
                "It felt like homework.",
                "The ending comes out of nowhere and ties everything up far too neatly.",
                "Every character speaks in the same voice, which makes the dialogue {neg}.",
                "It is twice as long as it needs to be.",
            ),
            close=(
                "I cannot recommend it.",
                "Borrow it from the library if you must, but do not buy it.",
                "It is not worth your time.",
                "I will not be reading the sequel.",
            ),
        ),
        "neutral": _Pools(
            open=(
                "I read {item} by {author} {when}.",
                "{item} is {a:thing} by {author}.",
                "{item} follows {a:protagonist} who {plot}.",
            ),
            body=(
                "{aspect} is {neu}.",
                "It is about {pages} pages long and simple to follow.",
                "The first half is slow, but the second half is {pos}.",
                "Fans of {author}'s earlier books will find familiar themes here.",
                "The story takes place in {book_setting} {book_era}.",
                "It is told in short chapters that switch between two narrators.",
                "Some chapters are {pos}, and others are {neg}.",
                "The cover is simple, with a drawing of {book_setting}.",
                "I read it slowly, a chapter or two each night.",
                "The author's note at the end explains where the idea came from.",
            ),
            close=(
                "It is a reasonable choice for a long train ride.",
                "Three stars from me.",
                "It is fine, but I probably will not read it again.",
            ),
        ),
    },
}


def _product_context(rng: random.Random) -> dict:
    brand, product = rng.choice(_BRANDS), rng.choice(_PRODUCTS)
    return {
        **_COMMON,
        **_PRODUCT_SLOTS,
        "brand": brand,
        "product": product,
        "duration": rng.choice(_PRODUCT_SLOTS["duration"]),
        "item": f"the {brand} {product}",
        "thing": product,
    }


def _restaurant_context(rng: random.Random) -> dict:
    cuisine = rng.choice(sorted(_CUISINES))
    names, dishes, desserts = _CUISINES[cuisine]
    return {
        **_COMMON,
        **_RESTAURANT_SLOTS,
        "cuisine": cuisine,
        "street": rng.choice(_STREETS),
        "item": rng.choice(names),
        "thing": f"{cuisine} restaurant",
        "dish": dishes,
        "dessert": rng.choice(desserts),
    }


def _film_context(rng: random.Random) -> dict:
    genre, genres = rng.choice(_FILM_GENRES)
    return {
        **_COMMON,
        **_FILM_SLOTS,
        "item": rng.choice(_FILM_TITLES),
        "thing": genre,
        "things": genres,
        "director": rng.choice(_FULL_NAMES),
        "composer": rng.choice(_FULL_NAMES),
        "actor": _FULL_NAMES,
    }


def _book_context(rng: random.Random) -> dict:
    return {
        **_COMMON,
        **_BOOK_SLOTS,
        "item": rng.choice(_BOOK_TITLES),
        "thing": rng.choice(_BOOK_GENRES),
        "author": rng.choice(_FULL_NAMES),
    }


_REVIEW_CONTEXTS = {
    "product": _product_context,
    "restaurant": _restaurant_context,
    "film": _film_context,
    "book": _book_context,
}
_REVIEW_TOPICS = tuple(_REVIEW_CONTEXTS)

# Number of sentences in a document, 2 to 8, and how often each occurs.
_LENGTHS = (2, 3, 4, 5, 6, 7, 8)
_LENGTH_WEIGHTS = (1, 1, 2, 3, 4, 6, 8)


_LEADS = {
    "positive": (
        "To my delight, ",
        "Best of all, ",
        "On top of that, ",
        "I have to say that ",
        "What is more, ",
    ),
    "negative": (
        "To make matters worse, ",
        "On top of that, ",
        "Worst of all, ",
        "Sadly, ",
        "I have to say that ",
    ),
    "neutral": (
        "To be fair, ",
        "On the other hand, ",
        "As far as I can tell, ",
        "In all honesty, ",
        "Then again, ",
    ),
}
_STORY_LEADS = {
    "positive": ("Luckily, ", "To everyone's delight, ", "Happily, ", "Best of all, "),
    "negative": ("Unfortunately, ", "To make things worse, ", "Sadly, ", "Worst of all, "),
    "neutral": ("Meanwhile, ", "After a while, ", "For a time, ", "As usual, "),
}
# Sentences starting with one of these words may take a lead-in ("To my delight, the ..."); proper nouns may not.
_LEADABLE = frozenset(
    "The It Every Everything Our We There This Some Service Setting Half Nothing Long Even Most He She A When".split()
)


def _with_leads(
    rng: random.Random, sentences: list[str], sentiment: str, share: float = 0.3, *, table: Mapping = _LEADS
) -> list[str]:
    """Put a sentiment-coloured lead-in before about `share` of `sentences` (each lead-in at most once)."""
    leads = list(table[sentiment])
    rng.shuffle(leads)
    result = []
    for sentence in sentences:
        first_word = sentence.split(" ", 1)[0]
        if leads and rng.random() < share and (first_word == "I" or first_word in _LEADABLE):
            rest = sentence if first_word == "I" else sentence[0].lower() + sentence[1:]
            sentence = leads.pop() + rest
        result.append(sentence)
    return result


def _review_sentences(
    rng: random.Random, topic: str, sentiment: str, slots: Slots, n: int, used: dict
) -> list[str]:
    """An opening, `n - 2` body sentences and a closing (for `n == 1`, a one-sentence summary)."""
    pools = _REVIEW_POOLS[topic][sentiment]
    if n == 1:
        return _sentences(rng, _GENERIC_SUMMARY[sentiment], 1, slots, used)
    body = pools.body + _GENERIC_BODY[sentiment]
    return (
        _sentences(rng, pools.open, 1, slots, used)
        + _with_leads(rng, _sentences(rng, body, n - 2, slots, used), sentiment)
        + _sentences(rng, pools.close, 1, slots, used)
    )


def _review_document(rng: random.Random, sentiment: str) -> Document:
    topic = rng.choice(_REVIEW_TOPICS)
    slots = _REVIEW_CONTEXTS[topic](rng)
    n = rng.choices(_LENGTHS, weights=_LENGTH_WEIGHTS)[0]
    text = " ".join(_review_sentences(rng, topic, sentiment, slots, n, {}))
    return Document("review", topic, sentiment, text)


# ---------------------------------------------------------------------------------------------------------------------
# English stories
# ---------------------------------------------------------------------------------------------------------------------

# place -> (how to say "at" it, what one goes there to do)
_PLACES = {
    "the market": ("at the market", ("buy fresh vegetables", "buy bread and cheese", "look for ripe peaches")),
    "the library": ("at the library", ("return a book", "borrow a book about {topic}", "study for an exam")),
    "the harbor": ("at the harbor", ("watch the fishing boats", "meet {his} uncle, a retired sailor", "buy fresh fish")),
    "the park": ("in the park", ("walk {his} dog", "read in the sun", "feed the ducks")),
    "the train station": ("at the train station", ("catch the early train to {town}", "meet {his} cousin")),
    "the bakery": ("at the bakery", ("buy a loaf of bread", "order a birthday cake", "buy a warm pastry")),
    "the museum": ("at the museum", ("see the new exhibition", "sketch the old statues")),
    "the beach": ("at the beach", ("swim in the sea", "collect shells", "watch the sunset")),
    "the post office": ("at the post office", ("send a parcel to {his} aunt", "post a letter")),
    "the village square": ("in the village square", ("meet {his} friends", "listen to the band")),
    "the bookshop": ("at the bookshop", ("look for a present", "find a book about {topic}")),
    "the lake": ("by the lake", ("go swimming", "feed the swans", "watch the sailing boats")),
    "the forest": ("in the forest", ("pick mushrooms", "look for birds", "walk {his} dog")),
    "the river": ("by the river", ("go fishing", "sketch the old mill", "watch the rowing boats")),
}  # fmt: skip
_PRONOUNS = {
    "f": {"he": "she", "him": "her", "his": "her", "himself": "herself"},
    "m": {"he": "he", "him": "him", "his": "his", "himself": "himself"},
}
_STORY_LEXICON = {
    "job": (
        "baker", "nurse", "teacher", "librarian", "carpenter", "student", "painter", "engineer", "gardener",
        "musician", "taxi driver", "chef", "retired pilot", "young architect", "mail carrier",
    ),
    "weather": ("bright", "windy", "rainy", "foggy", "quiet", "warm", "cold", "gray", "sunny", "misty"),
    "day": ("Saturday morning", "autumn afternoon", "winter evening", "spring morning", "summer day", "Sunday"),
    "time": (
        "on a Tuesday", "early one morning", "last summer", "one evening", "on the first day of spring",
        "after school", "late one afternoon", "during the holidays", "on Saturday afternoon", "just before sunset",
    ),
    "topic": ("birds", "old ships", "the stars", "gardening", "the history of {town}", "cooking", "volcanoes"),
    "pet": ("puppy", "kitten", "parrot", "rabbit", "goat"),
    "tune": ("cheerful", "old", "lively", "beautiful"),
    "treats": ("fresh fruit", "homemade jam", "chocolates", "spiced biscuits"),
    "news": (
        "the old cinema was opening again", "their friend Sam was coming home", "the town had won a prize for its gardens",
        "the bridge would finally be repaired",
    ),
    "grocery": (
        "loaf of bread", "bag of apples", "newspaper", "bottle of milk", "jar of honey", "box of tea", "onion", "pear",
    ),
    "hour": ("ten", "noon", "four", "six"),
    "years": ("many years", "ten years", "most of {his} life", "almost a year"),
}  # fmt: skip
_STORY_POOLS = {
    "setup": (
        "{time}, {name} walked to {place} to {purpose}.",
        "One {weekday}, {name} went to {place} to {purpose}.",
        "{time}, {name} decided to go to {place} to {purpose}.",
        "{time}, {name} went back to {place} for the first time since {he} was a child.",
        "On {a:weather_now} {day_now}, {name} set off for {place} to {purpose}.",
    ),
    "background": (
        "{he} was {a:job} who lived in {town}.",
        "{he} had lived in {town} for {years}.",
        "It was {a:weather_now} day, and the streets were full of people.",
    ),
}
# Events by sentiment, each with its phase (0 on the way, 1 on arrival, 2 there, 3 afterwards): a story tells the
# events it draws in phase order.
_STORY_EVENTS = {
    "positive": (
        (2, "There {he} ran into {name2}, an old friend from school, and they talked for hours."),
        (0, "On the way, {he} found a lost {pet} and carried it back to its grateful owner."),
        (2, "A street musician was playing {a:tune} song, and soon everyone was dancing."),
        (3, "Later, {name2} invited {him} to a small party, and {he} happily said yes."),
        (2, "{he} won a small prize in a raffle: a basket of {treats}."),
        (1, "Just as {he} arrived, the sun came out, and {place} looked more beautiful than ever."),
        (
            0,
            "At the bus stop, {he} helped an old man carry his bags, and the man thanked {him} with a warm smile.",
        ),
        (2, "{name2} was there too and told {him} some wonderful news: {news}."),
        (2, "A kind stranger offered {him} a cup of hot cocoa, and they laughed about the weather."),
        (2, "{he} found exactly what {he} was looking for, and it was even cheaper than {he} expected."),
        (2, '"What a lovely surprise!" said {name2}, who was standing nearby with a big smile.'),
        (3, "On the way home, {he} bought flowers for {name2}, just because it felt like such a good day."),
        (1, "When {he} arrived, {he} was delighted to find a small festival in full swing."),
    ),
    "negative": (
        (0, "Halfway there, it began to rain, and {he} had forgotten {his} umbrella."),
        (1, "When {he} arrived, {place} was crowded and noisy, and there was nowhere to sit."),
        (0, "Crossing the old bridge, {he} slipped on the wet stones and hurt {his} ankle."),
        (3, "When {he} came back, someone had taken {his} bicycle, and {he} had to walk home in the cold."),
        (2, "{name2} walked past without saying hello, which hurt {him} more than {he} wanted to admit."),
        (2, "{he} dropped {his} phone, and the screen cracked into a hundred pieces."),
        (2, "Everything {he} wanted was sold out, and the shop assistant was rude about it."),
        (2, "A cold wind began to blow, and {he} felt lonely and sad."),
        (2, "{he} waited for {name2} for an hour, but {name2} never came."),
        (3, "On the way home, {he} realized that {he} had lost {his} keys."),
        (2, '"You are late again," {name2} said coldly, and turned away.'),
        (0, "At the corner of {street}, a careless cyclist splashed muddy water all over {his} new coat."),
    ),
    "neutral": (
        (2, "{he} bought {a:grocery} and {a:grocery}, then sat on a bench for a while."),
        (1, "When {he} arrived, {place} was quiet, and only a few people were there."),
        (2, "{he} watched the people passing by and thought about the week ahead."),
        (2, "{name2} was there too, and they talked about the weather."),
        (2, "Somewhere in the distance, the clock on the tower struck {hour}."),
        (2, "{he} wrote a short list of things to do on the back of a receipt."),
        (3, "On the way back, {he} stopped to look at the old houses along {street}."),
        (3, "{he} checked the time and decided to take the long way home."),
        (2, '"Looks like rain," said {name2}, glancing at the sky.'),
        (0, "{he} walked past a row of shops, a bus stop and some parked cars."),
    ),
}
_STORY_ENDINGS = {
    "positive": (
        "It was one of the happiest days {he} could remember.",
        "{he} walked home smiling, grateful for such a lovely day.",
        "That evening, {he} wrote about the day in {his} diary and smiled.",
        "{he} fell asleep that night feeling happy and at peace.",
        "Years later, {name} still loved to tell the story of that wonderful day.",
    ),
    "negative": (
        "{he} went home tired, wet and miserable.",
        "It was a day {he} would rather forget.",
        "That night, {he} lay awake, feeling sad and alone.",
        "{he} promised {himself} never to go back to {place} again.",
        "By evening, {he} was in a terrible mood.",
    ),
    "neutral": (
        "Then {he} went home and made dinner.",
        "In the evening, {he} read a book and went to bed early.",
        "The next day was much the same.",
        "{he} got home just before dark.",
    ),
}


def _story_context(rng: random.Random) -> dict:
    gender = rng.choice(("f", "m"))
    name = rng.choice(_FEMALE_NAMES if gender == "f" else _MALE_NAMES)
    name2 = rng.choice([other for other in _FEMALE_NAMES + _MALE_NAMES if other != name])
    place = rng.choice(sorted(_PLACES))
    at_place, purposes = _PLACES[place]
    return {
        **_COMMON,
        **_STORY_LEXICON,
        **_PRONOUNS[gender],
        "name": name,
        "name2": name2,
        "place": place,
        "at_place": at_place,
        "purpose": rng.choice(purposes),
        "weather_now": rng.choice(_STORY_LEXICON["weather"]),
        "day_now": rng.choice(_STORY_LEXICON["day"]),
    }


def _story_events(rng: random.Random, sentiment: str, k: int, slots: Slots, used: dict) -> list[str]:
    """`k` different events of `sentiment`, told in phase order (on the way, arrival, there, afterwards); at most
    one of them happens on arrival and at most one involves the second character (never introduced twice)."""
    events = _STORY_EVENTS[sentiment]

    def clashes(index: int, other: int) -> bool:
        (phase, template), (other_phase, other_template) = events[index], events[other]
        return phase == other_phase == 1 or ("{name2}" in template and "{name2}" in other_template)

    chosen: list[int] = []
    for index in rng.sample(range(len(events)), len(events)):
        if len(chosen) < k and not any(clashes(index, other) for other in chosen):
            chosen.append(index)
    chosen.sort(key=lambda index: events[index][0])
    sentences = [_capitalize(_render(rng, events[index][1], slots, used)) for index in chosen]
    return _with_leads(rng, sentences, sentiment, table=_STORY_LEADS)


def _story_sentences(rng: random.Random, sentiment: str, slots: Slots, n: int, used: dict) -> list[str]:
    """A setup (who goes where, sometimes a line of background), events, and an ending: `n` sentences (at least 2)."""
    setup_template = rng.choice(slots.get("setup", _STORY_POOLS["setup"]))
    setup = [_capitalize(_render(rng, setup_template, slots, used))]
    if n >= 5 and rng.random() < 0.6:
        # Say the weather once: not again when the setup already names it.
        weather_told = "weather_now" in setup_template
        background = [
            line for line in _STORY_POOLS["background"] if not (weather_told and "weather_now" in line)
        ]
        setup += _sentences(rng, background, 1, slots, used)
    events = _story_events(rng, sentiment, n - len(setup) - 1, slots, used)
    return setup + events + _sentences(rng, _STORY_ENDINGS[sentiment], 1, slots, used)


def _story_document(rng: random.Random, sentiment: str) -> Document:
    slots = _story_context(rng)
    n = rng.choices(_LENGTHS, weights=_LENGTH_WEIGHTS)[0]
    return Document("story", "story", sentiment, " ".join(_story_sentences(rng, sentiment, slots, n, {})))


# ---------------------------------------------------------------------------------------------------------------------
# English notes: how-to steps and simple facts
# ---------------------------------------------------------------------------------------------------------------------

# task -> (steps in order, a positive remark, a negative remark)
_HOWTO = {
    "brew a good cup of tea": (
        (
            "boil fresh, cold water, because water that has been boiled twice makes flat tea", "warm the teapot with a little hot water so the tea stays hot for longer", "add one teaspoon of loose tea for each cup",
            "pour the water over the leaves", "let black tea steep for four or five minutes",
            "remove the leaves before serving", "add milk or lemon if you like",
        ),
        "A well-made cup of tea is a small, wonderful pleasure on a cold afternoon.",
        "If you leave the leaves in too long, the tea turns bitter and unpleasant.",
    ),
    "bake a simple loaf of bread": (
        (
            "mix flour, water, salt and yeast in a large bowl", "knead the dough for about ten minutes, until it feels smooth and springy",
            "cover the bowl and let the dough rise for an hour", "shape the dough into a loaf",
            "let it rise again for thirty minutes", "bake it at 220 degrees Celsius for about thirty-five minutes",
            "let the bread cool before you slice it, or the inside will be gummy",
        ),
        "Few things smell as wonderful as bread fresh from the oven.",
        "If the water is too hot, it kills the yeast, and the loaf comes out flat and disappointing.",
    ),
    "keep a basil plant alive": (
        (
            "put the pot on a sunny windowsill", "water it when the top of the soil feels dry, and never leave the pot standing in water",
            "make sure the pot has drainage holes", "pinch off the top leaves to keep the plant bushy, just above a pair of new shoots",
            "remove any flowers as soon as they appear", "turn the pot every few days so it grows evenly",
        ),
        "A healthy basil plant gives you fresh, delicious leaves all summer.",
        "Too much water is the most common mistake, and it quickly rots the roots.",
    ),
    "fix a flat bicycle tire": (
        (
            "remove the wheel from the frame", "use tire levers to lift one side of the tire off the rim",
            "pull out the inner tube", "find the hole by pumping air into the tube and listening for a hiss",
            "patch the hole or fit a new tube", "run your fingers around the inside of the tire to find any glass or thorns that caused the puncture",
            "put the tire back on and pump it up",
        ),
        "Once you have done it a couple of times, it takes less than fifteen minutes, and it feels great.",
        "A cheap patch often fails after a few days and leaves you stranded by the road.",
    ),
    "clean a cast iron pan": (
        (
            "rinse the pan with hot water while it is still warm", "scrub off any food with a brush or coarse salt",
            "dry the pan completely with a towel, because even a few drops of water can cause rust", "heat it on the stove for a minute to remove the last of the water",
            "rub a thin layer of oil over the surface", "store it in a dry place",
        ),
        "A well-cared-for pan can last a lifetime and only gets better with age.",
        "If you leave it to soak in water, it will rust and be ruined.",
    ),
    "start running": (
        (
            "buy a pair of shoes that fit well", "begin with short runs of ten or fifteen minutes",
            "mix running with walking during the first few weeks", "run at a pace at which you can still hold a conversation",
            "rest for at least one day between runs so your legs can recover", "add a few minutes each week",
        ),
        "After a few weeks, most beginners feel stronger, happier and full of energy.",
        "Doing too much too soon is the classic mistake, and it often ends in painful injuries.",
    ),
    "study for an exam": (
        (
            "make a plan for the weeks before the exam", "study in short sessions of about forty minutes",
            "test yourself instead of only rereading your notes, since recalling an answer helps you remember it", "explain each topic out loud as if you were teaching it",
            "work through old exam papers", "sleep well the night before",
        ),
        "A calm, steady plan makes exam week pleasant and even enjoyable.",
        "Cramming the night before is a terrible idea, and it rarely works.",
    ),
    "save money on groceries": (
        (
            "plan your meals for the week", "write a shopping list and stick to it", "avoid shopping when you are hungry",
            "compare prices per kilogram rather than per package, because large packs are not always cheaper", "buy fruit and vegetables that are in season",
            "cook large batches and freeze the leftovers",
        ),
        "Small changes like these add up quickly, and it feels great to watch the savings grow.",
        "Supermarkets are designed to make you spend more, and special offers are often a trap.",
    ),
    "write a clear email": (
        (
            "start with a short subject line that says what the email is about",
            "put the main point in the first sentence", "keep paragraphs short", "say exactly what you need and by when, so the reader knows what to do next",
            "read it once more before you send it",
        ),
        "A clear email saves everyone time, and people will thank you for it.",
        "A long, confusing email is often ignored, and important requests get lost.",
    ),
    "grow tomatoes": (
        (
            "choose a spot that gets at least six hours of sun", "dig a hole deep enough to bury most of the stem, which helps the plant grow strong roots",
            "water the plants deeply at the base", "tie the stems to a stake as they grow",
            "pick the tomatoes when they are fully red",
        ),
        "Nothing tastes better than a ripe tomato picked warm from your own garden.",
        "Cold nights and too little sun can leave you with a disappointing harvest.",
    ),
    "make a weekly budget": (
        (
            "write down everything you earned last month", "list your fixed costs, such as rent and bills",
            "set a weekly limit for food and transport, and write it somewhere you will see it", "keep your receipts and check them every Sunday",
            "put a small amount into savings first",
        ),
        "A simple budget gives you a wonderful feeling of control and calm.",
        "Small purchases quietly add up, and the end of the month can become stressful.",
    ),
    "fall asleep faster": (
        (
            "go to bed at the same time every night", "keep the bedroom cool, dark and quiet",
            "put your phone away an hour before bed, because bright screens keep the brain awake", "avoid coffee after lunch", "read a paper book for a few minutes",
        ),
        "A few small habits can make bedtime calm and pleasant.",
        "Scrolling on your phone in bed is one of the worst habits for sleep.",
    ),
    "make a simple vegetable soup": (
        (
            "chop an onion, two carrots and a stick of celery", "cook them in a little olive oil until soft",
            "add chopped potatoes and enough stock to cover", "simmer for about twenty minutes",
            "season with salt and pepper, tasting as you go", "blend it if you like a smooth soup",
        ),
        "It is cheap, healthy and delicious, and it tastes even better the next day.",
        "Too much salt early on can ruin the whole pot, so season at the end.",
    ),
    "pack for a weekend trip": (
        (
            "check the weather forecast", "choose clothes that go well together", "roll your clothes instead of folding them, which saves space and prevents creases",
            "put liquids in a small clear bag", "pack a charger and a spare pair of socks",
        ),
        "Packing light makes the whole trip easier and more relaxing.",
        "Overpacking is the most common mistake, and a heavy bag can ruin a weekend.",
    ),
}  # fmt: skip
_HOWTO_FRAMES = {
    "positive": _Pools(
        open=(
            "Learning to {task} is easier than you might think, and it is {intens} rewarding.",
            "Here is a simple, reliable way to {task} that works wonderfully every time.",
            "Once you know how to {task}, you will enjoy it for years.",
            "It is a pleasure to {task}, and anyone can learn it.",
        ),
        close=(
            "With a little practice, you will be proud of the result.",
            "It is a small skill that brings a lot of joy.",
            "Enjoy the result, and share it with a friend.",
            "You will be delighted with how well it works.",
        ),
    ),
    "negative": _Pools(
        open=(
            "Most advice about how to {task} is confusing, and beginners often make costly mistakes.",
            "Learning to {task} can be frustrating, and one careless mistake can ruin everything.",
            "Sadly, many people give up before they learn to {task} properly.",
        ),
        close=(
            "Skip any of these steps and the result will be a disappointing mess.",
            "Be careful: rushing is the most common mistake, and it is hard to undo.",
            "Expect a few frustrating failures before it works.",
        ),
    ),
    "neutral": _Pools(
        open=("Here are the basic steps to {task}.", "This note explains how to {task}.", "If you want to {task}, follow these steps."),
        close=("That is all there is to it.", "The whole process takes some practice the first time.", "Those are the main steps."),
    ),
}  # fmt: skip
_CONNECTORS = ("Next, ", "Then ", "After that, ")
_STEP_FORMS = ("It helps to {step}.", "Remember to {step}.", "Be sure to {step}.", "You should {step}.")

# subject -> (facts, positive remarks, negative remarks)
_FACTS = {
    "honeybees": (
        (
            "A strong colony can hold tens of thousands of bees.", "Each colony has one queen, who lays the eggs.",
            "Worker bees collect nectar and pollen from flowers.", "Bees turn nectar into honey and store it in wax cells.",
            "They tell each other where to find food with a special dance.",
            "Many crops, such as apples and almonds, depend on bees for pollination.",
        ),
        ("Watching a busy hive on a summer morning is a real joy.", "Bees are remarkable, hard-working and beautiful to watch."),
        (
            "Sadly, many colonies are dying because of disease, pesticides and the loss of wild flowers.",
            "A bee sting is painful, and some people are dangerously allergic to it.",
        ),
    ),
    "the moon": (
        (
            "The moon takes about twenty-seven days to travel around the Earth.", "It always shows the same face to us.",
            "The moon has no air, so there is no weather on its surface.", "Its pull on the oceans causes the tides.",
            "Twelve astronauts walked on the moon between 1969 and 1972.",
            "Moonlight is sunlight reflected from its dusty surface.",
        ),
        (
            "On a clear night, a full moon is a beautiful sight.",
            "The moon landings remain one of the most amazing achievements in history.",
        ),
        (
            "Sadly, no one has walked on the moon for more than fifty years.",
            "The surface is a harsh, lifeless place, with no air to breathe and no water to drink.",
        ),
    ),
    "the water cycle": (
        (
            "Water evaporates from oceans, lakes and rivers.", "The vapor rises, cools and forms clouds.",
            "When the droplets become heavy, they fall as rain or snow.",
            "Rain soaks into the ground or flows into rivers.",
            "Rivers carry the water back to the sea, and the cycle begins again.",
        ),
        (
            "It is a wonderful system that keeps every living thing alive.",
            "Every glass of water is part of this beautiful, endless journey.",
        ),
        (
            "When the cycle is disturbed, the result can be terrible floods or long droughts.",
            "Pollution can travel through the cycle and poison rivers far away.",
        ),
    ),
    "composting": (
        (
            "Compost is made from kitchen scraps, leaves and grass clippings.",
            "Worms, fungi and bacteria break the material down.",
            "A good heap needs air, moisture and a mix of green and brown material.",
            "It usually takes a few months to a year.", "Finished compost is dark and crumbly and smells like soil.",
            "Adding compost to a garden makes the soil richer.",
        ),
        (
            "It is a simple, rewarding way to turn waste into something useful.",
            "Gardeners love compost, and their plants love it even more.",
        ),
        (
            "A badly made heap can smell awful and attract rats.",
            "Sadly, most food waste still ends up in landfill, where it rots without air.",
        ),
    ),
    "sleep": (
        (
            "Adults need about seven to nine hours of sleep a night.",
            "During deep sleep, the body repairs muscles and other tissues.", "Most dreams happen during REM sleep.",
            "Bright screens late at night can make it harder to fall asleep.",
            "A regular bedtime helps the body keep a steady rhythm.",
        ),
        (
            "A good night's sleep makes almost everything feel better.",
            "Sleep is one of the best and simplest gifts you can give your body.",
        ),
        (
            "Poor sleep can leave you tired, irritable and unable to focus.",
            "Sadly, many adults do not get enough sleep, and it harms their health.",
        ),
    ),
}  # fmt: skip
_FACT_FRAMES = {
    "positive": (
        "Learning about {subject} is a real pleasure.",
        "There is something wonderful about {subject}.",
    ),
    "negative": (
        "Sadly, most people know very little about {subject}, and many popular ideas about it are wrong.",
        "Much of what is written about {subject} is confusing or simply false.",
    ),
    "neutral": ("Here are a few facts about {subject}.", "This short note is about {subject}."),
}


def _howto_sentences(rng: random.Random, sentiment: str, task: str, n: int, used: dict) -> list[str]:
    """A framing opening, ordered steps (with connectors in half the notes), a remark or closing: `n` sentences."""
    steps, positive_remark, negative_remark = _HOWTO[task]
    slots = {**_COMMON, "task": task}
    frame = _HOWTO_FRAMES[sentiment]
    n_steps = max(1, min(len(steps), n - 2))
    chosen = [steps[i] for i in sorted(rng.sample(range(len(steps)), n_steps))]
    connected = rng.random() < 0.5
    connectors, forms = rng.sample(_CONNECTORS, len(_CONNECTORS)), rng.sample(_STEP_FORMS, len(_STEP_FORMS))
    lines = []
    for index, step in enumerate(chosen):
        if connected and n_steps > 1:
            last = index == n_steps - 1
            prefix = (
                "First, " if index == 0 else "Finally, " if last else connectors.pop() if connectors else ""
            )
            lines.append(_capitalize(prefix + step + "."))
        elif forms and rng.random() < 0.3:
            lines.append(_capitalize(forms.pop().format(step=step)))
        else:
            lines.append(_capitalize(step + "."))
    remark = {"positive": (positive_remark,), "negative": (negative_remark,), "neutral": ()}[sentiment]
    closing = remark + frame.close if rng.random() < 0.5 else frame.close
    return _sentences(rng, frame.open, 1, slots, used) + lines + _sentences(rng, closing, 1, slots, used)


def _short_howto(rng: random.Random, sentiment: str, task: str, n: int, used: dict) -> list[str]:
    """A one- or two-sentence how-to answer: the key step (and a closing)."""
    steps = _HOWTO[task][0]
    key_step = f"The key is to {rng.choice(steps)}."
    if n <= 1:
        return [key_step]
    return [key_step] + _sentences(rng, _HOWTO_FRAMES[sentiment].close, 1, {}, used)


def _facts_sentences(rng: random.Random, sentiment: str, subject: str, n: int, used: dict) -> list[str]:
    facts, positive_remarks, negative_remarks = _FACTS[subject]
    slots = {"subject": subject}
    remarks = {"positive": positive_remarks, "negative": negative_remarks, "neutral": ()}[sentiment]
    opening = _sentences(rng, _FACT_FRAMES[sentiment], 1, slots, used)
    n_remarks = min(len(remarks), 1 if n <= 4 else 2)
    chosen = _sentences(rng, facts, max(1, n - 1 - n_remarks), slots, used, ordered=True)
    return opening + chosen + _sentences(rng, remarks, n_remarks, slots, used)


def _note_document(rng: random.Random, sentiment: str) -> Document:
    n = rng.choices(_LENGTHS, weights=_LENGTH_WEIGHTS)[0]
    if rng.random() < 0.7:
        task = rng.choice(sorted(_HOWTO))
        return Document("note", "howto", sentiment, " ".join(_howto_sentences(rng, sentiment, task, n, {})))
    subject = rng.choice(sorted(_FACTS))
    return Document("note", "facts", sentiment, " ".join(_facts_sentences(rng, sentiment, subject, n, {})))


# ---------------------------------------------------------------------------------------------------------------------
# English replies: a question, then an answer
# ---------------------------------------------------------------------------------------------------------------------

_QUESTIONS = {
    "restaurant": (
        "Have you been to {item} yet? What is it like?",
        "Should I try {item} for {meal}?",
        "What do you think of {item}, the {cuisine} place on {street}?",
        "I am thinking of taking my parents to {item}. Would they like it?",
    ),
    "film": (
        "Have you seen {item}? Should I watch it?",
        "Should I watch {item} this weekend?",
        "What did you think of {item}?",
        "I am looking for a film for tonight. What about {item}?",
    ),
    "book": (
        "Have you read {item} by {author}?",
        "Would you take {item} on a long flight?",
        "What did you think of {item}?",
    ),
    "product": (
        "Should I buy {item}?",
        "I am thinking of getting {item}. Any advice?",
        "Do you still use {item}?",
    ),
    "howto": (
        "Do you know how to {task}?",
        "How do you usually {task}?",
        "Can you explain how to {task}?",
        "I have never tried to {task}. Where do I start?",
    ),
}
# A sentence that can come before a question, saying why it is asked.
_QUESTION_CONTEXTS = {
    "restaurant": (
        "I am planning a night out with {relative} on {weekday}.",
        "We want to celebrate {occasion} somewhere new.",
        "I am tired of cooking at home every night.",
    ),
    "film": (
        "We are having a movie night at my place on {weekday}.",
        "I have a long train journey ahead of me and want something to watch.",
        "My cousin keeps talking about it.",
    ),
    "book": (
        "I am going on holiday next week and need something to read.",
        "Our book club has to choose a new book by {weekday}.",
        "I saw it in the window of the bookshop on {street}.",
    ),
    "product": (
        "My old {product} finally broke last week.",
        "I have been comparing different models online for days.",
        "There is a sale on {street} this weekend.",
    ),
    "howto": (
        "I want to learn something new this month.",
        "My first attempt went badly, and I would like to try again.",
        "{relative} showed me once, but I have forgotten everything.",
    ),
}
_REPLY_OPENERS = {
    "item": {
        "positive": (
            "Oh, I loved it!", "I think it is wonderful.", "It is one of my favorites.",
            "I only have good things to say about it.",
        ),
        "negative": (
            "Honestly, I would skip it.", "I am sorry to say it, but I was disappointed.", "Not really, to be honest.",
            "I would not bother, to be honest.",
        ),
        "neutral": (
            "It depends on what you are looking for.", "It is okay, I suppose.", "I have mixed feelings about it.",
            "It is not bad, but it is not great either.",
        ),
    },
    "howto": {
        "positive": ("Sure, it is easier than it sounds!", "I would be happy to explain.", "Of course, and it is fun!"),
        "negative": (
            "Honestly, it is trickier than most guides admit.", "It can be frustrating at first, but here is what I know.",
        ),
        "neutral": ("Sure, here is how I do it.", "Here is the method I use."),
    },
}  # fmt: skip
_REPLY_CLOSERS = {
    "restaurant": {
        "positive": ("You should go this weekend and order the {dish}.", "Book a table soon, because it fills up fast."),
        "negative": ("I would try somewhere else if I were you.", "There are much better places in town."),
        "neutral": ("Try it if you are in the area, but do not go out of your way.",),
    },
    "film": {
        "positive": ("Watch it on the biggest screen you can find.", "You will love it."),
        "negative": ("I would pick a different film for your evening.", "Save your money and wait for something better."),
        "neutral": ("Watch it if you have a free evening.",),
    },
    "book": {
        "positive": ("I can lend you my copy if you like.", "You will love it."),
        "negative": ("I would choose a different book for your trip.", "I would not spend money on it."),
        "neutral": ("Borrow it from the library and see what you think.",),
    },
    "product": {
        "positive": ("I think you will love it.", "Get one, you will not regret it."),
        "negative": ("I would look at other brands first.", "Save your money."),
        "neutral": ("It is fine if you find it on sale.",),
    },
    "howto": {
        "positive": ("Give it a try, you will be surprised how easy it is!", "Good luck, and enjoy it!"),
        "negative": ("Be patient, and do not expect perfect results the first time.", "It takes time, so do not give up too soon."),
        "neutral": ("Let me know how it goes.", "That is how I do it, anyway."),
    },
}  # fmt: skip
_REPLY_TOPICS = ("restaurant", "film", "book", "product", "howto")


def _reply_answer(
    rng: random.Random, topic: str, sentiment: str, slots: Slots, n: int, used: dict
) -> list[str]:
    """An opener, `n - 2` sentences of substance and a closer; for how-to questions the substance is steps."""
    group = "howto" if topic == "howto" else "item"
    opener = _sentences(rng, _REPLY_OPENERS[group][sentiment], 1, slots, used)
    closer = _sentences(rng, _REPLY_CLOSERS[topic][sentiment], 1, slots, used)
    if topic == "howto":
        if n <= 2:
            return _short_howto(rng, sentiment, slots["task"], n, used)
        return opener + _howto_sentences(rng, "neutral", slots["task"], n, used)[1:-1] + closer
    if n <= 1:
        return _sentences(rng, _GENERIC_SUMMARY[sentiment], 1, slots, used)
    body = _REVIEW_POOLS[topic][sentiment].body + _GENERIC_BODY[sentiment]
    return opener + _with_leads(rng, _sentences(rng, body, n - 2, slots, used), sentiment) + closer


def _reply_document(rng: random.Random, sentiment: str) -> Document:
    topic = rng.choice(_REPLY_TOPICS)
    slots = (
        {**_COMMON, "task": rng.choice(sorted(_HOWTO))} if topic == "howto" else _REVIEW_CONTEXTS[topic](rng)
    )
    used: dict = {}
    question = _sentences(rng, _QUESTIONS[topic], 1, slots, used)[0]
    if rng.random() < 0.4:
        question = _sentences(rng, _QUESTION_CONTEXTS[topic], 1, slots, used)[0] + " " + question
    n_question = question.count("?") + question.count(".")
    n = rng.choices(_LENGTHS, weights=_LENGTH_WEIGHTS)[0]
    answer = _reply_answer(rng, topic, sentiment, slots, max(2, n - n_question), used)
    return Document("reply", topic, sentiment, f"Q: {question}\nA: {' '.join(answer)}")


# ---------------------------------------------------------------------------------------------------------------------
# Tasks: English prompts, and answers to them
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """A prompt and what is needed to answer it."""

    kind: str
    topic: str
    language: str
    prompt: str
    slots: Mapping


_EN_PROMPTS = {
    ("review", "product"): (
        "Write a short review of {item}.",
        "Review {item}, which you bought recently.",
        "You have used {item} for {duration}. Write a short review.",
        "Write a customer review of {item}.",
    ),
    ("review", "restaurant"): (
        "Write a short review of {item}, {a:cuisine} restaurant on {street}.",
        "Review your {meal} at {item}.",
        "Write a review of {item} for a local food guide.",
    ),
    ("review", "film"): (
        "Write a short review of the film {item}.",
        "Review {item}, the new {thing} by {director}.",
        "What did you think of the film {item}? Write a short review.",
    ),
    ("review", "book"): (
        "Write a short review of the book {item} by {author}.",
        "Review {item}, {a:thing} by {author}.",
        "Write a few sentences about {item} for a book club newsletter.",
    ),
    ("story", "story"): (
        "Tell a short story about {name} {at_place}.",
        "Write a short story in which {name} goes to {place} to {purpose}.",
        "Tell a short story about {name} on {a:weather_now} {day_now}.",
        "Write a few sentences about a day {name} spent {at_place}.",
    ),
    ("reply", "restaurant"): (
        "Reply to a friend who asks whether {item} is any good.",
        'A friend asks: "Is {item} worth trying for {meal}?" Write a helpful reply.',
        "Reply to a friend who asks about {item}.",
    ),
    ("reply", "film"): (
        "Reply to a friend who asks whether {item} is worth watching.",
        "Reply to a friend who asks about the film {item}.",
    ),
    ("reply", "book"): (
        "Reply to a friend who asks what you thought of {item}.",
        "Reply to a friend who asks about the book {item}.",
    ),
    ("reply", "product"): (
        "Reply to a friend who asks whether {item} is worth buying.",
        "Reply to a friend who asks about {item}.",
    ),
    ("reply", "howto"): ("Reply to a friend who asks how to {task}.",),
    ("note", "howto"): (
        "Explain how to {task}.",
        "Write a short note on how to {task}.",
        "Give a few simple steps to {task}.",
    ),
    ("note", "facts"): ("Write a few sentences about {subject}.", "Share some facts about {subject}."),
}
_EN_TASK_WEIGHTS = {
    ("review", "product"): 3,
    ("review", "restaurant"): 3,
    ("review", "film"): 3,
    ("review", "book"): 3,
    ("story", "story"): 6,
    ("reply", "restaurant"): 1,
    ("reply", "film"): 1,
    ("reply", "book"): 1,
    ("reply", "product"): 1,
    ("reply", "howto"): 1,
    ("note", "howto"): 3,
    ("note", "facts"): 2,
}
_SYSTEM_PROMPTS = {
    "en": "You are a helpful and friendly assistant.",
    "fr": "Tu es un assistant serviable et bienveillant.",
    "es": "Eres un asistente útil y amable.",
    "mg": "Mpanampy mahay sy tsara fanahy ianao.",
}
_FOLLOW_UPS = {
    "en": {
        "shorter": ("Thanks! Can you make it shorter?", "Thank you. Can you say it in one or two sentences?"),
        "next": ("I like it! What happens next?", "Nice. Can you continue the story?"),
    },
    "fr": {
        "shorter": ("Merci ! Tu peux faire plus court ?", "Merci. Tu peux le dire en une ou deux phrases ?"),
        "next": ("J'aime bien ! Et ensuite, que se passe-t-il ?",),
    },
    "es": {
        "shorter": ("¡Gracias! ¿Puedes hacerlo más corto?", "Gracias. ¿Puedes decirlo en una o dos frases?"),
        "next": ("¡Me gusta! ¿Y qué pasa después?",),
    },
    "mg": {
        "shorter": ("Misaotra! Ataovy fohy kokoa azafady.",),
        "next": ("Tiako izany! Inona no nitranga taorian'izay?",),
    },
}


def _task(rng: random.Random, language: str) -> _Task:
    """A task (kind, topic, prompt text and the slots its answer needs) in `language`."""
    if language != "en":
        return _foreign_task(rng, language)
    kind, topic = rng.choices(list(_EN_TASK_WEIGHTS), weights=list(_EN_TASK_WEIGHTS.values()))[0]
    if topic in _REVIEW_CONTEXTS:
        slots = _REVIEW_CONTEXTS[topic](rng)
    elif topic == "story":
        slots = _story_context(rng)
    elif topic == "howto":
        slots = {**_COMMON, "task": rng.choice(sorted(_HOWTO))}
    else:
        slots = {"subject": rng.choice(sorted(_FACTS))}
    template = rng.choice(_EN_PROMPTS[kind, topic])
    if "{day_now}" in template:  # the story must start on the day the prompt names
        slots = {**slots, "setup": tuple(t for t in _STORY_POOLS["setup"] if "{day_now}" in t)}
    return _Task(kind, topic, "en", _capitalize(_render(rng, template, slots, {})), slots)


def _follow_up(rng: random.Random, task: _Task) -> tuple[str, str]:
    """The user's second turn in a chat, and what it asks for: "shorter" (a shorter version) or "next" (the rest of
    a story)."""
    mode = "next" if task.kind == "story" and rng.random() < 0.5 else "shorter"
    return rng.choice(_FOLLOW_UPS[task.language][mode]), mode


def _respond(rng: random.Random, task: _Task, sentiment: str, n: int) -> list[str]:
    """The sentences of an answer to `task`: about `n` of them (at least 1) with the given sentiment."""
    if task.language != "en":
        return _foreign_response(rng, task, n)
    used: dict = {}
    slots = task.slots
    if task.kind == "story":
        return _story_sentences(rng, sentiment, slots, max(2, n), used)
    if task.kind == "review":
        return _review_sentences(rng, task.topic, sentiment, slots, n, used)
    if task.kind == "reply":
        return _reply_answer(rng, task.topic, sentiment, slots, n, used)
    if task.topic == "howto":
        if n <= 2:
            return _short_howto(rng, sentiment, slots["task"], n, used)
        return _howto_sentences(rng, sentiment, slots["task"], n, used)
    return _facts_sentences(rng, sentiment, slots["subject"], max(2, n), used)


def _shorten(task: _Task, answer: list[str]) -> list[str]:
    """A shorter version of `answer`: the steps or facts of a note, else its first and last sentences."""
    if len(answer) <= 2:
        return answer[:1]
    if task.kind == "note":
        return answer[1:-1][:2]
    return [answer[0], answer[-1]]


# ---------------------------------------------------------------------------------------------------------------------
# French, Spanish and Malagasy tasks: small hand-written banks of prompts and positive answers
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ForeignTask:
    """Prompt templates and answer pools (kept in order) for one task in one language."""

    kind: str
    topic: str
    prompts: tuple[str, ...]
    open: tuple[str, ...]
    body: tuple[str, ...]
    close: tuple[str, ...]


_FR_SLOTS = {
    "person": (
        ("Camille", "elle", "elle"), ("Julien", "il", "lui"), ("Léa", "elle", "elle"), ("Hugo", "il", "lui"),
        ("Chloé", "elle", "elle"), ("Lucas", "il", "lui"), ("Manon", "elle", "elle"), ("Théo", "il", "lui"),
    ),
    "film": ("Le Dernier Été", "La Maison du Port", "Les Jardins de la Lune", "Un Hiver à Lyon", "La Route du Nord"),
    "book": ("La Mer en Hiver", "Le Jardin Oublié", "Lettres de Provence", "Le Voyageur du Soir", "Une Année à Paris"),
    "author": ("Claire Morel", "Antoine Lefèvre", "Sophie Garnier", "Paul Mercier"),
    "restaurant": ("Le Petit Jardin", "La Table Bleue", "Le Vieux Moulin", "Chez Margot", "L'Olivier"),
    "town": ("Lyon", "Nantes", "Bordeaux", "Lille", "Rennes", "Toulouse"),
    "product": ("la bouilloire Norvik", "le sac à dos Kestrel", "la lampe de bureau Lumo", "le casque Brightline"),
    "place": ("au marché", "à la plage", "à la bibliothèque", "au parc", "à la boulangerie", "au musée"),
}  # fmt: skip
_ES_SLOTS = {
    "name": ("Lucía", "Mateo", "Sofía", "Diego", "Elena", "Pablo", "Carmen", "Javier"),
    "film": ("El Último Verano", "La Casa del Río", "Noches de Sevilla", "El Faro", "Camino al Norte"),
    "book": ("El Jardín Olvidado", "Cartas desde Granada", "El Mar en Invierno", "Un Año en Madrid"),
    "author": ("Carmen Ruiz", "Javier Ortega", "Elena Navarro", "Miguel Soto"),
    "restaurant": ("La Buena Mesa", "Casa Lucía", "El Rincón Verde", "Sabor del Mar"),
    "town": ("Sevilla", "Valencia", "Granada", "Bilbao", "Málaga", "Salamanca"),
    "of_product": ("de la tetera Norvik", "de la mochila Kestrel", "de la lámpara de escritorio Lumo", "del altavoz Brightline"),
    # (where: "en el mercado", to where: "al mercado")
    "place": (
        ("en el mercado", "al mercado"), ("en la playa", "a la playa"), ("en la biblioteca", "a la biblioteca"),
        ("en el parque", "al parque"), ("en la panadería", "a la panadería"), ("en el museo", "al museo"),
    ),
}  # fmt: skip
_MG_SLOTS = {
    "name": ("Rabe", "Rasoa", "Rakoto", "Hery", "Voahangy", "Fara", "Tiana", "Naivo"),
    # Titles start with "Ny" (the article), so the templates put no "ny" before them.
    "film": ("Ny Lalana Mody", "Ny Vorona Mena", "Ny Zanaky ny Ranomasina", "Ny Nofy Lehibe"),
    "book": ("Ny Tranon'i Dadabe", "Ny Ala Maitso", "Ny Ranomasina Manga"),
    "author": ("Hery Rakotondrabe", "Voahangy Rasoanaivo", "Fara Andrianarisoa", "Naivo Ratsimba"),
    "restaurant": ("Ravinala", "Tsiky", "Fitia", "Vahiny"),
    "town": ("Antananarivo", "Antsirabe", "Toamasina", "Fianarantsoa", "Mahajanga"),
    "place": ("an-tsena", "amoron-dranomasina", "an-tanimboly"),
}  # fmt: skip

_FR_TASKS = (
    _ForeignTask(
        "review", "film",
        prompts=("Écris une courte critique du film {film}.",),
        open=("J'ai adoré le film {film}.", "{film} est un très beau film.", "{film} est une vraie réussite."),
        body=(
            "Les acteurs sont excellents.", "L'histoire est touchante et pleine d'humour.", "Les images sont magnifiques.",
            "La musique est très belle.", "La fin est émouvante et pleine d'espoir.",
        ),
        close=("Je le recommande à tout le monde.", "C'est un film à voir absolument.", "J'ai hâte de le revoir."),
    ),
    _ForeignTask(
        "review", "book",
        prompts=("Écris une courte critique du livre {book} de {author}.",),
        open=("{book} est un livre magnifique.", "J'ai adoré lire {book}, de {author}."),
        body=(
            "Les personnages sont attachants.", "L'histoire est passionnante du début à la fin.",
            "Le style de {author} est simple et élégant.", "Chaque chapitre réserve une belle surprise.",
        ),
        close=("Je le recommande sans hésiter.", "C'est un livre parfait à offrir."),
    ),
    _ForeignTask(
        "review", "restaurant",
        prompts=("Écris un court avis sur le restaurant {restaurant}, à {town}.",),
        open=("Nous avons très bien mangé au restaurant {restaurant}.", "{restaurant} est une excellente adresse à {town}."),
        body=(
            "Les plats sont frais et délicieux.", "Le service est rapide et souriant.", "Les prix sont raisonnables.",
            "Le dessert au chocolat est une merveille.", "La salle est calme et chaleureuse.",
        ),
        close=("J'y retournerai avec plaisir.", "Je vous le recommande vivement."),
    ),
    _ForeignTask(
        "review", "product",
        prompts=("Écris un court avis sur {product}.",),
        open=("Cet achat me plaît beaucoup.", "C'est un excellent achat."),
        body=(
            "La qualité est excellente.", "Le prix est raisonnable.", "La livraison a été rapide.",
            "Tout fonctionne parfaitement.", "Le design est simple et élégant.",
        ),
        close=("Je recommande cet achat sans hésiter.", "Je referais cet achat avec plaisir."),
    ),
    _ForeignTask(
        "story", "story",
        prompts=(
            "Raconte une courte histoire où {name} va {place}.",
            "Écris une petite histoire sur une journée de {name} {place}.",
        ),
        open=("Un samedi matin, {name} va {place}.", "Par une belle journée de printemps, {name} va {place}."),
        body=(
            "Là-bas, {il} retrouve un vieil ami d'enfance.", "Il fait beau et tout le monde sourit.",
            "Un musicien joue une chanson joyeuse.", "{il} achète des fleurs pour sa grand-mère.",
            "{il} trouve un petit chat perdu et le ramène à son propriétaire.",
        ),
        close=(
            "Le soir, {name} rentre chez {lui} le cœur léger.", "C'est une journée merveilleuse.",
            "{name} se souviendra longtemps de cette belle journée.",
        ),
    ),
    _ForeignTask(
        "reply", "film",
        prompts=("Réponds à une amie qui te demande ce que tu as pensé du film {film}.",),
        open=("C'est un très bon film !", "Je l'ai adoré !"),
        body=("Les acteurs sont excellents et l'histoire est touchante.", "La musique est magnifique."),
        close=("Tu devrais aller le voir au cinéma.", "Tu vas sûrement l'aimer."),
    ),
    _ForeignTask(
        "reply", "restaurant",
        prompts=("Réponds à un ami qui te demande si le restaurant {restaurant} est bon.",),
        open=("Oui, c'est une très bonne adresse !", "Oui, j'adore ce restaurant !"),
        body=(
            "Les plats sont délicieux et le service est chaleureux.", "Les prix sont raisonnables.",
            "Le dessert est une merveille.",
        ),
        close=("Tu devrais y aller avec ta famille.", "On peut y aller ensemble samedi, si tu veux."),
    ),
    _ForeignTask(
        "reply", "book",
        prompts=("Réponds à une amie qui te demande si le livre {book} est intéressant.",),
        open=("Oui, c'est un livre passionnant !", "Oui, je l'ai adoré !"),
        body=("Les personnages sont attachants.", "Le style est simple et élégant."),
        close=("Tu vas sûrement l'aimer.", "Je peux te le prêter, si tu veux."),
    ),
    _ForeignTask(
        "note", "tea",
        prompts=("Explique en quelques phrases comment préparer une bonne tasse de thé.",),
        open=("Préparer une bonne tasse de thé, c'est simple et agréable.",),
        body=(
            "Fais bouillir de l'eau fraîche.", "Mets une cuillère de thé dans la théière.",
            "Verse l'eau chaude sur les feuilles.", "Laisse infuser trois à cinq minutes.",
        ),
        close=("Ensuite, savoure ton thé bien chaud.", "C'est un petit plaisir délicieux."),
    ),
    _ForeignTask(
        "note", "bread",
        prompts=("Explique simplement comment faire du pain maison.",),
        open=("Faire du pain maison est facile et très agréable.",),
        body=(
            "Mélange la farine, l'eau, le sel et la levure.", "Pétris la pâte pendant dix minutes.",
            "Laisse-la lever pendant une heure.", "Fais cuire le pain au four pendant trente-cinq minutes.",
        ),
        close=("Le résultat est délicieux.", "L'odeur du pain chaud est un vrai bonheur."),
    ),
    _ForeignTask(
        "note", "basil",
        prompts=("Explique comment prendre soin d'une plante de basilic.",),
        open=("Prendre soin d'un basilic est facile.",),
        body=(
            "Place le pot près d'une fenêtre ensoleillée.", "Arrose-le quand la terre est sèche.",
            "Coupe les feuilles du haut pour qu'il pousse bien.", "Retire les fleurs dès qu'elles apparaissent.",
        ),
        close=("Avec un peu d'attention, ton basilic sera magnifique.", "Tu auras de belles feuilles parfumées tout l'été."),
    ),
)  # fmt: skip

_ES_TASKS = (
    _ForeignTask(
        "review", "film",
        prompts=("Escribe una reseña breve de la película {film}.",),
        open=("Me encantó la película {film}.", "{film} es una película preciosa.", "{film} es una película excelente."),
        body=(
            "Los actores son excelentes.", "La historia es emocionante y divertida.", "Las imágenes son preciosas.",
            "La música es muy bonita.", "El final es conmovedor.",
        ),
        close=("Se la recomiendo a todo el mundo.", "Es una película que hay que ver.", "Tengo ganas de verla otra vez."),
    ),
    _ForeignTask(
        "review", "book",
        prompts=("Escribe una reseña breve del libro {book}, de {author}.",),
        open=("{book} es un libro maravilloso.", "Me encantó leer {book}, de {author}."),
        body=(
            "Los personajes son entrañables.", "La historia es apasionante de principio a fin.",
            "El estilo de {author} es sencillo y elegante.", "Cada capítulo trae una sorpresa bonita.",
        ),
        close=("Lo recomiendo sin dudarlo.", "Es un libro perfecto para regalar."),
    ),
    _ForeignTask(
        "review", "restaurant",
        prompts=("Escribe una reseña breve del restaurante {restaurant}, en {town}.",),
        open=("Comimos muy bien en {restaurant}.", "{restaurant} es un restaurante excelente."),
        body=(
            "La comida es fresca y deliciosa.", "El servicio es rápido y amable.", "Los precios son razonables.",
            "El postre de chocolate es una maravilla.", "El local es tranquilo y acogedor.",
        ),
        close=("Volveré con mucho gusto.", "Lo recomiendo de corazón."),
    ),
    _ForeignTask(
        "review", "product",
        prompts=("Escribe una reseña breve {of_product}.",),
        open=("Esta compra me gusta mucho.", "Es una compra excelente."),
        body=(
            "La calidad es excelente.", "El precio es razonable.", "El envío fue muy rápido.",
            "Todo funciona perfectamente.", "El diseño es sencillo y elegante.",
        ),
        close=("Recomiendo esta compra sin dudarlo.", "Volvería a hacer esta compra."),
    ),
    _ForeignTask(
        "story", "story",
        prompts=(
            "Cuenta una historia corta sobre {name} {place_in}.",
            "Escribe un cuento breve en el que {name} va {place_to}.",
        ),
        open=("Un sábado por la mañana, {name} va {place_to}.", "Un bonito día de primavera, {name} va {place_to}."),
        body=(
            "Allí se encuentra con un viejo amigo de la infancia.", "Hace sol y todo el mundo sonríe.",
            "Un músico toca una canción alegre.", "{name} compra flores para su abuela.",
            "{name} encuentra un gatito perdido y lo lleva a casa de su dueña.",
        ),
        close=("Por la noche, {name} vuelve a casa muy feliz.", "Es un día maravilloso.", "{name} recordará siempre este día tan bonito."),
    ),
    _ForeignTask(
        "reply", "film",
        prompts=("Responde a un amigo que te pregunta qué te pareció la película {film}.",),
        open=("¡Es una película estupenda!", "¡Me encantó!"),
        body=("Los actores son excelentes y la historia es muy emocionante.", "La música es preciosa."),
        close=("Tienes que verla.", "Seguro que te va a gustar."),
    ),
    _ForeignTask(
        "reply", "restaurant",
        prompts=("Responde a una amiga que te pregunta si el restaurante {restaurant} es bueno.",),
        open=("¡Sí, es un sitio estupendo!", "¡Sí, me encanta ese restaurante!"),
        body=("La comida es deliciosa y el servicio es muy amable.", "Los precios son razonables.", "El postre es una maravilla."),
        close=("Deberías ir con tu familia.", "Si quieres, podemos ir el sábado."),
    ),
    _ForeignTask(
        "reply", "book",
        prompts=("Responde a un amigo que te pregunta si vale la pena leer {book}.",),
        open=("¡Sí, vale mucho la pena!", "¡Sí, es un libro precioso!"),
        body=("Los personajes son entrañables.", "La historia es apasionante y muy fácil de leer."),
        close=("Te va a encantar.", "Si quieres, te lo presto."),
    ),
    _ForeignTask(
        "note", "tea",
        prompts=("Explica en pocas frases cómo preparar una buena taza de té.",),
        open=("Preparar una buena taza de té es fácil y agradable.",),
        body=(
            "Hierve agua fresca.", "Pon una cucharadita de té en la tetera.", "Vierte el agua caliente sobre las hojas.",
            "Deja reposar el té de tres a cinco minutos.",
        ),
        close=("Después, disfruta de tu té bien caliente.", "Es un pequeño placer delicioso."),
    ),
    _ForeignTask(
        "note", "bread",
        prompts=("Explica de forma sencilla cómo hacer pan casero.",),
        open=("Hacer pan casero es fácil y muy agradable.",),
        body=(
            "Mezcla la harina, el agua, la sal y la levadura.", "Amasa la masa durante diez minutos.",
            "Déjala reposar una hora.", "Hornea el pan durante treinta y cinco minutos.",
        ),
        close=("El resultado es delicioso.", "El olor del pan recién hecho es una maravilla."),
    ),
    _ForeignTask(
        "note", "basil",
        prompts=("Explica cómo cuidar una planta de albahaca.",),
        open=("Cuidar una planta de albahaca es muy fácil.",),
        body=(
            "Pon la maceta cerca de una ventana soleada.", "Riégala cuando la tierra esté seca.",
            "Corta las hojas de arriba para que crezca bien.", "Quita las flores en cuanto aparezcan.",
        ),
        close=("Con un poco de atención, tu albahaca estará preciosa.", "Tendrás hojas frescas y sabrosas todo el verano."),
    ),
)  # fmt: skip

_MG_TASKS = (
    _ForeignTask(
        "review", "film",
        prompts=("Manorata hevitra fohy momba ny sarimihetsika {film}.",),
        open=("Tena nahafinaritra ny sarimihetsika {film}.", "Sarimihetsika tsara dia tsara {film}."),
        body=("Tsara ny tantara ary mahay ny mpilalao.", "Mahafinaritra ihany koa ny mozika.", "Tena tsara ny sary."),
        close=("Tokony hijery azy ianao.", "Te hijery azy indray aho."),
    ),
    _ForeignTask(
        "review", "book",
        prompts=("Manorata hevitra fohy momba ny boky {book}, nosoratan'i {author}.",),
        open=("Boky tsara dia tsara {book}.",),
        body=("Mahaliana ny tantara ary mora vakiana.", "Tena tsara ny fomba fanoratan'i {author}."),
        close=("Tokony hamaky azy ianao.",),
    ),
    _ForeignTask(
        "review", "restaurant",
        prompts=("Manorata hevitra fohy momba ny trano fisakafoanana {restaurant} any {town}.",),
        open=("Tena matsiro ny sakafo ao amin'ny {restaurant}.", "Trano fisakafoanana tsara dia tsara ny {restaurant}."),
        body=("Tsara fandray ny mpiasa.", "Mora ihany koa ny vidiny.", "Madio sy milamina ny efitrano."),
        close=("Hiverina any indray aho.", "Tokony handeha any ianao."),
    ),
    _ForeignTask(
        "story", "story",
        prompts=("Mamorona tantara fohy momba an'i {name} tany {place}.",),
        open=("Indray andro, nankany {place} i {name}.",),
        body=("Nahita namana taloha tany izy.", "Nihaino mozika mahafinaritra izy.", "Nividy voninkazo ho an'ny reniny izy."),
        close=("Nody faly be i {name}.", "Andro mahafinaritra tokoa izany."),
    ),
    _ForeignTask(
        "reply", "film",
        prompts=("Valio ny namanao izay manontany raha tsara ny sarimihetsika {film}.",),
        open=("Eny, tsara dia tsara izy!",),
        body=("Tiako be ny tantara sy ny mozika.", "Mahay dia mahay ny mpilalao."),
        close=("Tokony hijery azy ianao.",),
    ),
    _ForeignTask(
        "reply", "restaurant",
        prompts=("Valio ny namanao izay manontany raha tsara ny trano fisakafoanana {restaurant}.",),
        open=("Eny, tsara be izy!",),
        body=("Matsiro ny sakafo ary tsara fandray ny mpiasa.", "Mora ihany koa ny vidiny."),
        close=("Andao handeha miaraka any!",),
    ),
    _ForeignTask(
        "note", "tea",
        prompts=("Hazavao fohifohy ny fomba fanaovana dite.",),
        open=("Mora dia mora ny manao dite.",),
        body=(
            "Ampangotrahy ny rano.", "Ataovy ao anaty kaopy ny ravin-dite.", "Arotsahy amin'ny ravin-dite ny rano mafana.",
            "Andraso dimy minitra.",
        ),
        close=("Mahafinaritra tokoa izany!",),
    ),
    _ForeignTask(
        "note", "flowers",
        prompts=("Hazavao fohifohy ny fomba fikarakarana voninkazo.",),
        open=("Tsy sarotra ny mikarakara voninkazo.",),
        body=("Apetraho eo akaikin'ny varavarankely izy.", "Asio rano ny voninkazo isaky ny maraina.", "Esory ny ravina maty."),
        close=("Ho tsara tarehy ny voninkazonao.",),
    ),
)  # fmt: skip

_FOREIGN_TASKS = {"fr": _FR_TASKS, "es": _ES_TASKS, "mg": _MG_TASKS}


def _foreign_slots(rng: random.Random, language: str) -> dict[str, str]:
    """One value for every slot of `language`'s bank, fixed for a prompt and its answer."""
    if language == "fr":
        slots = {key: rng.choice(values) for key, values in _FR_SLOTS.items() if key != "person"}
        slots["name"], slots["il"], slots["lui"] = rng.choice(_FR_SLOTS["person"])
        return slots
    if language == "es":
        slots = {key: rng.choice(values) for key, values in _ES_SLOTS.items() if key != "place"}
        slots["place_in"], slots["place_to"] = rng.choice(_ES_SLOTS["place"])
        return slots
    return {key: rng.choice(values) for key, values in _MG_SLOTS.items()}


def _foreign_task(rng: random.Random, language: str) -> _Task:
    bank = rng.choice(_FOREIGN_TASKS[language])
    slots = {"bank": bank, **_foreign_slots(rng, language)}
    prompt = _capitalize(_render(rng, rng.choice(bank.prompts), slots, {}))
    return _Task(bank.kind, bank.topic, language, prompt, slots)


def _foreign_response(rng: random.Random, task: _Task, n: int) -> list[str]:
    """An opening, body sentences in their order and a closing: `n` sentences, or fewer when the bank is small; a
    one- or two-sentence answer is the opening (and the closing)."""
    bank: _ForeignTask = task.slots["bank"]
    used: dict = {}
    parts = _sentences(rng, bank.open, 1, task.slots, used)
    if n >= 3:
        parts += _sentences(rng, bank.body, n - 2, task.slots, used, ordered=True)
    if n >= 2:
        parts += _sentences(rng, bank.close, 1, task.slots, used)
    return parts


# ---------------------------------------------------------------------------------------------------------------------
# Sentiment lexicon
# ---------------------------------------------------------------------------------------------------------------------

_POSITIVE_WORDS = frozenset(
    # English
    """good great excellent wonderful wonderfully superb brilliant fantastic outstanding impressive impressed lovely
    terrific marvelous delightful remarkable amazing perfect perfectly beautiful beautifully charming delicious
    flavorful generous friendly attentive kind kindly helpful elegant cozy gripping moving tender clever memorable
    enjoyable enjoy enjoyed pleasant pleasure love loved loves happy happier happiest happily glad delighted thrilled
    pleased grateful recommend recommended best favorite favorites fun joy smile smiling smiled worth easy easier
    rewarding proud nice sharp vivid calm relaxing healthy fascinating
    """
    # French
    """bon bonne bonnes beau belle belles magnifique magnifiques adoré adore aimer délicieux délicieuse merveille
    merveilleuse merveilleux réussite plaisir bonheur touchante émouvante passionnant passionnante attachants élégant
    joyeuse parfaitement agréable facile recommande excellente excellents chaleureux chaleureuse souriant
    """
    # Spanish
    """encantó encanta encantar excelente excelentes preciosa precioso preciosas maravilla maravilloso maravillosa
    deliciosa delicioso estupendo estupenda emocionante divertida bonita bonito amable entrañables apasionante
    elegante perfecto perfectamente feliz alegre recomiendo disfruta fácil agradable placer acogedor sabrosas
    """
    # Malagasy
    """tsara nahafinaritra mahafinaritra matsiro faly mahaliana tiako mahay
    """.split()
)
_NEGATIVE_WORDS = frozenset(
    # English
    """bad terrible awful disappointing disappointed disappointment dreadful poor poorly mediocre frustrating
    frustrated horrible miserable shoddy sloppy dismal unpleasant lousy bland greasy soggy stale tasteless overcooked
    lukewarm rude careless unfriendly noisy cramped dirty gloomy uncomfortable dull boring bored tedious clumsy awkward
    stiff forgettable predictable flimsy broken useless worst worse hate hated annoyed annoying upset unhappy sad angry
    waste wasted regret regretted mess messy confusing problem mistake mistakes fails failures ruin ruined rots sour
    sadly lonely hurt slow painful harsh lifeless poison irritable harms stressful bitter costly trap
    """
    # French
    """mauvais mauvaise nul ennuyeux décevant décevante triste déçu
    """
    # Spanish
    """malo mala aburrido aburrida decepcionante
    """
    # Malagasy
    """ratsy mankaleo sarotra malahelo tezitra
    """.split()
)
_NEGATORS = frozenset(
    "not no never nothing nobody cannot hardly without neither nor pas jamais ne n sans nunca sin tampoco tsy".split()
)
_CLAUSE_BREAK = re.compile(r"[.,;:!?¡¿\n]+")
_WORD = re.compile(r"[^\W\d_]+")
