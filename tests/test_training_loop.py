"""The training loop resumes a saved state exactly: a run cut in two gives
the weights of an uninterrupted one, on a toy model in milliseconds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from t5electra.tools.training import loop
from t5electra.tools.training.electra import step_sentences

pytestmark = pytest.mark.unit


class _Stopped(Exception):
    """Stands for the process being stopped mid-run."""


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> Any:
        loss = torch.nn.functional.mse_loss(self.linear(inputs).squeeze(-1), labels)
        return type("Output", (), {"loss": loss})()


def _batch(step: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    inputs = torch.randn(8, 4, generator=generator)
    return {"inputs": inputs, "labels": inputs.sum(-1)}


def _train(steps_run: int, state_dir: Path | None, cycles: tuple[int, ...] = (10,)) -> torch.Tensor:
    """Trains a fresh toy model, cutting the run after ``steps_run`` steps by
    having ``batch`` raise, as a killed process would stop."""
    model = _Toy()

    def batch(step: int) -> dict[str, torch.Tensor]:
        if step >= steps_run:
            raise _Stopped
        return _batch(step)

    with contextlib.suppress(_Stopped):
        loop.fit(
            model,
            batch,
            cycles=cycles,
            learning_rate=0.1,
            log=lambda _: None,
            name="toy",
            state_dir=state_dir,
            save_every=2,
        )
    return model.linear.weight.detach().clone()


def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = _train(10, None)
    _train(5, tmp_path)  # stops after step 5; the state of step 4 was saved
    assert (tmp_path / loop.STATE_FILE).exists()
    resumed = _train(10, tmp_path)
    assert torch.equal(whole, resumed)


def test_a_state_of_another_recipe_is_refused(tmp_path: Path) -> None:
    _train(10, tmp_path)
    with pytest.raises(ValueError, match="another training recipe"):
        _train(12, tmp_path, cycles=(12,))


def test_a_finished_run_is_continued_with_further_cycles_as_one_long_run(tmp_path: Path) -> None:
    whole = _train(16, None, cycles=(10, 6))
    _train(10, tmp_path, cycles=(10,))
    continued = _train(16, tmp_path, cycles=(10, 6))
    assert torch.equal(whole, continued)
    assert not torch.equal(whole, _train(10, None))


def test_a_state_cut_inside_a_cycle_is_not_continued_with_another(tmp_path: Path) -> None:
    _train(5, tmp_path, cycles=(10,))
    with pytest.raises(ValueError, match="another training recipe"):
        _train(16, tmp_path, cycles=(10, 6))


def test_a_steps_batch_depends_only_on_seed_and_step() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(5000)]
    first = [step_sentences(sentences, 16, 3, step) for step in (0, 31, 32, 70)]
    assert first == [step_sentences(sentences, 16, 3, step) for step in (0, 31, 32, 70)]
    assert step_sentences(sentences, 16, 3, 0) != step_sentences(sentences, 16, 4, 0)
    assert len({tuple(b) for b in first}) == 4


def test_the_generators_masked_only_loss_is_its_models_own() -> None:
    from transformers import ElectraConfig, ElectraForMaskedLM

    from t5electra.tools.training.generator import masked_loss

    torch.manual_seed(0)
    sizes = {"embedding_size": 8, "hidden_size": 16, "intermediate_size": 32}
    config = ElectraConfig(vocab_size=50, num_hidden_layers=1, num_attention_heads=2, **sizes)
    model = ElectraForMaskedLM(config).eval()
    input_ids = torch.randint(5, 50, (3, 7))
    labels = torch.full_like(input_ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 0] = 7, 9, 11
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    assert torch.allclose(masked_loss(model, inputs), model(**inputs).loss, rtol=1e-6, atol=1e-6)
