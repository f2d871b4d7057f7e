"""The morphological features of Universal Dependencies (v2) and the values each can take, plus
the language-specific features spaCy's pipelines set. A ``spacy_tags`` key or value outside
these (and outside what the loaded pipeline declares) can match no token."""

from __future__ import annotations

# Universal features: the closed value sets of https://universaldependencies.org/u/feat/
UD_FEATURES: dict[str, frozenset[str]] = {
    name: frozenset(values.split())
    for name, values in {
        "PronType": "Art Dem Emp Exc Ind Int Neg Prs Rcp Rel Tot",
        "NumType": "Card Dist Frac Mult Ord Range Sets",
        "Poss": "Yes",
        "Reflex": "Yes",
        "Foreign": "Yes",
        "Abbr": "Yes",
        "Typo": "Yes",
        "ExtPos": "ADJ ADP ADV AUX CCONJ DET INTJ PRON PROPN SCONJ",
        "Gender": "Com Fem Masc Neut",
        "Animacy": "Anim Hum Inan Nhum",
        "Number": "Coll Count Dual Grpa Grpl Inv Pauc Plur Ptan Sing Tri",
        "Case": (
            "Abs Acc Erg Nom Abe Ben Cau Cmp Cns Com Dat Dis Equ Gen Ins Par Tem Tra Voc Abl Add "
            "Ade All Del Ela Ess Ill Ine Lat Loc Per Sbe Sbl Spl Sub Sup Ter"
        ),
        "Definite": "Com Cons Def Ind Spec",
        "Deixis": "Abv Bel Even Med Nvis Prox Remt",
        "DeixisRef": "1 2",
        "Degree": "Abs Aug Cmp Dim Equ Pos Sup",
        "VerbForm": "Conv Fin Gdv Ger Inf Part Sup Vnoun",
        "Mood": "Adm Cnd Des Imp Ind Int Irr Jus Nec Opt Pot Prp Qot Sub",
        "Tense": "Fut Imp Past Pqp Pres",
        "Aspect": "Hab Imp Iter Perf Prog Prosp",
        "Voice": "Act Antip Bfoc Cau Dir Inv Lfoc Mid Pass Rcp",
        "Evident": "Fh Nfh",
        "Polarity": "Neg Pos",
        "Person": "0 1 2 3 4",
        "Polite": "Elev Form Humb Infm",
        "Clusivity": "Ex In",
    }.items()
}

# Features whose values are open (or language-specific): only the name is checked.
OPEN_FEATURES = frozenset(
    """
    NounClass AdpType AdvType ConjType NounType PartType PunctSide PunctType VerbType NumForm
    NumValue NameType Hyph Style Variant Form Position Subcat InflClass Strength
    """.split()
)


def feature_name(key: str) -> str:
    """The base name of a layered feature (``Number[psor]`` → ``Number``)."""
    return key.split("[", 1)[0]
