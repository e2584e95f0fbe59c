"""The project's tokenizer: SentencePiece BPE trained on local dialogue text.

``tokenizer_train`` trains a SentencePiece BPE model with the chat markers of
``modeling.ml.chat.SPECIAL_TOKENS`` as user-defined symbols (each one token, never split),
byte fallback (no unknown characters) and no text normalisation, then wraps it as a
``transformers.PreTrainedTokenizerFast`` so ``save_pretrained``/``from_pretrained`` work
like any Hugging Face tokenizer. The conversion reads the SentencePiece model with the
``sentencepiece`` library itself (no protobuf needed): pieces become the BPE vocabulary and
merges are rebuilt from the pieces in score order, as ``tokenizers`` does.

Django-free. Run on its own::

    python -m modeling.ml.tokenizer corpus.txt out_dir 8000
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from modeling.ml.chat import PAIRWISE_JINJA, SPECIAL_TOKENS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


def tokenizer_train(
    texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 8000
) -> PreTrainedTokenizerFast:
    """Train on ``texts`` and save a Hugging Face tokenizer into ``out_dir``; return it."""
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [t for t in texts if t.strip()]
    if not lines:
        raise ValueError("no text to train the tokenizer on")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type="bpe",
            user_defined_symbols=SPECIAL_TOKENS,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            byte_fallback=True,
            character_coverage=0.9995,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            split_digits=True,
            max_sentence_length=1 << 16,
            input_sentence_size=200_000,
            shuffle_input_sentence=True,
            num_threads=max(os.cpu_count() or 1, 1),
            minloglevel=2,
        )
        (out_dir / "sentencepiece.model").write_bytes(Path(prefix + ".model").read_bytes())
    tokenizer = tokenizer_from_sentencepiece(out_dir / "sentencepiece.model")
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def tokenizer_from_sentencepiece(model_file: str | Path) -> PreTrainedTokenizerFast:
    """Wrap a SentencePiece BPE ``.model`` file as a ``PreTrainedTokenizerFast``."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    specials = {PAD, UNK, BOS, EOS, *SPECIAL_TOKENS}
    # BPE merges in piece order (SentencePiece scores BPE pieces by merge rank).
    merges: list[tuple[str, str, int]] = []
    for piece, rank in vocab.items():
        if piece in specials or len(piece) < 2 or sp.is_byte(rank):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right, rank))
    merges.sort(key=lambda m: (m[2], vocab[m[0]], vocab[m[1]]))
    bpe = models.BPE(
        vocab=vocab,
        merges=[(a, b) for a, b, _ in merges],
        unk_token=UNK,
        byte_fallback=True,
        fuse_unk=True,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (PAD, UNK, BOS, EOS)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=list(SPECIAL_TOKENS),
        padding_side="right",
        truncation_side="left",
    )
    wrapped.chat_template = PAIRWISE_JINJA  # so servers (vLLM's chat endpoint) speak it too
    return wrapped


def tokenizer_check(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise ``ValueError`` unless Pairwise can tell which chat template ``tokenizer`` speaks
    (``modeling.ml.chat.chat_for``: its own, or Pairwise's markers) and it can pad."""
    from modeling.ml.chat import chat_for

    chat_for(tokenizer)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has neither a pad token nor an EOS token to pad with")


def tokenizer_load(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of the local model folder ``path``, with a pad token where it ships
    none (``pad_token_set``); ``chat_for`` then reads its template and stop ids. The one way
    stages load a policy's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    pad_token_set(tokenizer)
    return tokenizer


def pad_token_set(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a tokenizer without a pad token one that is not its end of turn: a reward model
    reads its score at the last token that is not padding, so padding with the token that
    closes every response (Llama 3's ``<|eot_id|>``, Llama 2's ``</s>``) would move the score
    by one token. A spare special token with "pad" in its name (Llama 3.1's
    ``<|finetune_right_pad_id|>``), else the unknown token (Llama 2's usual choice), else EOS."""
    if tokenizer.pad_token is not None:
        return
    spare = [
        t
        for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
        if t.special and "pad" in str(t).lower()
    ]
    choice = str(spare[0]) if spare else tokenizer.unk_token or tokenizer.eos_token
    if choice is not None:
        tokenizer.pad_token = choice


if __name__ == "__main__":
    corpus, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8000
    tokenizer_train(Path(corpus).read_text().split("\n\n"), out, vocab_size=size)
