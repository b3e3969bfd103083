"""Stage-2 losses: VTC (single process = the official formula; 2 gloo processes = 1 process with
the joined batch, loss and gradients), VTM hard negatives and pairs, MLM masking and loss."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from umt.losses import (
    gather_ids,
    gather_with_grad,
    hard_negatives,
    mask_tokens,
    mlm_loss,
    video_text_similarity,
    vtc_loss,
    vtm_loss,
    vtm_pairs,
)

# ------------------------------------------------------------------------------------------
# Direct transcription of the official code (MM/models/criterions.py get_sim, get_mask,
# VTC_VTM_Loss.vtc_loss with all_gather=False).


def official_get_sim(vision_proj, text_proj, temp=1.0):
    vision_proj = F.normalize(vision_proj, dim=-1)
    text_proj = F.normalize(text_proj, dim=-1)
    sim_v2t = torch.einsum("mld,nd->mln", vision_proj, text_proj).mean(1) / temp
    return sim_v2t, sim_v2t.T


def official_vtc(vision_proj, text_proj, idx, temp):
    sim_v2t, sim_t2v = official_get_sim(vision_proj, text_proj, temp)
    with torch.no_grad():
        idx = idx.view(-1, 1)
        mask = torch.eq(idx, idx.T).to(sim_v2t.dtype)
        targets = mask / mask.sum(1, keepdim=True)
    loss_i2t = -torch.sum(F.log_softmax(sim_v2t, dim=1) * targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2v, dim=1) * targets, dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def _features(b=6, t=3, d=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, d, generator=g, dtype=dtype),
        torch.randn(b, d, generator=g, dtype=dtype),
    )


# ------------------------------------------------------------------------------------------
# Similarity and VTC, one process.


def test_similarity_is_mean_over_frames_of_cosine_over_temp():
    v, t = _features(b=4, t=3, d=5)
    t = t[:3]
    sim = video_text_similarity(v, t, temp=0.07)
    assert sim.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            cos = [F.cosine_similarity(v[i, k], t[j], dim=0) for k in range(3)]
            assert sim[i, j].item() == pytest.approx(sum(cos).item() / 3 / 0.07, rel=1e-12)
    # [Bv, D] is one frame; scale does not matter (normalised inside).
    torch.testing.assert_close(
        video_text_similarity(v[:, 0] * 7.0, t), video_text_similarity(v[:, :1], t)
    )
    with pytest.raises(ValueError, match="dim"):
        video_text_similarity(v, torch.randn(3, 4, dtype=v.dtype))


@pytest.mark.parametrize(
    "ids",
    [[0, 1, 2, 3, 4, 5], [3, 7, 3, 9, 7, 3], [5, 5, 5, 5, 5, 5]],
    ids=["distinct", "repeated", "one-id"],
)
def test_vtc_single_process_equals_official_loss_and_gradients(ids):
    ids = torch.tensor(ids)
    v, t = _features()
    temp = torch.tensor(0.07, dtype=torch.float64)
    grads = []
    losses = []
    for fn in (vtc_loss, official_vtc):
        vv, tt, te = (x.clone().requires_grad_(True) for x in (v, t, temp))
        loss = fn(vv, tt, ids, te)
        loss.backward()
        losses.append(loss.detach())
        grads.append((vv.grad, tt.grad, te.grad))
    assert torch.equal(losses[0], losses[1])
    for mine, official in zip(*grads):
        torch.testing.assert_close(mine, official, rtol=0, atol=1e-12)
    assert grads[0][2].abs() > 0  # the learnable temperature gets a gradient
    # gather=True without torch.distributed is the same thing.
    assert torch.equal(vtc_loss(v, t, ids, 0.07, gather=False), vtc_loss(v, t, ids, 0.07))


def test_vtc_pooled_features_and_half_precision():
    v, t = _features(b=5, t=1, dtype=torch.float32)
    ids = torch.arange(5)
    ref = official_vtc(v, t, ids, 0.1)
    torch.testing.assert_close(vtc_loss(v[:, 0], t, ids, 0.1), ref)  # [B, D] vision
    half = vtc_loss(v.bfloat16(), t.bfloat16(), ids, 0.1)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(ref.item(), rel=2e-2)
    with pytest.raises(ValueError, match="B ids"):
        vtc_loss(v, t, ids[:4], 0.1)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    ids = torch.arange(3)
    assert gather_ids(ids) is ids


# ------------------------------------------------------------------------------------------
# VTC over 2 gloo processes = 1 process on the joined batch.

B_LOCAL, FRAMES, D_IN, D_OUT = 3, 2, 5, 4
ID_CASES = {
    "distinct": [0, 1, 2, 3, 4, 5],
    # 7 on both ranks, 2 twice on rank 0 and once on rank 1.
    "repeated": [7, 2, 2, 9, 7, 2],
}


def _joined_inputs():
    g = torch.Generator().manual_seed(11)
    dt = torch.float64
    xv = torch.randn(2 * B_LOCAL, FRAMES, D_IN, generator=g, dtype=dt)
    xt = torch.randn(2 * B_LOCAL, D_IN, generator=g, dtype=dt)
    wv = torch.randn(D_IN, D_OUT, generator=g, dtype=dt)
    wt = torch.randn(D_IN, D_OUT, generator=g, dtype=dt)
    return xv, xt, wv, wt


def _step(xv, xt, wv, wt, ids, temp0=0.1):
    """Loss and gradients wrt (W_v, W_t, temp) of vtc_loss on these inputs."""
    wv = wv.clone().requires_grad_(True)
    wt = wt.clone().requires_grad_(True)
    temp = torch.tensor(temp0, dtype=wv.dtype, requires_grad=True)
    loss = vtc_loss(xv @ wv, xt @ wt, ids, temp)
    loss.backward()
    return loss.detach(), [wv.grad, wt.grad, temp.grad]


def _vtc_worker(rank: int, rendezvous: str, out_dir: str) -> None:
    import warnings

    import torch.distributed as dist

    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    out: dict = {}
    xv, xt, wv, wt = _joined_inputs()
    sl = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    for name, ids in ID_CASES.items():
        loss, grads = _step(xv[sl], xt[sl], wv, wt, torch.tensor(ids)[sl])
        # What DDP does with the gradients: the mean over the ranks.
        for g in grads:
            dist.all_reduce(g)
            g /= 2
        mean_loss = loss.clone()
        dist.all_reduce(mean_loss)
        out[name] = (mean_loss / 2, grads)
    # The gathers themselves: rank order, and gradient = sum over ranks of the local slice.
    x = torch.full((2, 3), float(rank), requires_grad=True)
    gathered = gather_with_grad(x)
    (gathered * (rank + 1)).sum().backward()  # d/dx of rank r's share: r + 1 everywhere
    out["gathered"] = gathered.detach()
    out["gather_grad"] = x.grad
    out["ids"] = gather_ids(torch.tensor([10 * rank, 10 * rank + 1]))
    # Unequal batch sizes: the same clear error on every rank (no hang).
    errors = []
    for fn, arg in (
        (gather_ids, torch.arange(3 - rank)),
        (gather_with_grad, torch.zeros(2 + rank, 4)),
    ):
        try:
            fn(arg)
        except ValueError as e:
            errors.append(str(e))
    out["errors"] = errors
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter teardown that can abort gloo processes


def test_vtc_two_gloo_processes_equal_one_process_on_the_joined_batch(tmp_path):
    import torch.multiprocessing as mp

    context = mp.start_processes(
        _vtc_worker,
        args=(str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process VTC test did not finish in 120 s")
    outs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    xv, xt, wv, wt = _joined_inputs()
    for name, ids in ID_CASES.items():
        loss1, grads1 = _step(xv, xt, wv, wt, torch.tensor(ids))
        for out in outs:
            loss2, grads2 = out[name]
            assert abs(loss2.item() - loss1.item()) < 1e-6, name
            for g2, g1, what in zip(grads2, grads1, ("W_v", "W_t", "temp")):
                assert g1.abs().max() > 1e-3, (name, what)  # a real gradient
                torch.testing.assert_close(g2, g1, rtol=0, atol=1e-6, msg=f"{name} {what}")
    for out in outs:
        assert torch.equal(out["gathered"], torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3] * 2))
        assert torch.equal(out["gather_grad"], torch.full((2, 3), 3.0))  # 1 + 2
        assert out["ids"].tolist() == [0, 1, 10, 11]
        assert len(out["errors"]) == 2
        assert "gather_ids" in out["errors"][0] and "same shape" in out["errors"][0]
        assert "[(3,), (2,)]" in out["errors"][0]
        assert "gather_with_grad" in out["errors"][1]


# ------------------------------------------------------------------------------------------
# VTM.


def _official_weights(sim_v2t, ids):
    """Official hard-negative weights, normalised to probabilities: (t2v, v2t)."""
    same = torch.eq(ids.view(-1, 1), ids.view(1, -1))
    out = []
    for sim in (sim_v2t.T, sim_v2t):
        w = F.softmax(sim + 1e-4, dim=1).masked_fill(same, 0)
        out.append(w / w.sum(1, keepdim=True))
    return out


def test_hard_negatives_never_same_id_and_follow_the_softmax_weights():
    ids = torch.tensor([0, 1, 1, 2, 3])
    g = torch.Generator().manual_seed(3)
    v, t = torch.randn(5, 1, 6, generator=g), torch.randn(5, 6, generator=g)
    sim = video_text_similarity(v, t, temp=0.3)
    expected = _official_weights(sim, ids)
    draws = 4000
    counts = [torch.zeros(5, 5), torch.zeros(5, 5)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(draws):
        neg_v, neg_t = hard_negatives(sim, ids, generator=gen)
        assert neg_v.shape == neg_t.shape == (5,)
        assert not torch.any(ids[neg_v] == ids) and not torch.any(ids[neg_t] == ids)
        counts[0][torch.arange(5), neg_v] += 1
        counts[1][torch.arange(5), neg_t] += 1
    for count, p in zip(counts, expected):
        assert torch.all(count[p == 0] == 0)
        for row in range(5):
            keep = p[row] > 0
            exp = p[row][keep] * draws
            chi2 = (((count[row][keep] - exp) ** 2) / exp).sum().item()
            # <= 3 degrees of freedom: P(chi2 > 25) < 2e-5.
            assert chi2 < 25, (row, count[row], exp)


def test_hard_negatives_reproducible_and_degenerate_cases():
    sim = torch.randn(6, 6, generator=torch.Generator().manual_seed(1)) * 5
    ids = torch.tensor([4, 4, 8, 9, 9, 1])

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return [torch.stack(hard_negatives(sim, ids, generator=gen)) for _ in range(5)]

    assert all(torch.equal(a, b) for a, b in zip(run(7), run(7)))
    assert any(not torch.equal(a, b) for a, b in zip(run(7), run(8)))
    # No ids: only the diagonal is excluded.
    neg_v, neg_t = hard_negatives(sim, None, generator=torch.Generator().manual_seed(0))
    assert not torch.any(neg_v == torch.arange(6)) and not torch.any(neg_t == torch.arange(6))
    # A batch of one id has no negative.
    with pytest.raises(ValueError, match="one id"):
        hard_negatives(sim, torch.full((6,), 3))
    # Weights of every negative underflow to 0: fall back to softmax over the negatives.
    peaked = torch.eye(4) * 1e4
    neg_v, neg_t = hard_negatives(peaked, torch.arange(4), torch.Generator().manual_seed(0))
    assert not torch.any(neg_v == torch.arange(4)) and not torch.any(neg_t == torch.arange(4))
    # NaN similarities: the official nan_to_num(1e-2) makes that row uniform over negatives.
    nan_sim = sim.clone()
    nan_sim[2, 0] = float("nan")
    neg_v, neg_t = hard_negatives(nan_sim, ids, torch.Generator().manual_seed(0))
    assert not torch.any(ids[neg_v] == ids) and not torch.any(ids[neg_t] == ids)


def test_vtm_pairs_layout():
    b, l_, c = 3, 5, 2
    text = 10 + torch.arange(b).view(b, 1, 1).expand(b, l_, c).float()
    mask = torch.arange(b).view(b, 1).expand(b, l_) + 100
    neg_v, neg_t = torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0])
    pv, pt, pm = vtm_pairs(b, text, mask, neg_v, neg_t)
    assert pv.dtype == torch.long and pt.shape == (3 * b, l_, c) and pm.shape == (3 * b, l_)
    assert pv.tolist() == [0, 1, 2, 2, 0, 1, 0, 1, 2]
    assert pt[:, 0, 0].tolist() == [10, 11, 12, 10, 11, 12, 11, 12, 10]
    assert pm[:, 0].tolist() == [100, 101, 102, 100, 101, 102, 101, 102, 100]
    with pytest.raises(ValueError, match="negative indices"):
        vtm_pairs(b, text, mask, neg_v[:2], neg_t)
    with pytest.raises(ValueError, match="do not form a batch"):
        vtm_pairs(b + 1, text, mask, neg_v, neg_t)


def test_vtm_with_a_video_index_equals_the_official_stacked_copies():
    """The matching logits of the 3B pairs with each video given once plus an index equal
    those of the official layout (three stacked copies of the video tokens), and so do the
    gradients reaching the video tokens."""
    from umt.models import UMTVideoText

    vision_cfg = dict(img_size=32, patch_size=8, num_frames=2, embed_dim=32, depth=2, num_heads=4)
    text_cfg = dict(
        vocab_size=60, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48,
        max_position_embeddings=16, fusion_layer=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = UMTVideoText(vision_cfg, text_cfg, embed_dim=16).eval()
    g = torch.Generator().manual_seed(3)
    b = 4
    vision0 = torch.randn(b, 9, 32, generator=g)
    text = torch.randn(b, 7, 32, generator=g)
    mask = torch.ones(b, 7, dtype=torch.long)
    mask[1, 5:] = 0
    neg_v, neg_t = torch.tensor([1, 0, 0, 2]), torch.tensor([3, 3, 0, 1])
    v3, t3, m3 = vtm_pairs(b, text, mask, neg_v, neg_t)

    def run(stacked: bool):
        vision = vision0.clone().requires_grad_(True)
        if stacked:
            logits = model.itm_logits(t3, m3, torch.cat([vision, vision[neg_v], vision]))
        else:
            logits = model.itm_logits(t3, m3, vision, vision_index=v3)
        vtm_loss(logits).backward()
        return logits.detach(), vision.grad

    (la, ga), (lb, gb) = run(True), run(False)
    assert la.shape == (3 * b, 2)
    torch.testing.assert_close(lb, la, rtol=0, atol=1e-6)
    torch.testing.assert_close(gb, ga, rtol=0, atol=1e-6)


def test_vtm_loss_hand_logits_and_gradient():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    loss = vtm_loss(logits)  # B = 1: labels [1, 0, 0]
    expected = (math.log(1 + math.e**2) + math.log(1 + math.e) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    onehot = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(logits.grad, (logits.detach().softmax(1) - onehot) / 3)
    with pytest.raises(ValueError, match=r"\[3B, 2\]"):
        vtm_loss(torch.zeros(4, 2))


# ------------------------------------------------------------------------------------------
# MLM.

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 30522


def _token_batch(b=600, length=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (b, length), generator=g)
    lengths = torch.randint(10, length + 1, (b,), generator=g)
    pos = torch.arange(length).view(1, -1)
    ids[:, 0] = CLS
    ids[pos == (lengths.view(-1, 1) - 1)] = SEP
    ids[pos >= lengths.view(-1, 1)] = PAD
    return ids


def test_mask_tokens_statistics_and_labels():
    ids = _token_batch()
    before = ids.clone()
    masked, labels = mask_tokens(
        ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(ids, before)  # input untouched
    assert masked.shape == labels.shape == ids.shape and masked.dtype == ids.dtype
    selected = labels != -100
    maskable = (ids != PAD) & (ids != CLS)
    assert not torch.any(selected & ~maskable)  # never PAD or CLS
    assert torch.equal(labels[selected], ids[selected])
    assert torch.all(labels[~selected] == -100)
    assert torch.equal(masked[~selected], ids[~selected])  # unselected tokens unchanged
    n_maskable, n_sel = maskable.sum().item(), selected.sum().item()
    assert n_maskable > 20000
    assert abs(n_sel / n_maskable - 0.5) < 0.02
    sep = ids == SEP
    assert 0.35 < (selected & sep).sum().item() / sep.sum().item() < 0.65  # SEP can be masked
    to_mask = selected & (masked == MASK)
    unchanged = selected & (masked == ids)
    randomised = selected & (masked != MASK) & (masked != ids)
    assert abs(to_mask.sum().item() / n_sel - 0.8) < 0.02
    assert abs(randomised.sum().item() / n_sel - 0.1) < 0.015
    assert abs(unchanged.sum().item() / n_sel - 0.1) < 0.015
    rand_ids = masked[randomised]
    assert rand_ids.min() >= 0 and rand_ids.max() < VOCAB
    assert rand_ids.float().std() > VOCAB / 5  # uniform over the vocabulary, not the batch's ids
    # Reproducible with a seeded generator; the probability is honoured at the extremes.
    again = mask_tokens(ids, VOCAB, MASK, PAD, CLS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], masked) and torch.equal(again[1], labels)
    none = mask_tokens(ids, VOCAB, MASK, PAD, CLS, prob=0.0)
    assert torch.equal(none[0], ids) and torch.all(none[1] == -100)
    everything = mask_tokens(ids, VOCAB, MASK, PAD, CLS, prob=1.0)[1] != -100
    assert torch.equal(everything, maskable)


def test_mlm_loss_hand_case_and_no_masked_token():
    logits = torch.tensor(
        [[[9.0, 9.0, 9.0], [1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]], requires_grad=True
    )  # [1, 3, 3]
    labels = torch.tensor([[-100, 2, 0]])
    loss = mlm_loss(logits, labels)
    lp1 = 3.0 - math.log(math.e**1 + math.e**2 + math.e**3)
    lp2 = 0.5 - math.log(math.e**0.5 + 1 + math.e**-1)
    assert loss.item() == pytest.approx(-(lp1 + lp2) / 2, rel=1e-6)
    ref = F.cross_entropy(logits.view(-1, 3), labels.view(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.all(logits.grad[0, 0] == 0) and logits.grad[0, 1:].abs().sum() > 0
    # Nothing masked: a graph-connected 0 (the official mean would be NaN).
    logits.grad = None
    empty = mlm_loss(logits, torch.full((1, 3), -100))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert torch.all(logits.grad == 0)


def test_random_negatives_never_share_an_id_and_cover_the_others():
    from umt.losses import random_negatives

    ids = torch.tensor([0, 0, 1, 2, 3])
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(300):
        neg_video, neg_text = random_negatives(ids, gen)
        for i in range(5):
            assert ids[neg_video[i]] != ids[i] and ids[neg_text[i]] != ids[i]
            seen.add((i, int(neg_video[i])))
    assert (0, 4) in seen and (4, 0) in seen and (4, 1) in seen
    with pytest.raises(ValueError, match="one sample id"):
        random_negatives(torch.tensor([7, 7, 7]), gen)
