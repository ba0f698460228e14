"""The serving engine (`Summarizer`, ONNX Runtime): its graphs compute the Keras models'
logits, its titles equal Keras decoding (tiny models of both kinds, and the shipped model on
real issues), it never imports TensorFlow, and it refuses bad bundles and bad calls clearly."""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np
import pytest
from model_folders import VARIANTS, randomized, write_model_folder

from summarizer import storage
from summarizer.decoding import SERVING_DECODING, DecodeConfig, log_softmax
from summarizer.engine import BATCH, SHIPPED, Summarizer
from summarizer.errors import NothingToSummarize, UserError
from summarizer.export import export
from summarizer.lead import lead_sentence
from summarizer.titles import KerasTitler
from summarizer.train_config import TrainConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "issues"
BODIES = [
    "The export button does nothing. I click it and wait, and no file is written anywhere.",
    "Crash on startup",
    "After upgrading to 2.3 the settings page shows a blank screen in Firefox but works in Chrome. "
    "The console says TypeError: cannot read properties of undefined (reading 'theme').",
    "<!-- template --> ```\nTraceback (most recent call last):\n  File \"x.py\", line 1\n```\nIt fails.",
]


@pytest.fixture(scope="module")
def bundles(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An exported bundle per model variant, from tiny models with spread-out random weights."""
    vocab = json.loads((tiny_dataset / "dataset.json").read_text())["vocab_size"]
    root = tmp_path_factory.mktemp("bundles")
    found = {}
    for kind, model_config in VARIANTS.items():
        config = TrainConfig(dataset=str(tiny_dataset), body_len=64, title_len=12, model=model_config)
        run = write_model_folder(randomized(kind, vocab), config, tiny_dataset / "tokenizer.json",
                                 root / f"run-{kind}")
        export(str(run), str(root / kind))
        found[kind] = root / kind
    return found


@pytest.mark.parametrize("kind", VARIANTS)
def test_graphs_compute_the_keras_models_log_probabilities(kind: str, bundles: dict[str, Path]) -> None:
    """Step by step through the ONNX encoder and decoder (with the key/value cache), and all at
    once through the scorer, give the full Keras model's teacher-forced logits at every
    position, padded bodies included."""
    engine = Summarizer.load(bundles[kind], threads=1)
    model = keras.models.load_model(bundles[kind].parent / f"run-{kind}" / "model.keras")  # as trained
    vocab = model.output_shape[-1]
    rng = np.random.default_rng(1)
    body = rng.integers(1, vocab, (3, 12))
    body[1, 7:] = 0
    body[2, :] = 0  # an empty body attends to nothing
    title = rng.integers(4, vocab, (3, 7))
    title[:, 0] = 2
    full = keras.ops.convert_to_numpy(model((body.astype("int32"), title.astype("int32")), training=False))
    state = dict(zip(engine._state_names, engine._encoder.run(None, {"body": body}), strict=True))
    steps = []
    for position in range(title.shape[1]):
        log_probs, *updated = engine._decoder.run(engine._step_outputs,
                                                  {"token": title[:, position], **state})
        state |= dict(zip(engine._updated, updated, strict=True))
        steps.append(log_probs)
    assert np.ptp(full, axis=-1).min() > 0.1  # logits that differ well beyond the tolerance
    np.testing.assert_allclose(np.stack(steps, axis=1), log_softmax(full), atol=1e-4, rtol=0)
    # The scorer: every position at once, as training runs the model.
    target = rng.integers(4, vocab, title.shape)
    target[1, 4:] = 0  # padding: left out, and scored 0
    encoded = dict(zip(engine._state_names, engine._encoder.run(None, {"body": body}), strict=True))
    given = {name: encoded[name] for name in engine._scorer_state}
    (scored,) = engine._scorer.run(["target_log_probs"], {"title": title, "target": target, **given})
    expected = np.take_along_axis(log_softmax(full), target[..., None], axis=-1)[..., 0]
    expected[target == 0] = 0
    np.testing.assert_allclose(scored, expected, atol=1e-4, rtol=0)


def keras_candidates(folder: Path, engine: Summarizer, bodies: list[str],
                     config: DecodeConfig) -> list[list[tuple[str, float]]]:
    """Keras decoding of the bodies as the engine cleans them."""
    return KerasTitler.load(str(folder)).candidates(engine.cleaned(bodies), config)


def assert_same_titles(engine: Summarizer, expected: list[list[tuple[str, float]]], bodies: list[str],
                       config: DecodeConfig) -> None:
    found = engine.candidates(bodies, **asdict(config))  # the engine takes DecodeConfig's fields
    assert [[t.text for t in titles] for titles in found] == [[t for t, _ in titles] for titles in expected]
    np.testing.assert_allclose([t.score for titles in found for t in titles],
                               [s for titles in expected for _, s in titles], atol=1e-4)


@pytest.mark.parametrize(("beams", "consensus", "samples"), [(1, False, 0), (3, False, 0), (3, True, 0),
                                                         (3, True, 6)])
@pytest.mark.parametrize("kind", VARIANTS)
def test_titles_equal_keras_decoding(kind: str, beams: int, consensus: bool, samples: int,
                                     bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles[kind], threads=1)
    config = DecodeConfig(num_beams=beams, num_return=beams, max_length=6, no_repeat_ngram=2,
                          repeat_penalty=1.0, lead_bonus=1.0, consensus=consensus, samples=samples)
    expected = keras_candidates(bundles[kind], engine, BODIES, config)
    assert len({titles[0][0] for titles in expected}) > 1  # the bodies get different titles
    assert_same_titles(engine, expected, BODIES, config)


def test_consensus_chooses_among_the_beams_the_greedy_title_and_the_lead(bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles["copy"], threads=1)
    options = {"max_length": 6, "no_repeat_ngram": 2}
    chosen = engine.candidates(BODIES, 3, 3, lead_bonus=0.0, consensus=True, **options)
    beams = engine.candidates(BODIES, 3, 3, lead_bonus=None, **options)
    greedy = engine.candidates(BODIES, 1, 1, lead_bonus=0.0, **options)
    leads = engine.candidates(BODIES, 1, 1, lead_bonus=10.0, **options)  # the lead wherever there is one
    for titles, beam, best, lead in zip(chosen, beams, greedy, leads, strict=True):
        texts = [t.text for t in titles]
        assert len(texts) == len(set(texts)) == 3
        assert set(texts) <= {t.text for t in beam} | {best[0].text, lead[0].text}


def real_bodies(shared_data: Path, count: int) -> list[str]:
    with gzip.open(shared_data / "github-issues.jsonl.gz", "rt") as lines:
        bodies = [json.loads(line).get("body") or "" for line in itertools.islice(lines, 0, 100 * count, 100)]
    return bodies


@pytest.mark.parametrize("beams", [1, 4])
def test_shipped_model_titles_equal_keras_on_real_issues(beams: int, shared_data: Path) -> None:
    bodies = real_bodies(shared_data, 50)
    engine = Summarizer.load(SHIPPED, threads=2)
    config = replace(SERVING_DECODING, num_beams=beams, num_return=beams)
    expected = keras_candidates(SHIPPED, engine, bodies, config)
    assert_same_titles(engine, expected, bodies, config)
    leads = {lead_sentence(text) for text in engine.cleaned(bodies)}
    assert 0 < sum(titles[0][0] in leads for titles in expected) < len(bodies)  # both kinds of title win


def test_engine_never_imports_tensorflow_or_keras() -> None:
    script = ("import sys; from summarizer.engine import Summarizer, SHIPPED; "
              "titles = Summarizer.load(SHIPPED, threads=1).summarize(['The app crashes on start']); "
              "assert titles and isinstance(titles[0], str); "
              "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_any_batch_size_keeps_each_bodys_own_title(bundles: dict[str, Path]) -> None:
    """More bodies than one engine batch, of mixed lengths: each gets the title it gets alone."""
    engine = Summarizer.load(bundles["transformer"], threads=1)
    bodies = [f"{body} {'word ' * (i % 13)}{i}" for i, body in enumerate(BODIES * 30)]
    together = engine.summarize(bodies, max_length=5)
    assert len(together) == len(bodies) > BATCH
    assert together == [engine.summarize([body], max_length=5)[0] for body in bodies]


def test_threads_share_one_engine(bundles: dict[str, Path]) -> None:
    """Server threads call one loaded engine at once; new words reach its cache meanwhile."""
    engine = Summarizer.load(bundles["gru"], threads=1)
    bodies = [f"{body} word{i} other{i * 7}" for i, body in enumerate(BODIES * 16)]
    expected = Summarizer.load(bundles["gru"], threads=1).summarize(bodies, max_length=4)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda body: engine.summarize([body], max_length=4)[0], bodies))
    assert found == expected


def test_huge_bodies_get_titles_and_empty_ones_are_refused(bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles["gru"], threads=1)
    titles = engine.summarize(["crash " * 200_000], max_length=4)
    assert len(titles) == 1 and isinstance(titles[0], str)
    with pytest.raises(NothingToSummarize) as refused:
        engine.summarize(["crash", "", "   \n\t"], max_length=4)
    assert refused.value.indices == [1, 2]
    # Cut to the model's body length:
    assert engine.body_ids(engine.cleaned(["crash " * 200_000])).shape == (1, 64)


def test_candidates_are_ranked_and_summarize_takes_the_best(bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles["transformer"], threads=1)
    found = engine.candidates(BODIES[:3], num_return=3, num_beams=3, max_length=6)
    assert all(len(titles) == 3 for titles in found)
    assert all(a.score >= b.score for titles in found for a, b in itertools.pairwise(titles))
    assert engine.summarize(BODIES[:3], num_beams=3, max_length=6) == [titles[0].text for titles in found]


def test_threads_are_configurable(bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles["gru"], threads=1)
    assert engine._encoder.get_session_options().intra_op_num_threads == 1
    assert engine._decoder.get_session_options().intra_op_num_threads == 1


def test_bad_calls_are_refused_clearly(bundles: dict[str, Path]) -> None:
    engine = Summarizer.load(bundles["gru"], threads=1)
    with pytest.raises(UserError, match="list of strings"):
        engine.summarize("one body, not a list")
    with pytest.raises(UserError, match="list of strings"):
        engine.summarize(["fine", 3])
    with pytest.raises(UserError, match="num_beams"):
        engine.summarize(["fine"], num_beams=0)


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


@pytest.mark.parametrize("name", ["decoder.onnx", "weights.bin"])
def test_a_changed_file_is_refused(name: str, bundles: dict[str, Path], tmp_path: Path) -> None:
    """The graphs and the weights they point to are each checked before ONNX Runtime reads them."""
    bundle = copy_of(bundles["gru"], tmp_path)
    data = bytearray((bundle / name).read_bytes())
    data[-1] ^= 1
    (bundle / name).write_bytes(bytes(data))
    message = rf"^{bundle}: {name} differs from the manifest \(sha256\); the bundle was changed after export"
    with pytest.raises(UserError, match=message):
        Summarizer.load(bundle)


def test_a_missing_file_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    bundle = copy_of(bundles["gru"], tmp_path)
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json is missing"):
        Summarizer.load(bundle)


def test_a_bundle_without_graphs_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    """A folder exported before bundles had ONNX graphs: told to export again."""
    bundle = copy_of(bundles["gru"], tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ("encoder.onnx", "decoder.onnx", "scorer.onnx"):
        del manifest["files"][name]
        (bundle / name).unlink()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="has no encoder.onnx, decoder.onnx, scorer.onnx; export it again"):
        Summarizer.load(bundle)


@pytest.mark.parametrize("manifest", [None, "not json", json.dumps({"format_version": 99, "files": {}})])
def test_not_a_bundle_is_refused(manifest: str | None, tmp_path: Path) -> None:
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(UserError, match="not a model bundle|not a bundle manifest|bundle format 99"):
        Summarizer.load(tmp_path)


def test_loads_from_cloud_storage(bundles: dict[str, Path], gcs_bucket: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"{gcs_bucket}/models/tiny"
    for path in bundles["transformer"].iterdir():
        storage.upload_file(str(path), f"{url}/{path.name}")
    remote = Summarizer.load(url, threads=1)
    local = Summarizer.load(bundles["transformer"], threads=1)
    assert remote.version == local.version
    assert remote.summarize(BODIES, max_length=6) == local.summarize(BODIES, max_length=6)
