"""Tokenizer training and the fixed-length int32 arrays written as .npy shards."""

from __future__ import annotations

import numpy as np
import pytest

from summarizer.featurize import encode_bodies, encode_titles, shard_name, write_shards
from summarizer.tokenization import SPECIAL_TOKENS, special_ids, title_text, train_tokenizer

TEXTS = [
    "The parser crashes on empty input",
    "Cannot build the project with cargo on Windows",
    "Parser error when the config file is missing",
    "Export to CSV hangs when the date range spans a DST change",
    "Crash when saving an empty file",
] * 4
VOCAB = 320


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=VOCAB)


def test_special_tokens_have_ids_0_to_3(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<s>", "</s>")
    assert special_ids(tokenizer) == {"pad": 0, "unk": 1, "start": 2, "end": 3}


def test_vocabulary_learns_merges(tokenizer):
    assert 260 < tokenizer.get_vocab_size() <= VOCAB  # 256 bytes + 4 specials + merges
    assert len(tokenizer.encode("parser").ids) < len("parser")


@pytest.mark.parametrize(
    "text",
    [
        "The parser crashes on empty input",
        "  leading spaces,\ttabs\tand\n\nblank lines  ",
        "emoji 😀🚀 and a family 👩‍👩‍👧 and flags 🇯🇵",
        "中文字符 日本語のテキスト 한국어",
        "combining e\u0301, NUL \x00, rtl \u202eabc",
        "never seen before: zxqv ÆØÅ ß",
        "",
    ],
)
def test_any_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert special_ids(tokenizer)["unk"] not in ids
    assert tokenizer.decode(ids) == text


def test_a_title_cut_inside_a_character_shows_no_replacement_character(tokenizer):
    ids = tokenizer.encode("crash 中文", add_special_tokens=False).ids
    assert "\ufffd" in tokenizer.decode(ids[:-1])  # the last character's bytes, cut short
    assert title_text(tokenizer, ids[:-1]).startswith("crash")
    assert "\ufffd" not in title_text(tokenizer, ids[:-1])
    assert title_text(tokenizer, ids) == "crash 中文"


def test_training_is_deterministic():
    first = train_tokenizer(TEXTS, vocab_size=VOCAB)
    second = train_tokenizer(list(TEXTS), vocab_size=VOCAB)
    assert first.to_str() == second.to_str()


def test_bodies_padded_with_zero_and_truncation_counted(tokenizer):
    texts = ["parser", "The parser crashes on empty input " * 5, ""]
    array, truncated = encode_bodies(tokenizer, texts, length=12)
    assert array.shape == (3, 12) and array.dtype == np.int32
    assert truncated == 1
    short = tokenizer.encode("parser", add_special_tokens=False).ids
    assert array[0, : len(short)].tolist() == short
    assert (array[0, len(short) :] == 0).all()
    full = tokenizer.encode(texts[1], add_special_tokens=False).ids
    assert array[1].tolist() == full[:12]
    assert (array[2] == 0).all()
    assert not np.isin(array[:2, : len(short)], [1, 2, 3]).any()  # no <unk>, <s>, </s> added


def test_body_exactly_at_length_is_not_counted_as_truncated(tokenizer):
    ids = tokenizer.encode(TEXTS[0], add_special_tokens=False).ids
    array, truncated = encode_bodies(tokenizer, [TEXTS[0]], length=len(ids))
    assert truncated == 0
    assert array[0].tolist() == ids


def test_titles_wrapped_padded_and_truncation_counted(tokenizer):
    texts = ["Crash when saving an empty file", "parser " * 30, ""]
    length = 16
    array, truncated = encode_titles(tokenizer, texts, length)
    assert array.shape == (3, length) and array.dtype == np.int32
    assert truncated == 1
    ids = tokenizer.encode(texts[0], add_special_tokens=False).ids
    assert len(ids) <= length - 2
    assert array[0, : len(ids) + 2].tolist() == [2, *ids, 3]
    assert (array[0, len(ids) + 2 :] == 0).all()
    # Cut titles keep their </s> as the last token.
    long_ids = tokenizer.encode(texts[1], add_special_tokens=False).ids
    assert array[1].tolist() == [2, *long_ids[: length - 2], 3]
    assert array[2].tolist() == [2, 3] + [0] * (length - 2)


def test_title_filling_room_exactly_is_not_truncated(tokenizer):
    ids = tokenizer.encode(TEXTS[1], add_special_tokens=False).ids
    array, truncated = encode_titles(tokenizer, [TEXTS[1]], len(ids) + 2)
    assert truncated == 0
    assert array[0].tolist() == [2, *ids, 3]


def test_special_token_text_in_issues_is_not_a_special_id(tokenizer):
    body = "Use <s>old</s> and pad with <pad> tokens"
    bodies, _ = encode_bodies(tokenizer, [body], 60)
    ids = bodies[0][bodies[0] != 0].tolist()
    assert not {1, 2, 3} & set(ids)
    assert tokenizer.decode(ids) == body
    title = "Decoder emits </s> too early"
    row = encode_titles(tokenizer, [title], 60)[0][0].tolist()
    assert row.count(2) == 1 and row.count(3) == 1
    assert tokenizer.decode(row[1 : row.index(3)]) == title


@pytest.mark.parametrize(("rows", "count"), [(10, 3), (7, 7), (5, 1), (2, 3)])
def test_write_shards_contiguous_int32_mmap(tmp_path, rows, count):
    columns = {
        "body": np.arange(rows * 4, dtype=np.int32).reshape(rows, 4),
        "title": np.arange(rows * 3, dtype=np.int32).reshape(rows, 3) + 1000,
    }
    shards = write_shards(tmp_path, "train", columns, count)
    assert len(shards) == count
    assert sum(entry["rows"] for entry in shards) == rows
    assert all(entry["rows"] >= rows // count for entry in shards)  # balanced
    for column, array in columns.items():
        names = [entry[column] for entry in shards]
        assert names == [shard_name("train", i, count, column) for i in range(count)]
        loaded = [np.load(tmp_path / name, mmap_mode="r") for name in names]
        assert all(isinstance(part, np.memmap) for part in loaded)
        assert all(part.dtype == np.int32 for part in loaded)
        assert [len(part) for part in loaded] == [entry["rows"] for entry in shards]
        assert np.array_equal(np.concatenate(loaded), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(entry[c] for entry in shards for c in columns)


def test_shard_name():
    assert shard_name("dev", 2, 16, "title") == "dev-00002-of-00016.title.npy"
