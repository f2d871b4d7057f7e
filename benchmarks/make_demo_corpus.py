"""Generate gradiend/demo_data/en_sentences.txt: template English sentences for the demo.

Writes >= 600 sentences with `he`, >= 600 with `she` and >= 600 with neither (no gendered pronoun
at all), one per line, each at least 8 words, shuffled with a fixed seed. Run:

    python benchmarks/make_demo_corpus.py [--out PATH] [--per-class N]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

INTROS = [
    "After the meeting ended,", "On Monday morning,", "Later that evening,",
    "During the long flight to Chicago,", "When the phone finally rang,",
    "Before the concert started,", "At the end of the week,", "Just before midnight,",
    "In the middle of the storm,", "Early the next day,", "While the coffee was brewing,",
    "As the train left the station,", "Shortly after lunch,", "On the way to the airport,",
    "After a quiet dinner,", "During the spring holidays,", "When the lights went out,",
    "At the annual company party,", "Once the guests had left,", "On a rainy afternoon,",
    "After reading the letter twice,", "Halfway through the lecture,", "Back at the hotel,",
    "In the small village by the lake,", "At the start of the semester,",
    "Following the long negotiation,", "Under the old oak tree,", "Despite the heavy traffic,",
]  # fmt: skip

NEUTRAL_SUBJECTS = [
    "the engineer", "the nurse", "the teacher", "the young doctor", "our neighbor",
    "the new manager", "the pilot", "the journalist", "the baker", "the lawyer",
    "the librarian", "the student", "the chef", "the firefighter", "the scientist",
    "the farmer", "the photographer", "the accountant", "the mechanic", "the architect",
    "the police officer", "the pharmacist", "the gardener", "the taxi driver", "the professor",
    "the programmer", "the dentist", "the carpenter", "the receptionist", "the editor",
    "the old painter", "the bus driver", "the tour guide", "the musician", "the cashier",
]  # fmt: skip

MALE_SUBJECTS = [
    "my brother", "the old man", "his father", "John", "Michael", "David", "the young man",
    "my uncle", "the boy", "Thomas", "the king", "her husband", "Peter", "the gentleman",
    "my grandfather", "the waiter", "James", "the prince", "our son", "Robert",
]  # fmt: skip

FEMALE_SUBJECTS = [
    "my sister", "the old woman", "her mother", "Mary", "Sarah", "Emma", "the young woman",
    "my aunt", "the girl", "Anna", "the queen", "his wife", "Laura", "the lady",
    "my grandmother", "the waitress", "Linda", "the princess", "our daughter", "Julia",
]  # fmt: skip

SPEECH = [
    "said that", "explained that", "told us that", "promised that", "admitted that",
    "mentioned that", "insisted that", "announced that", "wrote that", "complained that",
    "realized that", "suggested that", "confirmed that", "remembered that",
]  # fmt: skip

PREDICATES = [
    "would finish the report tomorrow.", "had never seen such a beautiful garden.",
    "was looking forward to the holidays.", "could not find the keys anywhere.",
    "needed more time to think about the offer.", "had already paid for the tickets.",
    "would call the bank first thing in the morning.", "was too tired to go out again.",
    "wanted to move closer to the city center.", "had forgotten the name of the restaurant.",
    "would bring a cake to the party on Saturday.", "was worried about the exam results.",
    "had lost the umbrella on the bus.", "might take a short break in the summer.",
    "would rather walk home than wait for a taxi.", "had read every book in the series.",
    "was planning a trip to the mountains.", "had fixed the broken window last week.",
    "would need a new laptop for the project.", "was not ready to sign the contract yet.",
    "had spent the whole weekend painting the kitchen.", "would be late for dinner again.",
    "could hear music coming from the apartment upstairs.", "was learning to play the piano.",
    "had finally answered all the old emails.", "would visit the museum after work.",
]  # fmt: skip

ACTIVITIES = [
    "closed the shop early", "left the office in a hurry", "cancelled the appointment",
    "stayed at home all day", "bought a second cup of coffee", "took the later train",
    "skipped the morning run", "turned down the invitation", "borrowed a bicycle from a friend",
    "opened all the windows", "rewrote the last chapter", "asked for a day off",
]  # fmt: skip

REASONS = [
    "wanted to visit a friend in the hospital.", "felt a little sick after lunch.",
    "had an important interview the next day.", "was expecting a delivery at noon.",
    "needed to prepare for the presentation.", "had promised to help a neighbor.",
    "did not want to miss the football match.", "was waiting for a call from the school.",
]  # fmt: skip

AFTER_ACTIONS = [
    "went straight to bed.", "made a long list of things to do.", "called an old friend.",
    "started to cook a large dinner.", "sat quietly by the window for an hour.",
    "walked along the river until sunset.", "wrote a short note to the landlord.",
]  # fmt: skip

NEUTRAL_GROUPS = [
    "the engineers", "the nurses", "the children", "our team", "the students", "the committee",
    "the two pilots", "the volunteers", "the neighbors", "the musicians", "the new employees",
    "the tourists", "the farmers", "I", "we", "you", "the whole family", "the research group",
]  # fmt: skip

NEUTRAL_ENDINGS = [
    "finished the report and went home.", "waited patiently for the next bus.",
    "talked about the weather for a long time.", "cleaned the kitchen before the guests arrived.",
    "planned a short trip to the coast.", "found an old map in the attic.",
    "decided to repaint the fence in a bright color.", "ordered pizza for everyone in the room.",
    "watched the sunset from the top of the hill.", "argued about the best route to the museum.",
    "missed the last train and took a taxi instead.", "read the instructions twice before starting.",
    "forgot to lock the back door of the house.", "planted tomatoes in the small garden.",
    "listened to the radio while driving through the night.", "answered every question correctly.",
]  # fmt: skip

TIMES = [
    "last Sunday", "after work", "on the first day of the trip", "late in the evening",
    "before the holidays", "during the summer break", "early in the morning", "yesterday",
]  # fmt: skip


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def pronoun_sentence(rng: random.Random, pron: str) -> str:
    """One sentence with exactly the pronoun ``pron`` (he/she) and no other gendered pronoun."""
    pool = (MALE_SUBJECTS if pron == "he" else FEMALE_SUBJECTS) + NEUTRAL_SUBJECTS
    subj = rng.choice(pool)
    form = rng.randrange(6)
    if form == 0:
        return f"{rng.choice(INTROS)} {subj} {rng.choice(SPEECH)} {pron} {rng.choice(PREDICATES)}"
    if form == 1:
        return f"{_cap(subj)} {rng.choice(ACTIVITIES)} because {pron} {rng.choice(REASONS)}"
    if form == 2:
        return f"{rng.choice(INTROS)} {subj} {rng.choice(ACTIVITIES)}, and then {pron} {rng.choice(AFTER_ACTIONS)}"
    if form == 3:
        return f"Everyone who knew {subj} was sure that {pron} {rng.choice(PREDICATES)}"
    if form == 4:
        return f"{_cap(subj)} {rng.choice(SPEECH)} {pron} {rng.choice(PREDICATES)}"
    return f"{_cap(pron)} {rng.choice(PREDICATES)[:-1]}, or at least that is what {subj} told everyone."


_GENDERED = re.compile(r"\b(he|she|him|her|his|hers|himself|herself)\b", re.IGNORECASE)


def neutral_sentence(rng: random.Random) -> str:
    """One sentence without any gendered pronoun."""
    form = rng.randrange(4)
    if form == 0:
        return f"{rng.choice(INTROS)} {rng.choice(NEUTRAL_GROUPS)} {rng.choice(NEUTRAL_ENDINGS)}"
    if form == 1:
        return f"{_cap(rng.choice(NEUTRAL_SUBJECTS))} {rng.choice(NEUTRAL_ENDINGS)}"
    if form == 2:
        return f"{_cap(rng.choice(NEUTRAL_GROUPS))} {rng.choice(NEUTRAL_ENDINGS)[:-1]} {rng.choice(TIMES)}."
    return f"{rng.choice(INTROS)} {rng.choice(NEUTRAL_SUBJECTS)} {rng.choice(ACTIVITIES)} and {rng.choice(AFTER_ACTIONS)}"


def generate(per_class: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    makers = {
        "he": lambda: pronoun_sentence(rng, "he"),
        "she": lambda: pronoun_sentence(rng, "she"),
        "neutral": lambda: neutral_sentence(rng),
    }
    for kind, make in makers.items():
        n = 0
        while n < per_class:
            s = make()
            s = re.sub(r"\s+", " ", s).strip()
            if s in seen or len(s.split()) < 8:
                continue
            found = {m.lower() for m in _GENDERED.findall(s)}
            if kind == "neutral" and found:
                continue
            if kind in ("he", "she") and kind not in found:
                continue
            if kind == "he" and "she" in found or kind == "she" and "he" in found:
                continue
            seen.add(s)
            out.append(s)
            n += 1
    rng.shuffle(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1] / "gradiend" / "demo_data" / "en_sentences.txt"
    parser.add_argument("--out", type=Path, default=default)
    parser.add_argument("--per-class", type=int, default=600)
    args = parser.parse_args()
    sentences = generate(args.per_class)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    print(f"wrote {len(sentences)} sentences to {args.out}")


if __name__ == "__main__":
    main()
