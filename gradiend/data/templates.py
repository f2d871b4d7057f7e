"""Masked English sentences whose context does not decide a person's gender: an occupation noun
and a pronoun slot, for balancing he/she-like classes (``evaluate_decoder(balance_data=...)``).

The run's own test rows imply their class (a name, a gendered noun), so balancing on them asks
the model to stop following the context; these sentences ask where nothing in the context
should decide, which is what the bias benchmarks (WinoBias, CrowS-Pairs) probe.
"""

from __future__ import annotations

import random

# occupations of every kind, none of which names a gender
OCCUPATIONS = (
    "accountant", "architect", "assistant", "attendant", "auditor", "baker", "cashier", "chef",
    "chemist", "cleaner", "clerk", "cook", "counselor", "dentist", "designer", "developer",
    "doctor", "driver", "economist", "editor", "electrician", "engineer", "farmer",
    "firefighter", "guard", "hairdresser", "janitor", "journalist", "judge", "lawyer",
    "librarian", "manager", "mechanic", "nurse", "painter", "paramedic", "pharmacist",
    "photographer", "physician", "pilot", "plumber", "professor", "programmer", "psychologist",
    "receptionist", "researcher", "salesperson", "scientist", "secretary", "student",
    "supervisor", "surgeon", "tailor", "teacher", "technician", "therapist", "translator",
    "veterinarian", "writer",
)  # fmt: skip

# {o}: the occupation, {m}: the mask. The pronoun's form decides the frames: the subject (he /
# she), the object (him / her) or the possessive determiner (his / her).
FRAMES = {
    "subject": (
        "The {o} said that {m} would be late today.",
        "The {o} told the client that {m} had finished the report.",
        "After lunch, the {o} explained why {m} was leaving early.",
        "Everyone knew that the {o} was tired because {m} had worked all night.",
        "The {o} called and said {m} could not come.",
        "When the {o} arrived, {m} went straight to the office.",
        "The {o} was happy because {m} had passed the exam.",
        "Yesterday the {o} mentioned that {m} wanted a new job.",
    ),
    "object": (
        "The {o} was late, so we waited for {m} at the door.",
        "Nobody had seen the {o}, so the manager called {m} twice.",
        "The {o} needed help, so a colleague gave {m} a hand.",
        "The {o} did good work, and the team thanked {m} for it.",
    ),
    "possessive": (
        "The {o} forgot {m} keys at the office.",
        "The {o} finished {m} work before noon.",
        "The {o} left {m} coat on the chair.",
        "The {o} called {m} family after the meeting.",
    ),
}


def neutral_templates(
    mask: str = "[MASK]", form: str = "subject", n: int | None = None, seed: int = 0
) -> list[str]:
    """Masked sentences (occupation × frame) in which nothing decides the pronoun at ``mask``.

    ``form``: ``"subject"`` (he/she), ``"object"`` (him/her) or ``"possessive"`` (his/her);
    ``n``: a seeded sample of that many (default: every combination, in a fixed order)."""
    if form not in FRAMES:
        raise ValueError(f"form must be one of {sorted(FRAMES)}, got {form!r}")
    if not isinstance(mask, str) or not mask:
        raise ValueError(f"mask must be a non-empty string (the run's mask), got {mask!r}")
    texts = [f.format(o=o, m=mask) for f in FRAMES[form] for o in OCCUPATIONS]
    if n is None:
        return texts
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if n >= len(texts):
        return texts
    return random.Random(seed).sample(texts, n)
