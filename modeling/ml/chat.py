"""Which chat template a model speaks, and how a dialogue becomes its text and tokens.

This is the one module that decides, per model folder, how sampling, reward scoring, reward
training, rejection-sampling fine-tuning and PPO turn a dialogue into text:

- **the model's own template** when its tokenizer carries one (Llama 3, Qwen2, Mistral,
  OpenAssistant...): dialogues render with ``tokenizer.apply_chat_template`` and sampling
  stops on the model's own end-of-turn token and the EOS tokens of its
  ``generation_config.json``. Nothing is added to its vocabulary.
- **Pairwise's template** for the models Pairwise makes (their tokenizers carry the markers
  below as special tokens), and for a folder registered with ``--template pairwise``
  (recorded in its ``pairwise.json``), where the markers are plain text::

      <|system|>\\n{text}<|end|>\\n        (optional)
      <|user|>\\n{text}<|end|>\\n
      <|assistant|>\\n{text}<|end|>\\n
      ...
      <|assistant|>\\n                      ← generation prompt: the model writes the
                                             response, then <|end|> (END_OF_TURN) stops it.

- a tokenizer with neither is refused (``ChatTemplateError``) with the way out: register it
  with the Pairwise template explicitly.

``template_decide(folder)`` reads only JSON files (no transformers), so the web process can
check a folder before it is registered; ``chat_for(tokenizer)`` gives the ``ChatFormat`` of a
loaded tokenizer (cached on it), which every stage uses to render prompts, responses and
whole dialogues, to encode them (BOS where the template does not write it), and to know the
stop tokens and strings. The response of a dialogue renders as exactly what a policy
generates after the prompt, up to and including the end-of-turn token, so the ids sampled
and the ids scored and trained on are the same (tests/modeling/test_chat_templates.py).
Plain Python: no Django, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

END_OF_TURN = "<|end|>"
ROLE_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [*ROLE_MARKERS.values(), END_OF_TURN]

TemplateName = Literal["pairwise", "model"]
PAIRWISE: TemplateName = "pairwise"  # Pairwise's markers
MODEL: TemplateName = "model"  # the tokenizer's own chat template
# What a user may ask for when registering a folder: decide from the folder, or Pairwise's.
TEMPLATE_CHOICES = ("auto", PAIRWISE)
# Pairwise's template as a Jinja chat template: the text ``render_prompt``/``render_dialogue``
# write. Tokenizers Pairwise makes carry it, so servers (vLLM's chat endpoint) speak it too.
PAIRWISE_JINJA = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """A model folder or tokenizer no chat template can be chosen for, with the reason."""


class TurnLike(Protocol):
    """A turn as an object (``annotation.domain.Turn``); a mapping with the same keys works too."""

    @property
    def role(self) -> object: ...

    @property
    def content(self) -> str: ...


Dialogue = Iterable[Mapping[str, object] | TurnLike]


def _role_content(turn: Mapping[str, object] | TurnLike) -> tuple[str, str]:
    if isinstance(turn, Mapping):
        return str(turn["role"]), str(turn["content"])
    return str(turn.role), str(turn.content)


# --- Pairwise's template as text ---------------------------------------------------------


def render_turn(role: str, content: str) -> str:
    if role not in ROLE_MARKERS:
        raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLE_MARKERS)}")
    return f"{ROLE_MARKERS[role]}\n{content}{END_OF_TURN}\n"


def render_prompt(turns: Dialogue) -> str:
    """Pairwise's template: the dialogue so far plus the assistant marker."""
    return "".join(render_turn(*_role_content(t)) for t in turns) + f"{ROLE_MARKERS['assistant']}\n"


def render_response(response: str) -> str:
    """Pairwise's template: the response as it follows ``render_prompt``, closed by END_OF_TURN."""
    return f"{response}{END_OF_TURN}\n"


def render_dialogue(turns: Dialogue, response: str) -> str:
    """Pairwise's template: prompt and response in one string."""
    return render_prompt(turns) + render_response(response)


# --- deciding from a folder (JSON only) -------------------------------------------------


