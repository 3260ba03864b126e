"""Partial FC: sampled class centres keep every positive and match the full head at rate 1."""

from __future__ import annotations

import pytest
import torch

from cqa_core.model import create_head
from cqa_core.training.partial_fc import PartialFC


def test_rate_one_equals_full_head() -> None:
    torch.manual_seed(0)
    head = create_head("cosface", 16, 50, 64.0, 0.35)
    pfc = PartialFC(head, rate=1.0)
    emb, labels = torch.randn(6, 16), torch.tensor([0, 3, 3, 7, 49, 12])
    logits, target = pfc(emb, labels)
    torch.testing.assert_close(logits, head(emb, labels))
    assert torch.equal(target, labels)


def test_sample_keeps_positives_and_remaps_labels() -> None:
    torch.manual_seed(0)
    head = create_head("cosface", 16, 1000, 64.0, 0.35)
    pfc = PartialFC(head, rate=0.1, seed=1)
    emb, labels = torch.randn(8, 16), torch.tensor([5, 999, 5, 17, 400, 2, 3, 800])
    logits, target = pfc(emb, labels)
    index, _ = pfc.sample(labels, labels)
    assert logits.shape == (8, 100) and index.numel() == 100
    assert torch.equal(index[target], labels)  # remapped labels point at the right centres
    full = head(emb, labels)  # (8, 1000)
    torch.testing.assert_close(logits, full[:, index])
    pfc.step = 1
    assert not torch.equal(pfc.sample(labels, labels)[0], index)  # negatives re-drawn each step


def test_gradient_reaches_exactly_the_sampled_centres() -> None:
    # 100 classes, rate 0.1: 10 centres per step, the 6 distinct labels among them. A cross-entropy
    # step must move those 10 rows and leave the other 90 with an exactly zero gradient.
    torch.manual_seed(0)
    head = create_head("cosface", 16, 100, 64.0, 0.35)
    pfc = PartialFC(head, rate=0.1, seed=3)
    emb, labels = torch.randn(8, 16, requires_grad=True), torch.tensor([5, 99, 5, 17, 40, 2, 40, 63])
    pfc.step = 7
    logits, target = pfc(emb, labels)
    index = pfc.sample(labels, labels)[0]  # (S,) the centres of this step
    assert logits.shape == (8, 10) and sorted(set(index.tolist())) == index.tolist()  # 10 distinct rows
    assert set(labels.tolist()) <= set(index.tolist())  # every positive class is sampled
    torch.nn.functional.cross_entropy(logits, target).backward()
    touched = head.weight.grad.abs().sum(dim=1) > 0  # (100,)
    assert touched.nonzero().flatten().tolist() == index.tolist()
    assert emb.grad is not None and emb.grad.abs().sum() > 0  # and it flows back to the embeddings


def test_trainer_step_sends_gradient_to_the_sampled_centres_only(tmp_path) -> None:
    # 12 classes x 2 images, rate 0.25: a step of N labels samples max(ceil(0.25 * 12), N) = N
    # centres (N <= 8 < 12), all of the batch's classes among them; the others get no gradient.
    from conftest import make_face_folder

    from cqa_core.config import DataConfig, ModelConfig, TrainConfig
    from cqa_core.training.data import build_dataset
    from cqa_core.training.trainer import Trainer

    folder = make_face_folder(tmp_path / "faces", classes=12, per_class=2)
    c = TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(folder), num_workers=0),
                    batch_size=8, out_dir=str(tmp_path / "run"), eval_pairs=None, progress=False,
                    tensorboard=False, partial_fc_threshold=4, partial_fc_rate=0.25, max_steps=1)
    trainer = Trainer(c, dataset=build_dataset(c))
    pfc = trainer.net.pfc
    assert pfc is not None
    grads: list[torch.Tensor] = []
    pfc.weight.register_hook(lambda g: grads.append(g.detach().clone()))
    batch = next(iter(trainer.loader))
    metrics = trainer.train_step([batch])
    assert metrics is not None and torch.isfinite(torch.tensor(metrics["loss"]))
    index = pfc.sample(batch[1], batch[1])[0]  # the trainer ran step 0: same draw
    n = batch[1].numel()
    assert 3 < n < 12 and index.numel() == n and set(batch[1].tolist()) <= set(index.tolist())
    (g,) = grads
    assert (g.abs().sum(dim=1) > 0).nonzero().flatten().tolist() == index.tolist()


def test_padding_centres_are_sampled_last_and_score_minus_inf() -> None:
    head = create_head("cosface", 4, 3, 64.0, 0.35)  # shard 1 of 2 over K = 5 classes: ids 3, 4 and a pad
    pfc = PartialFC(head, rate=1.0, num_classes=5, rank=1, world_size=2)  # sample / scores need no group
    labels = torch.tensor([4, 0])  # 0 lives in another shard
    index, target = pfc.sample(labels, labels)
    assert index.tolist() == [0, 1, 2] and target.tolist() == [1, -1]
    logits = pfc.scores(torch.randn(2, 4), index, target)  # (2, 3)
    assert torch.isinf(logits[:, 2]).all() and torch.isfinite(logits[:, :2]).all()


