"""The shipped embedding model (a numpy forward pass of all-MiniLM-L6-v2) and the calibration that gives
each embedding model its own threshold. The plugin's use of both is tested in plugins/embedding/tests."""

from __future__ import annotations

import numpy as np
import pytest

from personahub_core.backends.fake import FakeBackend
from personahub_core.calibration import HELD_OUT_SET, SHIPPED, Calibration, calibrate, choose_threshold, load_pairs
from personahub_core.embedders import SHIPPED_MODEL, open_embedder, shipped_embedder
from personahub_core.errors import UsageError
from personahub_core.settings import Settings
from personahub_core.testing import import_texts, run_task
from fault_server import FaultServer


def test_the_forward_pass_gives_the_vector_the_model_is_known_for():
    # The first values of the model's normalised vector for this sentence, as its reference
    # implementation gives them: a wrong layer, pooling or GELU changes them in the second digit.
    vector = shipped_embedder().embed(["This is an example sentence"])[0]
    assert vector.shape == (384,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector[:6], [0.0676569, 0.0634958, 0.0487131, 0.0793050, 0.0374481, 0.0026528], atol=2e-5)


def test_identical_texts_score_one_and_a_paraphrase_beats_a_distinct_pair_of_the_held_out_set():
    pairs = load_pairs(HELD_OUT_SET)
    paraphrase = next(p for p in pairs if p["kind"] == "paraphrase")
    sibling = next(p for p in pairs if p["kind"] == "same-occupation" and p["a"] == paraphrase["a"])
    texts = [paraphrase["a"], paraphrase["b"], sibling["b"], paraphrase["a"]]
    v = shipped_embedder().embed(texts)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[3] == pytest.approx(1.0, abs=1e-6)
    assert v[0] @ v[1] > SHIPPED[SHIPPED_MODEL].threshold > v[0] @ v[2]


def test_vectors_do_not_depend_on_the_batch_a_text_is_padded_in():
    text = "A beekeeper who sells heather honey at a weekly market."
    longer = "A site reliability engineer at an online retailer who keeps the checkout running during the holiday sales."
    alone = shipped_embedder().embed([text])
    padded = shipped_embedder().embed([longer, text, longer])[1]
    np.testing.assert_allclose(alone[0], padded, atol=1e-5)
    np.testing.assert_array_equal(shipped_embedder().embed([text]), alone)  # deterministic


@pytest.mark.slow
def test_the_shipped_threshold_is_the_one_calibration_chooses():
    assert calibrate(shipped_embedder()) == SHIPPED[SHIPPED_MODEL]
    assert not SHIPPED[SHIPPED_MODEL].poorly_separated


def test_the_threshold_sits_in_the_middle_of_the_best_range():
    assert choose_threshold(np.array([0.9, 0.95, 0.97]), np.array([0.3, 0.5, 0.7])) == pytest.approx(0.8)
    # One distinct pair above one near-duplicate: 0.45 and 0.8 do equally well; of tied ones, the middle.
    assert choose_threshold(np.array([0.6, 0.9, 0.95]), np.array([0.2, 0.3, 0.7])) == pytest.approx(0.8)


def test_overlapping_kinds_are_poorly_separated():
    good = Calibration("m", 0.75, 0.999, 0.98, 0.45, 0.99, 0.005, 240, 200)
    assert not good.poorly_separated
    assert Calibration("m", 0.93, 0.80, 0.95, 0.91, 0.70, 0.20, 240, 200).poorly_separated
    assert "AUC 0.800" in Calibration("m", 0.93, 0.80, 0.95, 0.91, 0.70, 0.20, 240, 200).summary()


def test_a_name_that_is_no_gguf_needs_a_serving_backend():
    with pytest.raises(UsageError, match="not a GGUF file"):
        open_embedder(Settings(embedding_model="text-embedding-3-small"))
    with pytest.raises(UsageError, match="no such GGUF file"):
        open_embedder(Settings(embedding_model="missing.gguf"))
    assert open_embedder(Settings(backend="fake", embedding_model="bow"), FakeBackend).name == "fake:bow"


def test_a_served_model_is_calibrated_once_over_http_and_its_poor_separation_stops_marking():
    # The test server's vectors are (length, sum of code points): every text points almost the same way.
    import_texts(["A pediatric nurse in a rural clinic.", "A beekeeper who sells heather honey.",
                  "A retired railway signal engineer.", "A junior Rust developer at a startup."])
    with FaultServer() as server:
        flags = {"backend": "openai", "base_url": server.url, "embedding_model": "served"}
        with pytest.raises(UsageError, match="vectors poorly separated: openai:served on the calibration set"):
            run_task("embedding", **flags)
        calibrating = len(server.received)
        result = run_task("embedding", ["--threshold", "0.99999"], **flags)
    assert calibrating >= 5 and {r.path for r in server.received} == {"/v1/embeddings"}
    assert sum(len(r.body["input"]) for r in server.received[calibrating:]) == 4  # the personas, not the set again
    assert any("vectors poorly separated" in note for note in result["notes"])
