"""Tiny models and a planted-feature corpus that the tests build (no hub, no downloads)."""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

MALE = ["king", "father", "man", "boy", "brother", "uncle", "husband", "son", "prince", "monk"]
FEMALE = [
    "queen",
    "mother",
    "woman",
    "girl",
    "sister",
    "aunt",
    "wife",
    "daughter",
    "princess",
    "nun",
]
NEUTRAL = ["doctor", "teacher", "child", "friend", "neighbor", "student", "pilot", "baker"]
VERBS = ["said", "thinks", "knows", "believes", "hopes", "told", "wrote", "claims"]
ACTIONS = ["come", "leave", "sing", "work", "read", "win", "stay", "cook", "run", "write"]
TIMES = ["today", "tomorrow", "soon", "later", "early", "again", "now", "tonight"]
OTHER = [
    "the",
    "that",
    "will",
    "it",
    "they",
    "we",
    "a",
    "book",
    "song",
    "home",
    "and",
    "is",
    "good",
    ".",
]
PRONOUNS = ["he", "she"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]"]
WORDS = MALE + FEMALE + NEUTRAL + VERBS + ACTIONS + TIMES + OTHER + PRONOUNS


SENTINEL = "<extra_id_0>"  # T5's mask


def make_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    sentinel = [SENTINEL] if kind in ("t5", "bart") else []  # the others keep their vocabulary
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS + sentinel)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    if kind in ("t5", "bart"):  # encoder-decoder: T5 masks with a sentinel, BART with [MASK]
        tok.post_processor = processors.TemplateProcessing(
            single="$A [SEP]", special_tokens=[("[SEP]", 3)]
        )
        extra = {"mask_token": "[MASK]"} if kind == "bart" else {}
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            eos_token="[SEP]",
            bos_token="[CLS]",
            additional_special_tokens=[SENTINEL],
            model_max_length=64,
            **extra,
        )
    if kind == "mlm":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=64,
        )
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", 5)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[SEP]",
        model_max_length=64,
    )


def sentence(rng: random.Random, gender: str | None) -> str:
    """A sentence whose pronoun agrees with the subject: the planted feature."""
    if gender is None:
        noun, pron = rng.choice(NEUTRAL), rng.choice(["it", "they", "we"])
    else:
        noun = rng.choice(MALE if gender == "he" else FEMALE)
        pron = gender
    return (
        f"the {noun} {rng.choice(VERBS)} that {pron} will {rng.choice(ACTIONS)} "
        f"{rng.choice(TIMES)} ."
    )


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng, rng.choice(["he", "she", None])) for _ in range(n)]


def make_model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    tok = make_tokenizer(kind)
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    if kind == "mlm":
        cfg = BertConfig(max_position_embeddings=64, pad_token_id=0, **common)
        model = BertForMaskedLM(cfg)
    elif kind == "t5":
        cfg = T5Config(
            vocab_size=len(tok),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=3,
            decoder_start_token_id=0,
        )
        model = T5ForConditionalGeneration(cfg)
    elif kind == "bart":
        cfg = BartConfig(
            vocab_size=len(tok),
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=3,
            forced_eos_token_id=3,
        )
        model = BartForConditionalGeneration(cfg)
    else:
        cfg = LlamaConfig(
            max_position_embeddings=64,
            pad_token_id=0,
            bos_token_id=5,
            eos_token_id=3,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            **common,
        )
        model = LlamaForCausalLM(cfg)
    return model, tok


def pretrain(model, tok, kind: str, steps: int = 300, seed: int = 0):
    """Teach the tiny model the planted feature (pronoun agrees with subject)."""
    torch.manual_seed(seed)
    texts = corpus(2000, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = texts[(step * 32) % len(texts) :][:32]
        enc = tok(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        if kind == "mlm":
            ids = enc["input_ids"].clone()
            prob = torch.rand(ids.shape)
            pron = torch.isin(ids, torch.tensor(tok.convert_tokens_to_ids(PRONOUNS)))
            chosen = ((prob < 0.15) | (pron & (prob < 0.7))) & (enc["attention_mask"] == 1)
            chosen &= ids > 5
            labels[~chosen] = -100
            ids[chosen] = tok.mask_token_id
            out = model(input_ids=ids, attention_mask=enc["attention_mask"], labels=labels)
        else:
            out = model(**enc, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model


def pretrain_seq2seq(model, tok, steps: int = 200, seed: int = 0):
    """Teach a tiny encoder-decoder model the planted feature: the encoder (with the shared
    output head) predicts masked words (the decoder is left as initialised)."""
    from gradiend.lm.seq2seq import Seq2SeqEncoderMLMObjective, encoder_head_logits

    torch.manual_seed(seed)
    mask_id = Seq2SeqEncoderMLMObjective(tok).mask_token_id
    texts = corpus(2000, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pron = torch.tensor(tok.convert_tokens_to_ids(PRONOUNS))
    model.train()
    for step in range(steps):
        enc = tok(texts[(step * 32) % len(texts) :][:32], return_tensors="pt", padding=True)
        ids, att = enc["input_ids"], enc["attention_mask"]
        prob = torch.rand(ids.shape)
        chosen = ((prob < 0.15) | (torch.isin(ids, pron) & (prob < 0.7))) & (att == 1)
        chosen &= ids > 5
        masked = torch.where(chosen, torch.full_like(ids, mask_id), ids)
        rows, pos = chosen.nonzero(as_tuple=True)
        logits = encoder_head_logits(model, masked, att, rows, pos)
        loss = torch.nn.functional.cross_entropy(logits, ids[rows, pos])
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model