@dataclass(frozen=True)
class TemplateDecision:
    """Which template a folder's model speaks, and why (shown on the Models page)."""

    name: TemplateName
    reason: str
    markers_are_tokens: bool  # Pairwise's markers are single special tokens of the tokenizer


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _folder_chat_template(folder: Path) -> str:
    """The chat template a tokenizer saved in ``folder`` carries ('' when none)."""
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    for source in (
        _read_json(folder / "chat_template.json"),
        _read_json(folder / "tokenizer_config.json"),
    ):
        template = source.get("chat_template")
        if isinstance(template, str) and template.strip():
            return template
        if isinstance(
            template, list
        ):  # named templates; "default" is what apply_chat_template uses
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            if isinstance(named.get("default"), str):
                return str(named["default"])
    return ""


def _folder_added_tokens(folder: Path) -> set[str]:
    tokens = {
        str(t.get("content"))
        for t in _read_json(folder / "tokenizer.json").get("added_tokens", [])
        if isinstance(t, dict)
    }
    decoder = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    if isinstance(decoder, dict):
        tokens |= {str(t.get("content")) for t in decoder.values() if isinstance(t, dict)}
    return tokens


def _decide(template: str, markers: bool, where: str) -> TemplateDecision:
    if template.strip() == PAIRWISE_JINJA.strip():
        how = "special tokens" if markers else "plain text (no tokens were added)"
        return TemplateDecision(PAIRWISE, f"Pairwise's template (its markers are {how}).", markers)
    if template:
        return TemplateDecision(
            MODEL, "the tokenizer's own chat template (apply_chat_template).", markers
        )
    if markers:
        return TemplateDecision(
            PAIRWISE, "Pairwise's template: the tokenizer carries its markers.", True
        )
    raise ChatTemplateError(
        f"{where}: the tokenizer has no chat template and none of Pairwise's markers "
        f"({', '.join(SPECIAL_TOKENS)}), so Pairwise cannot tell how this model expects a "
        "dialogue. Register it with Pairwise's template explicitly (--template pairwise; "
        "on the Models page, 'Use Pairwise's template'): the markers are then written as "
        "plain text, and the model must be fine-tuned on them before its samples are useful."
    )


def template_decide(folder: str | Path) -> TemplateDecision:
    """The template for the model in ``folder``, from its JSON files alone (no transformers).

    Raises ``ChatTemplateError`` when the tokenizer has neither a chat template nor the
    markers: the message offers Pairwise's template explicitly (``folder_with_pairwise_template``).
    """
    folder = Path(folder)
    markers = set(SPECIAL_TOKENS) <= _folder_added_tokens(folder)
    return _decide(_folder_chat_template(folder), markers, str(folder))


