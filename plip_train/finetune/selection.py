"""Checkpoint selection on validation, shared by the fine-tunes that have a validation split (text ReID, attribute
recognition): validate every ``eval_every`` epochs and after the last step, pin the checkpoint of the best
validation score (ties: the later one) as the run's selected one, and keep the history in the resume state, so a
resumed run selects exactly as an uninterrupted one (docs/evaluation.md#fine-tuning-protocols).

Selecting on the test split is refused by the configs: the test split is reported once, for the selected
checkpoint (``results.report``).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from ..data import DataError
from ..distributed import broadcast_from_main
from ..trainer import Trainer

_log = logging.getLogger(__name__)


class SelectingTrainer(Trainer):
    """A fine-tune's trainer that validates as it goes. Subclasses name the config section holding ``eval_every``
    and ``select_on`` (:attr:`selection_section`), the metric to maximise (:attr:`selection_metric`, a key of what
    :meth:`validation_metrics` returns) and how results name it (:attr:`selection_label`)."""

    selection_section = "finetune"
    selection_metric = ""
    selection_label = ""

    def __init__(self, cfg, data_dir, run_dir, options=None, env=None,
                 on_validation: Callable[[dict], None] | None = None):
        self.on_validation = on_validation  # called with each validation's entry (the command prints it)
        self.history: list[dict] = []  # validation results so far (resume state)
        super().__init__(cfg, data_dir, run_dir, options, env)
        self.eval_steps = max(1, round(self.selection.eval_every * self.steps_per_epoch))

    @property
    def selection(self):
        """The config section with ``eval_every`` and ``select_on``."""
        return getattr(self.cfg, self.selection_section)

    def check_splits(self, no_val_example: str, test_hint: str) -> None:
        """DataError unless the data has the validation split asked for (the fix for data without one:
        ``--select-on last``; e.g. ``no_val_example``) and a test split to report (``test_hint``: where to get one)."""
        splits = dict(self.dataset.manifest.splits)
        select_on, have = self.selection.select_on, ", ".join(sorted(splits))
        if select_on is not None and select_on == self.cfg.data.split:
            raise DataError(f"--select-on {select_on} is the split the fine-tune trains on, which measures how well "
                            "it remembers, not how it generalises; choose on a validation split (--select-on val) or "
                            "keep the last checkpoint (--select-on last)")
        if select_on is not None and select_on not in splits:
            raise DataError(f"{self.dataset.directory} has no {select_on!r} split to select the checkpoint on "
                            f"(splits: {have}); keep the schedule's last checkpoint instead (--select-on last; "
                            f"{no_val_example}), or import a validation split")
        if "test" not in splits:
            raise DataError(f"{self.dataset.directory} has no 'test' split to report (splits: {have}); {test_hint}")

    def validation_metrics(self, split: str) -> dict:
        """Hook: the live model's metrics on ``split`` (numbers; the selection metric among them)."""
        raise NotImplementedError

    # ---- hooks ----------------------------------------------------------------------------------------
    def after_step(self, steps_done: int) -> bool:
        if steps_done % self.eval_steps and steps_done != self.total_steps:
            return False
        if self.selection.select_on is not None:
            entry = self.validate(steps_done) if self.run.is_main else None
            self.validated(broadcast_from_main(self.env, entry))  # the other ranks wait, then learn the result
        return True  # a checkpoint at every validation: the selected one must exist

    def validated(self, entry: dict) -> None:
        """Hook, on every rank after each validation (the main rank's ``entry``): what the result changes in
        training (attribute recognition: the plateau schedule) must change on all ranks alike."""

    def extra_state(self) -> dict:
        return {"validation": self.history}

    def restore_state(self, state: dict) -> None:
        self.history = list(state.get("validation", []))

    # ---- validation -------------------------------------------------------------------------------------
    def validate(self, steps_done: int) -> dict:
        """Validate the live model; the checkpoint of the best score so far (ties: the later) becomes the run's
        selected one. Returns the history entry."""
        split = self.selection.select_on
        t0 = time.perf_counter()
        metrics = self.validation_metrics(split)
        self.train_mode()
        entry = {"step": steps_done, "epoch": round(steps_done / self.steps_per_epoch, 3), "split": split,
                 **metrics, "seconds": round(time.perf_counter() - t0, 2)}
        self.history.append(entry)
        self.run.logger.log_validation(steps_done, split, metrics)
        key = self.selection_metric
        best = max(self.history, key=lambda e: (e[key], e["step"]))
        if best is entry:
            self.run.select(steps_done, split=split, metric=self.selection_label, metrics=metrics)
        entry["best_so_far"] = best is entry
        _log.info("validation at step %d (%s): %s %.2f%s", steps_done, split, self.selection_label, metrics[key],
                  " (best so far: selected)" if best is entry else "")
        if self.on_validation is not None:
            self.on_validation(entry)
        return entry
