"""COMET through ``unbabel-comet`` (the ``comet`` extra), behind the :class:`Metric` contract.

``model`` is anything comet accepts: a hub name such as ``Unbabel/wmt22-comet-da`` (fetched with
``comet.download_model``, which needs network access or a filled Hugging Face cache), a
``.../checkpoints/model.ckpt`` file, or a model directory holding ``checkpoints/model.ckpt`` and
``hparams.yaml``. Reference-based models (wmt22-comet-da) score ``(src, mt, ref)``; reference-free
ones (CometKiwi, a ``unified_metric`` whose ``input_segments`` lack ``ref``, or a
``referenceless_regression_metric``) score ``(src, mt)``. Which kind a checkpoint is comes from its
``hparams.yaml``, read without loading the weights; ``reference_free=True`` forces the reference-free
path for unified models (e.g. XCOMET used for quality estimation).

Models are loaded once per process per checkpoint (``_MODELS``): loading takes seconds to minutes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import DataError, MissingDependency, PromptweaveError
from .base import Metric, MetricResult

DEFAULT_MODEL = "Unbabel/wmt22-comet-da"
_OPTIONS = frozenset({"model", "batch_size", "gpus", "progress_bar", "reference_free", "local_files_only"})
_LOCK = threading.Lock()
_RESOLVED: dict[str, Path] = {}  # model option -> checkpoint file
_MODELS: dict[Path, Any] = {}  # checkpoint file -> loaded comet model
_QUIET_LOGGERS = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "comet")


def _import_comet() -> Any:
    """Import comet lazily, undoing the ``logging.basicConfig(level=INFO)`` it runs at import."""
    if sys.modules.get("comet") is not None:
        return sys.modules["comet"]
    root = logging.getLogger()
    level, had_handlers = root.level, bool(root.handlers)
    try:
        import comet
    except ImportError as err:
        raise MissingDependency("unbabel-comet", "comet", err) from err
    finally:
        if not had_handlers:  # basicConfig only acts on a root logger without handlers
            for handler in list(root.handlers):
                root.removeHandler(handler)
        root.setLevel(level)
    return comet


def _looks_like_path(model: str) -> bool:
    return model.endswith(".ckpt") or model.startswith(("/", ".", "~")) or "\\" in model


def resolve_checkpoint(model: str, local_files_only: bool = False) -> Path:
    """The ``model.ckpt`` file for a checkpoint path, model directory or hub name."""
    with _LOCK:
        if model in _RESOLVED:
            return _RESOLVED[model]
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "model.ckpt"
    if path.is_file():
        ckpt = path.resolve()
    elif _looks_like_path(model):
        raise DataError(f"COMET checkpoint not found: {path}; give a .../checkpoints/model.ckpt file "
                        "or a directory holding checkpoints/model.ckpt and hparams.yaml")
    else:
        comet = _import_comet()
        try:
            ckpt = Path(comet.download_model(model, local_files_only=local_files_only))
        except Exception as err:  # comet turns every failure into KeyError("not supported")
            raise PromptweaveError(
                f"COMET model '{model}' is not a local checkpoint and could not be downloaded or found "
                f"in the Hugging Face cache ({type(err).__name__}); pass a local checkpoint path as model "
                "(a .../checkpoints/model.ckpt file or its model directory)") from err
    with _LOCK:
        _RESOLVED[model] = ckpt
    return ckpt


def checkpoint_hparams(ckpt: Path) -> dict[str, Any]:
    """The ``hparams.yaml`` next to ``checkpoints/`` (what comet reads to pick the model class)."""
    import yaml

    hparams_file = ckpt.parents[1] / "hparams.yaml"
    if not hparams_file.is_file():
        raise DataError(f"COMET checkpoint {ckpt} has no hparams.yaml in {hparams_file.parent}")
    data = yaml.safe_load(hparams_file.read_text(encoding="utf-8")) or {}
    if data.get("class_identifier") == "ranking_metric":
        raise DataError(f"COMET checkpoint {ckpt} is a ranking model; it cannot score segments")
    return dict(data)


def uses_segment(hparams: dict[str, Any], segment: str) -> bool:
    """Whether a checkpoint reads ``src`` or ``ref``, from its class and ``input_segments``."""
    if hparams.get("class_identifier") == "referenceless_regression_metric":
        return segment != "ref"
    segments = hparams.get("input_segments")
    return segment in segments if segments else True


def requires_reference(hparams: dict[str, Any]) -> bool:
    """Whether a checkpoint cannot score without references (comet's ``requires_references``)."""
    if hparams.get("class_identifier") in ("regression_metric", "ranking_metric"):
        return True
    return list(hparams.get("input_segments") or []) == ["mt", "ref"]


def load_model(ckpt: Path | str, local_files_only: bool = False) -> Any:
    """Load a comet model once per process; later calls return the same object."""
    ckpt = Path(ckpt).resolve()
    with _LOCK:
        if ckpt not in _MODELS:
            comet = _import_comet()
            with _quiet():
                _MODELS[ckpt] = comet.load_from_checkpoint(str(ckpt), local_files_only=local_files_only)
        return _MODELS[ckpt]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's and comet's INFO chatter ("GPU available", tips) for one call."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def default_gpus() -> int:
    """1 when CUDA is available, else 0 (CPU)."""
    import torch

    return 1 if torch.cuda.is_available() else 0


def score_pairs(model: Any, sources: Sequence[str], hypotheses: Sequence[str],
                references: Sequence[str] | None = None, *, batch_size: int = 16,
                gpus: int | None = None, progress_bar: bool = False) -> list[float]:
    """Segment scores of ``hypotheses`` for one COMET model, one float per hypothesis.

    ``model`` is a checkpoint path, model directory, hub name or an already loaded comet model.
    References are used when given and the model reads them (they are ignored by CometKiwi-style
    models); a reference-based model without references raises :class:`DataError`.
    """
    n = len(hypotheses)
    for what, items in (("sources", sources), ("references", references)):
        if items is not None and len(items) != n:
            raise DataError(f"COMET: {n} hypotheses but {len(items)} {what}; give one per hypothesis")
    if n == 0:
        return []
    comet_model = load_model(resolve_checkpoint(str(model))) if isinstance(model, (str, Path)) else model
    hparams = dict(comet_model.hparams)
    with_ref = references is not None and uses_segment(hparams, "ref")
    if references is None and comet_model.requires_references():
        raise DataError("COMET: this model is reference-based; pass one reference per hypothesis")
    samples = [{"src": s, "mt": h} for s, h in zip(sources, hypotheses)]
    if with_ref:
        for sample, ref in zip(samples, references or []):
            sample["ref"] = ref
    with _quiet():
        out = comet_model.predict(samples, batch_size=batch_size,
                                  gpus=default_gpus() if gpus is None else gpus,
                                  progress_bar=progress_bar)
    return [float(s) for s in out.scores]


class COMETMetric(Metric):
    """COMET segment and system scores (the system score is the mean of segment scores).

    Options: ``model`` (default ``Unbabel/wmt22-comet-da``), ``batch_size`` (16), ``gpus`` (1 when
    CUDA is available, else 0), ``progress_bar`` (False), ``reference_free`` (None: decided by the
    checkpoint), ``local_files_only`` (False: let comet try the hub for names).
    """

    name = "comet"
    needs_source = True
    requires = (("comet", "unbabel-comet", "comet"),)

    def __init__(self, src_lang: str | None = None, tgt_lang: str | None = None, **options: Any) -> None:
        super().__init__(src_lang=src_lang, tgt_lang=tgt_lang, **options)
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise PromptweaveError(f"comet: unknown option(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(_OPTIONS))}")
        self.model = str(options.get("model", DEFAULT_MODEL))
        self.batch_size = int(options.get("batch_size", 16))
        self.gpus: int | None = None if options.get("gpus") is None else int(options["gpus"])
        self.progress_bar = bool(options.get("progress_bar", False))
        self.reference_free: bool | None = options.get("reference_free")
        self.local_files_only = bool(options.get("local_files_only", False))

    @property
    def checkpoint(self) -> Path:
        return resolve_checkpoint(self.model, self.local_files_only)

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        """True when the checkpoint cannot score without references; reads hparams.yaml only.

        Models that read references but do not need them (XCOMET) use them when given.
        """
        if self.reference_free:
            return False
        return requires_reference(checkpoint_hparams(self.checkpoint))

    @property
    def signature(self) -> str:
        try:
            from importlib.metadata import version

            comet_version = version("unbabel-comet")
        except Exception:  # the extra is not installed
            comet_version = "none"
        return f"comet|model:{self.model}|version:{comet_version}|batch:{self.batch_size}"

    def score(self, hypotheses: list[str], references: list[str] | None = None,
              sources: list[str] | None = None) -> MetricResult:
        if not hypotheses:
            raise DataError("comet: nothing to score (no hypotheses)")
        hparams = checkpoint_hparams(self.checkpoint)
        if sources is None:
            if uses_segment(hparams, "src"):
                raise DataError("comet: COMET needs the source segments; pass one source per hypothesis")
            sources = [""] * len(hypotheses)
        if requires_reference(hparams) and (self.reference_free or references is None):
            raise DataError(f"comet: {self.model} is reference-based; pass references "
                            "or use a reference-free model such as Unbabel/wmt22-cometkiwi-da")
        use_refs = references is not None and not self.reference_free and uses_segment(hparams, "ref")
        model = load_model(self.checkpoint, self.local_files_only)
        segments = score_pairs(model, sources, hypotheses, references if use_refs else None,
                               batch_size=self.batch_size, gpus=self.gpus, progress_bar=self.progress_bar)
        corpus = sum(segments) / len(segments)
        extra = {"checkpoint": str(self.checkpoint), "model_class": type(model).__name__,
                 "reference_free": not use_refs}
        return MetricResult(name=self.name, corpus=corpus, segments=list(segments),
                            signature=self.signature, higher_is_better=True, extra=extra)