TOKENIZER_CONFIG = "tokenizer_config.json"
# Files that would carry another chat template past ours.
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def folder_with_pairwise_template(source: str | Path, target: str | Path) -> Path:
    """Write ``target``: ``source``'s files linked (weights are not copied) but its tokenizer
    config, which gets ``PAIRWISE_JINJA`` as its chat template. What a folder registered
    with ``--template pairwise`` becomes: its model then reads and writes Pairwise's markers
    as plain text; nothing is added to its vocabulary and ``source`` is left as it was.
    Published whole or not at all (``modeling.ml.checkpoints``)."""
    import shutil

    from modeling.ml.checkpoints import partial_dir, publish

    source, target = Path(source).resolve(), Path(target)
    partial = partial_dir(target)
    try:
        partial.mkdir()
        for item in source.iterdir():
            if item.name in (TOKENIZER_CONFIG, *_TEMPLATE_FILES):
                continue
            (partial / item.name).symlink_to(item)
        config = {**_read_json(source / TOKENIZER_CONFIG), "chat_template": PAIRWISE_JINJA}
        (partial / TOKENIZER_CONFIG).write_text(json.dumps(config, indent=2))
        return publish(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def model_folder_problem(folder: str | Path) -> str:
    """Why ``folder`` is not a Hugging Face model folder ("" when it is one): from its
    files alone, so the web process can say it before anything is registered."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder on the server."
    config_file = folder / "config.json"
    if not config_file.is_file():
        return f"{folder} is not a Hugging Face model folder: it has no config.json."
    try:
        config = json.loads(config_file.read_text())
    except ValueError as exc:
        return f"{config_file} is not valid JSON ({exc})."
    if not isinstance(config, dict) or not config.get("model_type"):
        return f"{config_file} names no model_type: not a Hugging Face model config."
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        return f"{folder} holds no weights (*.safetensors or pytorch_model.bin)."
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return f"{folder} holds no tokenizer (tokenizer.json, tokenizer.model or a vocabulary)."
    return ""


def folder_architectures(folder: str | Path) -> list[str]:
    config = _read_json(Path(folder) / "config.json")
    archs = config.get("architectures") or []
    return [str(a) for a in archs] if isinstance(archs, list) else []


# --- the format of a loaded tokenizer ----------------------------------------------------


@dataclass(frozen=True)
class ChatFormat:
    """How one tokenizer's model reads and writes dialogues.

    ``prompt`` is what a policy continues from; ``response`` is what it writes after it, up
    to and including its end-of-turn token; ``dialogue`` = prompt + response is what a
    reward model scores and fine-tuning trains on.
    """

    name: TemplateName
    reason: str
    stop_token_ids: tuple[int, ...]  # generation ends at any of these (end of turn, EOS)
    stop_strings: tuple[str, ...]  # the same as text, for servers and for text clean-up
    end_of_turn: str  # the text that closes an assistant turn
    add_bos: bool  # the rendered text does not start with BOS: encoding prepends it
    _tokenizer: Any = None
    _response_prefix: str = ""

    def prompt(self, turns: Dialogue) -> str:
        if self.name == PAIRWISE:
            return render_prompt(turns)
        messages = [dict(zip(("role", "content"), _role_content(t), strict=True)) for t in turns]
        return str(
            self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        )

    def response(self, text: str) -> str:
        if self.name == PAIRWISE:
            return f"{text}{END_OF_TURN}"
        return f"{self._response_prefix}{text}{self.end_of_turn}"

    def dialogue(self, turns: Dialogue, response: str) -> str:
        return self.prompt(turns) + self.response(response)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of rendered texts, BOS first where the template does not write it."""
        ids = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        bos = self._tokenizer.bos_token_id
        if self.add_bos and bos is not None:
            return [[bos, *row] for row in ids]
        return [list(row) for row in ids]

    def encode_dialogue(self, turns: Dialogue, response: str) -> tuple[list[int], list[int]]:
        """(prompt ids, response ids): the ids a policy is prompted with and the ids it
        wrote, each tokenised on its own so the split never moves."""
        prompt = self.encode([self.prompt(turns)])[0]
        answer = self._tokenizer(self.response(response), add_special_tokens=False)["input_ids"]
        return prompt, list(answer)

    def clean(self, text: str) -> str:
        """A sampled text cut at the first stop string, without surrounding whitespace."""
        for stop in self.stop_strings:
            if stop:
                text = text.split(stop)[0]
        return text.strip()


def generation_eos_ids(folder: str | Path | None) -> list[int]:
    """The EOS ids in a folder's ``generation_config.json`` (an int or a list), or []."""
    if not folder or not Path(folder).is_dir():
        return []
    eos = _read_json(Path(folder) / "generation_config.json").get("eos_token_id")
    if isinstance(eos, int):
        return [eos]
    return [int(e) for e in eos] if isinstance(eos, list) else []


_SENTINEL = "PAIRWISE_RESPONSE_SENTINEL"


def _model_format(tokenizer: Any, reason: str, folder: str | None) -> ChatFormat:
    probe = [{"role": "user", "content": "hi"}]
    try:
        prompt = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*probe, {"role": "assistant", "content": _SENTINEL}], tokenize=False
        )
    except Exception as exc:  # noqa: BLE001 - a template that cannot render a plain exchange
        raise ChatTemplateError(
            f"the tokenizer's chat template cannot render a dialogue: {exc}"
        ) from exc
    if not full.startswith(prompt) or _SENTINEL not in full[len(prompt) :]:
        raise ChatTemplateError(
            "the tokenizer's chat template renders an answered dialogue that does not start "
            "with its generation prompt, so sampled responses could not be scored as sampled"
        )
    prefix, after = full[len(prompt) :].split(_SENTINEL, 1)
    specials = sorted(
        set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab()), key=len, reverse=True
    )
    # The end of turn: the first special token after the response (Llama 3's <|eot_id|>,
    # ChatML's <|im_end|>, the EOS of templates that end a turn with it).
    hits = [(after.find(s), s) for s in specials if s and s in after]
    end_of_turn = min(hits)[1] if hits else (after.strip() or tokenizer.eos_token or "")
    stop_ids = generation_eos_ids(folder)
    eot_id = tokenizer.convert_tokens_to_ids(end_of_turn) if end_of_turn else None
    if isinstance(eot_id, int) and eot_id != tokenizer.unk_token_id:
        stop_ids = [eot_id, *stop_ids]
    if not stop_ids and tokenizer.eos_token_id is not None:
        stop_ids = [tokenizer.eos_token_id]
    stop_ids = list(dict.fromkeys(stop_ids))
    stop_strings = [end_of_turn] if end_of_turn else []
    stop_strings += [t for t in (tokenizer.convert_ids_to_tokens(i) for i in stop_ids) if t]
    return ChatFormat(
        name=MODEL,
        reason=reason,
        stop_token_ids=tuple(stop_ids),
        stop_strings=tuple(dict.fromkeys(stop_strings)),
        end_of_turn=end_of_turn,
        add_bos=False,  # a template that wants BOS writes it ({{ bos_token }})
        _tokenizer=tokenizer,
        _response_prefix=prefix,
    )


