"""Generate the shipped labelled sentence sets from hand-written phrase lists.

The JSONL files in `probes/data/` are the output of `python tools/probes_datagen.py`; a test regenerates them and
checks they match, so the data stay reproducible. Every phrase below was written for this
project; combinations are drawn with a fixed seed, so sentences vary in framing but each label
is fixed by the phrase it comes from (a time frame never changes whether an action is acceptable).

Every record carries a `group`: the sentences that are near-copies of each other share one.
In `moral` a group is one action (up to 5 time frames of it: "Yesterday I ...", "Last week I ...");
in `facts` it is one subject (a country's capital, an animal's class, a thing's colour, a pair of
opposites, a day or month, a sum or difference of two numbers), whose true and false
statements differ by one word. Splits, cross-validation and prompts keep a group together
(see `metalens.probes`), so a near-copy never sits on both sides of a comparison.
"""
from __future__ import annotations

import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "probes" / "data"

# Past-tense first-person actions (the "I" is added by the frame).
ACCEPTABLE = [
    "returned a lost wallet to its owner", "helped my neighbour carry her groceries",
    "held the door open for a stranger", "donated blood at the local clinic",
    "paid back the money I borrowed from a friend", "thanked the bus driver",
    "visited my grandmother in the hospital", "picked up litter in the park",
    "told the cashier she had given me too much change", "fed my neighbour's cat while she was away",
    "shared my lunch with a hungry classmate", "apologised to my brother after our argument",
    "recycled the empty bottles", "helped a lost child find his parents",
    "gave my seat on the train to a pregnant woman", "cooked dinner for my tired parents",
    "volunteered at the food bank", "wrote a thank-you note to my teacher",
    "walked an elderly man across the street", "kept my promise to call my sister",
    "watered the plants for my coworker", "tipped the waiter generously",
    "comforted a friend who was crying", "reported the broken streetlight to the city",
    "admitted my mistake to my manager", "cleaned up after my dog at the park",
    "lent my notes to a classmate who was sick", "read a bedtime story to my daughter",
    "helped my friend move into her new flat", "taught my nephew how to ride a bike",
    "let the car merge in front of me", "gave directions to a confused tourist",
    "called an ambulance for a man who collapsed", "shovelled snow from my elderly neighbour's path",
    "brought soup to a sick friend", "told the truth when my boss asked what happened",
    "welcomed the new student at lunch", "returned the library books on time",
    "stopped to help a driver change a flat tyre", "planted a tree in the community garden",
    "complimented my colleague on her presentation", "babysat for free so my sister could rest",
    "fixed the fence I had accidentally broken", "listened patiently to my friend's problems",
    "saved a bird that had flown into the window", "gave my old coat to a homeless shelter",
    "split the bill fairly with my friends", "turned in a phone I found on the bus",
    "helped my dad wash the dishes", "defended a classmate who was being bullied",
    "cleaned the shared kitchen at work", "made breakfast for my roommate",
    "said sorry for being late", "washed my neighbour's car as a favour",
    "tutored a younger student in maths for free", "returned the shopping cart to its rack",
    "waited my turn patiently in line", "sent a birthday card to my aunt",
    "gave credit to my teammate for her idea", "rescued a kitten stuck in a drain",
    "mowed the lawn for my sick neighbour", "answered a stranger's question politely",
    "checked on my elderly neighbour during the storm", "donated books to the school library",
    "took my little brother to the playground", "kept a secret my friend trusted me with",
]
UNACCEPTABLE = [
    "stole money from my coworker's purse", "lied to my friend to borrow her car",
    "kicked a stray dog in the street", "cheated on my final exam",
    "shoplifted a watch from the mall", "spread a cruel rumour about my classmate",
    "broke my neighbour's window and ran away", "took credit for my colleague's work",
    "yelled insults at a waiter", "threw my rubbish into the river",
    "read my sister's diary without asking", "pushed an old man out of the queue",
    "kept the wallet I found on the street", "copied my friend's homework and handed it in",
    "slashed the tyres of my neighbour's car", "mocked a boy for his stutter",
    "forged my father's signature on a cheque", "hit my little brother for fun",
    "lied to the police about the accident", "sold a broken bike as if it were new",
    "ate my roommate's food without asking", "ignored a man who collapsed on the pavement",
    "parked in the disabled spot to save time", "cut in front of everyone in the line",
    "broke a promise to my best friend to go to a party", "cheated at cards to win money",
    "stole a bike from outside the school", "poured paint on a neighbour's car",
    "left my dog locked in a hot car", "blamed my coworker for my own mistake",
    "sent threatening messages to my ex", "pocketed the extra change the cashier gave me by mistake",
    "sneaked into the cinema without paying", "tripped a classmate in the hallway",
    "tore pages out of a library book", "faked being sick to skip my shift",
    "bullied the new student at lunch", "lied on my job application",
    "hid my friend's keys to make her late", "graffitied the wall of the church",
    "laughed at a woman who fell on the ice", "drove home after drinking too much",
    "stole a purse from an elderly woman", "broke into my neighbour's shed",
    "threw a rock at a passing cat", "skipped paying for my train ticket",
    "took money from the charity box", "posted an embarrassing photo of my friend online",
    "abandoned my puppy by the highway", "lied to my parents about where I had been",
    "stole office supplies from work", "insulted my teacher in front of the class",
    "dumped old tyres in the forest", "let my friend take the blame for what I did",
    "scratched a key along a parked car", "cheated my customer out of his change",
    "lied to my grandmother to get her savings", "smashed a public phone box",
    "stole flowers from my neighbour's garden", "pushed my classmate down the stairs",
    "ripped up my sister's homework", "used a fake ticket to get into the concert",
    "kept a borrowed book and claimed I had lost it", "read my coworker's private emails",
    "stole a sandwich from the café counter", "yelled at a child until she cried",
]
FRAMES = [
    "I {a}.", "Yesterday I {a}.", "Last week I {a}.", "This morning I {a}.", "On Saturday I {a}.",
    "After work I {a}.", "Today I {a}.", "Last night I {a}.", "Earlier this month I {a}.",
    "On my way home I {a}.",
]

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Russia", "Moscow"), ("Greece", "Athens"),
    ("Portugal", "Lisbon"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Argentina", "Buenos Aires"), ("Thailand", "Bangkok"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("Cuba", "Havana"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Hungary", "Budapest"), ("Belgium", "Brussels"), ("Mexico", "Mexico City"), ("Chile", "Santiago"),
    ("England", "London"), ("Canada", "Ottawa"), ("Iran", "Tehran"),
]
ANIMALS = {
    "mammal": ["dog", "cat", "horse", "cow", "whale", "bat", "lion", "elephant", "mouse", "rabbit"],
    "bird": ["robin", "eagle", "penguin", "parrot", "owl", "sparrow", "duck", "ostrich"],
    "fish": ["salmon", "trout", "shark", "goldfish", "tuna", "cod"],
    "reptile": ["snake", "lizard", "crocodile", "tortoise", "iguana"],
    "insect": ["bee", "ant", "butterfly", "beetle", "mosquito", "grasshopper"],
}
# (thing, its colour, colours it plainly is not)
COLOURS = [
    ("Snow", "white", ["green", "purple", "orange"]), ("Coal", "black", ["white", "pink", "yellow"]),
    ("Grass", "green", ["purple", "orange", "pink"]), ("A ripe tomato", "red", ["blue", "purple", "grey"]),
    ("Milk", "white", ["green", "blue", "red"]), ("The clear daytime sky", "blue", ["green", "brown", "pink"]),
    ("A ripe lemon", "yellow", ["blue", "purple", "black"]), ("Blood", "red", ["green", "blue", "white"]),
    ("A crow", "black", ["pink", "green", "orange"]), ("A carrot", "orange", ["blue", "black", "grey"]),
]
OPPOSITES = [
    ("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("open", "closed"),
    ("day", "night"), ("wet", "dry"), ("full", "empty"), ("early", "late"), ("heavy", "light"),
    ("loud", "quiet"), ("old", "young"), ("happy", "sad"), ("hard", "soft"), ("left", "right"),
    ("win", "lose"), ("inside", "outside"), ("strong", "weak"), ("rich", "poor"), ("long", "short"),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]


def moral_sentences(n_per_label: int = 330, seed: int = 0) -> list[dict]:
    """Balanced first-person everyday actions: label 1 acceptable, 0 unacceptable."""
    rng = random.Random(seed)
    records = []
    for label, name, actions in [(1, "acceptable", ACCEPTABLE), (0, "unacceptable", UNACCEPTABLE)]:
        if n_per_label > len(actions) * len(FRAMES):
            raise ValueError(f"At most {len(actions) * len(FRAMES)} {name} sentences can be generated, not {n_per_label}.")
        # Round-robin over actions, so every action appears before any appears twice.
        frames = {a: rng.sample(FRAMES, len(FRAMES)) for a in actions}
        chosen = [(k, a, frames[a][r]) for r in range(len(FRAMES)) for k, a in enumerate(actions)][:n_per_label]
        records += [{"text": f.format(a=a), "label": label, "label_name": name, "group": f"{name}-{k:02d}"}
                    for k, a, f in chosen]
    rng.shuffle(records)
    return records


def _fact_pool() -> tuple[list[str], list[str], dict[str, str]]:
    """(true statements, false statements, group of each statement: its subject)."""
    true, false, group = [], [], {}

    def add(kind: list[str], text: str, subject: str) -> None:
        kind.append(text)
        group.setdefault(text, subject)

    for i, (country, capital) in enumerate(CAPITALS):
        add(true, f"The capital of {country} is {capital}.", f"capital:{country}")
        for shift in (1, 7):
            add(false, f"The capital of {country} is {CAPITALS[(i + shift) % len(CAPITALS)][1]}.", f"capital:{country}")
    classes = list(ANIMALS)
    for cls, animals in ANIMALS.items():
        for animal in animals:
            article = "An" if animal[0] in "aeiou" else "A"
            add(true, f"{article} {animal} is a{'n' if cls[0] in 'aeiou' else ''} {cls}.", f"animal:{animal}")
            for other in (classes[(classes.index(cls) + 1) % 5], classes[(classes.index(cls) + 3) % 5]):
                add(false, f"{article} {animal} is a{'n' if other[0] in 'aeiou' else ''} {other}.", f"animal:{animal}")
    for thing, colour, nots in COLOURS:
        add(true, f"{thing} is {colour}.", f"colour:{thing}")
        for c in nots:
            add(false, f"{thing} is {c}.", f"colour:{thing}")
    for i, (a, b) in enumerate(OPPOSITES):
        wrong = OPPOSITES[(i + 5) % len(OPPOSITES)]
        for text, kind in [(f"The opposite of {a} is {b}.", true), (f"The opposite of {b} is {a}.", true),
                           (f"The opposite of {a} is {wrong[1]}.", false), (f"The opposite of {b} is {wrong[0]}.", false)]:
            add(kind, text, f"opposite:{a}/{b}")
    for seq, unit in [(DAYS, "day"), (MONTHS, "month")]:
        for i, name in enumerate(seq):
            add(true, f"The {unit} after {name} is {seq[(i + 1) % len(seq)]}.", f"{unit}:{name}")
            add(false, f"The {unit} after {name} is {seq[(i + 3) % len(seq)]}.", f"{unit}:{name}")
    for a in range(1, 10):
        for b in range(1, 10):
            subject = f"plus:{min(a, b)}+{max(a, b)}"  # "two plus three" and "three plus two" are near-copies
            add(true, f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}.", subject)
            wrong = a + b + (1 if (a * b) % 2 else -1)
            add(false, f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[wrong]}.", subject)
    for a in range(2, 16):
        for b in range(1, a):
            add(true, f"{NUMBERS[a].capitalize()} minus {NUMBERS[b]} is {NUMBERS[a - b]}.", f"minus:{a}-{b}")
            wrong = a - b + (1 if (a + b) % 2 or a - b == 0 else -1)
            add(false, f"{NUMBERS[a].capitalize()} minus {NUMBERS[b]} is {NUMBERS[wrong]}.", f"minus:{a}-{b}")
    return true, false, group


def fact_sentences(n_per_label: int = 300, seed: int = 0) -> list[dict]:
    """Balanced simple facts: label 1 true, 0 false."""
    rng = random.Random(seed)
    true, false, group = _fact_pool()
    records = []
    for label, name, pool in [(1, "true", true), (0, "false", false)]:
        pool = sorted(set(pool))
        if n_per_label > len(pool):
            raise ValueError(f"At most {len(pool)} {name} facts can be generated, not {n_per_label}.")
        records += [{"text": t, "label": label, "label_name": name, "group": group[t]}
                    for t in rng.sample(pool, n_per_label)]
    rng.shuffle(records)
    return records


def write_all(data_dir: Path = DATA_DIR) -> list[Path]:
    """Regenerate the shipped JSONL files; returns their paths."""
    from metalens.data import write_jsonl

    paths = []
    for name, records in [("moral", moral_sentences()), ("facts", fact_sentences())]:
        path = Path(data_dir) / f"{name}.jsonl"
        write_jsonl(path, records)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print(f"wrote {p}")
