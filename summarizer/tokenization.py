"""The byte-level BPE tokenizer shared by bodies and titles (one vocabulary, so a model can
share its input and output embeddings). Byte-level means no text is ever unknown."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, START, END = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, START, END)  # ids 0..3, in this order
# The masks of self-supervised pretraining (summarizer/pretraining.py), ids 4 and 5 in a
# tokenizer trained for it. Others do without them: reserving them always would shift every
# id and change datasets (and the shipped model's data fingerprint) for nothing.
MASK_SENTENCE, MASK_SPAN = "<mask_sentence>", "<mask_span>"
PRETRAINING_TOKENS = (MASK_SENTENCE, MASK_SPAN)


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                    pretraining: bool = False) -> Tokenizer:
    """Train on the train split only, so dev and test measure unseen text honestly; with
    `pretraining`, the mask tokens follow the four special tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *(PRETRAINING_TOKENS if pretraining else ())],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def title_text(tokenizer: Tokenizer, ids: list[int]) -> str:
    """A generated title's text. A byte-level model can stop or go astray inside a character's
    bytes; the decoder shows those as U+FFFD, which a title should never show."""
    return tokenizer.decode(ids).replace("\ufffd", "").strip()


def title_words(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """A title's words as ROUGE compares them: lowercase letters and digits."""
    return re.findall(r"[^\W_]+", title_text(tokenizer, ids).lower())


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    return {name: tokenizer.token_to_id(token)
            for name, token in zip(("pad", "unk", "start", "end"), SPECIAL_TOKENS, strict=True)}


def mask_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The pretraining mask tokens this tokenizer has (none unless trained with them)."""
    found = {token: tokenizer.token_to_id(token) for token in PRETRAINING_TOKENS}
    return {token: id_ for token, id_ in found.items() if id_ is not None}