def _pairwise_format(tokenizer: Any, reason: str, folder: str | None) -> ChatFormat:
    eot_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    stop_ids = [eot_id] if isinstance(eot_id, int) and eot_id != tokenizer.unk_token_id else []
    stop_ids += [i for i in generation_eos_ids(folder) if i not in stop_ids]
    if not stop_ids and tokenizer.eos_token_id is not None:
        stop_ids = [tokenizer.eos_token_id]
    return ChatFormat(
        name=PAIRWISE,
        reason=reason,
        stop_token_ids=tuple(stop_ids),
        stop_strings=(END_OF_TURN,),
        end_of_turn=END_OF_TURN,
        add_bos=True,  # Pairwise's base models are pretrained on BOS + dialogue + EOS
        _tokenizer=tokenizer,
    )


def _tokenizer_folder(tokenizer: Any) -> str | None:
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    return name if name and Path(name).is_dir() else None


def chat_for(tokenizer: Any) -> ChatFormat:
    """The ``ChatFormat`` of a loaded tokenizer (cached on it). Stop ids also come from the
    ``generation_config.json`` of the folder it was loaded from, where there is one."""
    cached = getattr(tokenizer, "_pairwise_chat_format", None)
    if isinstance(cached, ChatFormat):
        return cached
    folder = _tokenizer_folder(tokenizer)
    vocab = tokenizer.get_vocab()
    markers = all(
        m in vocab and tokenizer.convert_tokens_to_ids(m) != tokenizer.unk_token_id
        for m in SPECIAL_TOKENS
    )
    template = getattr(tokenizer, "chat_template", None)
    decision = _decide(
        template if isinstance(template, str) else "", markers, folder or "tokenizer"
    )
    build = _model_format if decision.name == MODEL else _pairwise_format
    fmt = build(tokenizer, decision.reason, folder)
    tokenizer._pairwise_chat_format = fmt
    return fmt


def chat_set(tokenizer: Any, fmt: ChatFormat) -> None:
    """Attach ``fmt`` to ``tokenizer`` (a tokenizer copied or saved elsewhere keeps it)."""
    tokenizer._pairwise_chat_format = fmt
