"""Build a tiny, randomly initialised COMET checkpoint offline, for tests.

Nothing is downloaded: a SentencePiece-style (Unigram + Metaspace) tokenizer is trained with
``tokenizers`` on a few hundred lines of text, saved as an ``XLMRobertaTokenizerFast`` next to a tiny
``XLMRobertaConfig`` (hidden size 32, 2 layers, 2 heads) in a local "pretrained model" directory. A
COMET model is then built on top of it with ``load_pretrained_weights=False`` and saved the way
``comet.load_from_checkpoint`` expects::

    <root>/<name>/hparams.yaml
    <root>/<name>/checkpoints/model.ckpt

The scores such a model gives are meaningless, but they go through the real comet code path
(``load_from_checkpoint`` -> ``XLMREncoder`` -> ``predict``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

#: Text used when ``../shared/data/wmt22`` is absent: short, multilingual, enough for a tiny vocab.
FALLBACK_TEXT = """\
The cat sat on the mat and looked out of the window.
Die Katze saß auf der Matte und schaute aus dem Fenster.
猫坐在垫子上，望着窗外。
A new bridge will be built across the river next year.
Nächstes Jahr wird eine neue Brücke über den Fluss gebaut.
明年将在河上建一座新桥。
The committee approved the budget after a long debate.
Der Ausschuss genehmigte den Haushalt nach einer langen Debatte.
委员会经过长时间的辩论后批准了预算。
Please send me the report before Friday afternoon.
Bitte schicken Sie mir den Bericht vor Freitagnachmittag.
请在星期五下午之前把报告发给我。
Machine translation quality has improved a lot in recent years.
Die Qualität der maschinellen Übersetzung hat sich in den letzten Jahren stark verbessert.
近年来机器翻译的质量有了很大提高。
The weather is cold today, so take a warm coat.
Heute ist das Wetter kalt, nimm also einen warmen Mantel mit.
今天天气很冷，所以带上一件暖和的外套。
She bought three apples, two oranges and a loaf of bread.
Sie kaufte drei Äpfel, zwei Orangen und ein Brot.
她买了三个苹果、两个橙子和一条面包。
Our customer service team will contact you within 24 hours.
Unser Kundenservice wird sich innerhalb von 24 Stunden bei Ihnen melden.
我们的客服团队将在24小时内与您联系。
"""

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R ids 0..3; <mask> goes last


def corpus_lines(shared_dir: Path | None = None, limit: int = 400) -> list[str]:
    """Up to ``limit`` lines of text: WMT22 sources/references when shared data exists."""
    lines: list[str] = []
    folder = shared_dir / "data" / "wmt22" if shared_dir else None
    if folder and folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                for i, raw in enumerate(fh):
                    if i >= limit // 20:
                        break
                    row = json.loads(raw)
                    lines += [row[k] for k in ("source", "reference") if isinstance(row.get(k), str)]
            if len(lines) >= limit:
                break
    lines += FALLBACK_TEXT.splitlines()
    return [line for line in lines if line.strip()][:limit + 100]


def build_encoder_dir(out: Path, lines: list[str], vocab_size: int = 600) -> Path:
    """Train a tokenizer and write a tiny XLM-R config: a directory ``XLMREncoder`` loads offline."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # Unigram keeps every character seen; CJK text alone can exceed a small vocabulary.
    vocab_size = max(vocab_size, len(set("".join(lines))) + 200)
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    tok.add_special_tokens(["<mask>"])
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)])

    out.mkdir(parents=True, exist_ok=True)
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>", model_max_length=128)
    fast.save_pretrained(out)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=130, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2, type_vocab_size=1)
    config.save_pretrained(out)
    return out


def save_checkpoint(model: Any, out: Path) -> Path:
    """Write ``hparams.yaml`` and ``checkpoints/model.ckpt`` as comet's training script would."""
    import pytorch_lightning
    import torch
    import yaml

    hparams = {k: v for k, v in dict(model.hparams).items()
               if k not in ("load_pretrained_weights", "local_files_only")}
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    ckpt = out / "checkpoints" / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": pytorch_lightning.__version__,
                "epoch": 0, "global_step": 0}, ckpt)
    return ckpt


def build_tiny_comet(root: Path, kind: Literal["regression", "kiwi", "referenceless"] = "regression",
                     encoder_dir: Path | None = None, shared_dir: Path | None = None,
                     seed: int = 0) -> Path:
    """Build one tiny COMET checkpoint under ``root`` and return the path of its ``model.ckpt``.

    ``regression``: a wmt22-comet-da style ``RegressionMetric`` (src, mt, ref).
    ``kiwi``: a CometKiwi style ``UnifiedMetric`` with ``input_segments=[mt, src]`` (no reference).
    ``referenceless``: a ``ReferencelessRegression`` (the older COMET-QE family).
    """
    import torch
    from comet.models import ReferencelessRegression, RegressionMetric, UnifiedMetric

    if encoder_dir is None:
        encoder_dir = build_encoder_dir(root / "tiny-xlmr", corpus_lines(shared_dir))
    common: dict[str, Any] = dict(encoder_model="XLM-RoBERTa", pretrained_model=str(encoder_dir),
                                  load_pretrained_weights=False, local_files_only=True,
                                  layer_transformation="softmax", hidden_sizes=[32], dropout=0.1,
                                  train_data=[], validation_data=[])
    torch.manual_seed(seed)
    model: Any
    if kind == "regression":
        model = RegressionMetric(layer="mix", pool="avg", **common)
    elif kind == "referenceless":
        model = ReferencelessRegression(layer="mix", pool="avg", **common)
    elif kind == "kiwi":
        model = UnifiedMetric(sent_layer="mix", word_layer=2, input_segments=["mt", "src"],
                              word_level_training=False, **common)
    else:
        raise ValueError(f"unknown tiny COMET kind {kind!r}")
    return save_checkpoint(model, root / f"tiny-comet-{kind}")