def test_sample_is_a_pure_function_of_seed_step_and_labels() -> None:
    pfc = PartialFC(create_head("cosface", 8, 500, 64.0, 0.35), rate=0.05, seed=7)
    labels = torch.tensor([1, 2, 3, 499])
    pfc.step = 12
    first = pfc.sample(labels, labels)[0]
    pfc.step = 13
    assert not torch.equal(pfc.sample(labels, labels)[0], first)
    pfc.step = 12  # e.g. after a resume: the same sample again
    assert torch.equal(pfc.sample(labels, labels)[0], first) and pfc.step == 12
    assert first.numel() == 25 and set(labels.tolist()) <= set(first.tolist())


def test_compiled_partial_fc_compiles_once_over_five_steps() -> None:
    """``step`` is a tensor buffer and sampling is tensor-only: one graph, no recompile, no break."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    pfc = PartialFC(create_head("cosface", 16, 1000, 64.0, 0.35), rate=0.1, seed=1)
    eager = PartialFC(create_head("cosface", 16, 1000, 64.0, 0.35), rate=0.1, seed=1)
    eager.load_state_dict(pfc.state_dict())
    backend = CompileCounterWithBackend("inductor")
    compiled = torch.compile(pfc, backend=backend, fullgraph=True)  # fullgraph: a graph break raises
    for step in range(5):
        pfc.step = eager.step = step
        emb = torch.randn(8, 16, requires_grad=True)  # (8, 16)
        labels = torch.randint(0, 1000, (8,))  # (8,)
        logits, target = compiled(emb, labels)  # (8, 100), (8,)
        ref_logits, ref_target = eager(emb, labels)
        assert torch.equal(target, ref_target)
        torch.testing.assert_close(logits, ref_logits)
    assert backend.frame_count == 1, f"compiled {backend.frame_count} times in 5 steps"
    assert sum(counters["recompiles"].values()) == 0


@pytest.mark.slow
def test_trainer_compile_with_partial_fc_is_one_graph(tmp_path) -> None:
    """``compile=True`` + Partial FC through the Trainer: 5 steps, one graph, no recompile or break."""
    import torch._dynamo
    from conftest import make_face_folder
    from torch._dynamo.utils import counters

    from cqa_core.config import DataConfig, ModelConfig, TrainConfig
    from cqa_core.training.data import build_dataset
    from cqa_core.training.trainer import Trainer

    torch._dynamo.reset()
    counters.clear()
    root = make_face_folder(tmp_path / "faces", classes=6, per_class=8)  # 48 images: 6 steps of 8
    c = TrainConfig(model=ModelConfig(stem="light"), data=DataConfig(root=str(root), num_workers=0),
                    batch_size=8, out_dir=str(tmp_path / "run"), eval_pairs=None, progress=False,
                    tensorboard=False, partial_fc="on", partial_fc_rate=0.5, max_steps=5, compile=True)
    trainer = Trainer(c, dataset=build_dataset(c))
    trainer.sampler.set_epoch(0, 0)
    batches = iter(trainer.loader)
    for _ in range(5):
        assert trainer.train_step([next(batches)]) is not None
        trainer.step += 1
    assert counters["stats"]["unique_graphs"] == 1
    assert sum(counters["recompiles"].values()) == 0 and sum(counters["graph_break"].values()) == 0


def test_hashed_negatives_look_uniform_and_fresh_each_step() -> None:
    # K = 1000, rate 0.1, one positive: each step keeps class 0 and 99 of the other 999. Over 400
    # steps a class is drawn Binomial(400, 99/999) times if the hash is uniform and independent:
    # mean 400 * 99 / 999 = 39.64 (exact), sd sqrt(400 * 0.0991 * 0.9009) = 5.97.
    pfc = PartialFC(create_head("cosface", 4, 1000, 64.0, 0.35), rate=0.1, seed=0)
    labels = torch.tensor([0])
    counts = torch.zeros(1000)
    for step in range(400):
        pfc.step = step
        counts[pfc.sample(labels, labels)[0]] += 1
    assert counts[0] == 400
    neg = counts[1:]  # (999,)
    assert abs(neg.mean().item() - 400 * 99 / 999) < 1e-4
    assert 4.5 < neg.std().item() < 7.5 and neg.min() > 10 and neg.max() < 70
    pfc.step = 5
    a = set(pfc.sample(labels, labels)[0].tolist())
    pfc.step = 6
    overlap = len(a & set(pfc.sample(labels, labels)[0].tolist()))
    assert overlap < 25  # 1 + 99 * 99 / 999 = 10.8 expected; a stuck sampler would give 100
