"""The run summary (``<run_dir>/summary.json``): one typed, versioned record.

The runner writes it; the console table, wandb tracking and the sweep report read it through
these types, never by string paths into a nested dict. Every stage contributes one section and
a section is absent (None) when its stage did not run. ``VERSION`` changes when a field does;
a summary of another version is refused with a message saying so, not misread.

Keys with ``@`` (``pass@1``) keep their JSON names through aliases; maj@k is ``maj`` by k.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wcse.stats import wilson_interval

VERSION = 3


class Record(BaseModel):
    """A summary part: extra keys are errors, and ``@`` names are aliases."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Rate(Record):
    """A proportion with its 95% Wilson interval and denominator (``value`` None when n = 0)."""

    value: float | None
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, successes: int, total: int) -> Rate:
        low, high = wilson_interval(successes, total)
        return cls(value=successes / total if total else None, low=low, high=high, n=total)


class SplitInfo(Record):
    n: int
    source: str  # where the split came from, in words (file, hub id, exclusions, seeded subset)


class Overlap(Record):
    checked: int
    flagged: int  # share a word n-gram with a validation or test problem (or equal a short one)
    flagged_transfer: int | None = None  # with the transfer set's test problems: counted, never dropped
    by_embedding: int | None = None  # of ``flagged``, those only embedding similarity saw (None: decontaminate.embedding off)
    by_embedding_transfer: int | None = None  # of ``flagged_transfer``, likewise


class SimilarityCheck(Record):
    """The encoder and threshold of decontamination's embedding-similarity check."""

    model: str
    threshold: float


class Decontamination(Record):
    """What of the train split and the prompt's exemplars overlaps an evaluation split."""

    ngram: int
    min_coverage: float = 0.0
    embedding: SimilarityCheck | None = None  # None: n-gram only
    evaluation_items: dict[str, int]  # "dataset": its validation and test problems; "transfer": the transfer set's test
    train: Overlap
    exemplars: Overlap
    drop: bool
    dropped: int  # train problems dropped, those overlapping the dataset's own splits (the splits' n is after dropping)
    dir: str  # <cache>/dataset/<key>/: report.json, train.jsonl, exemplars.jsonl (each flagged item and its match)


class DatasetSection(Record):
    name: str
    id: str  # name@content key: what cache keys and sample records call it
    splits: dict[str, SplitInfo]
    transfer: DatasetSection | None = None  # an evaluation-only transfer set (its test split)
    decontamination: Decontamination | None = None  # None: decontaminate.enabled=false


class Budget(Record):
    se_samples: int
    wc_samples: int
    mode: str
    nominal_ratio: float
    realised_ratio: float


class SamplingCost(Record):
    samples_per_problem: int
    problems: int | None = None  # train problems sampled (budget.problems, budget.wc_spend=questions)
    allocation: str | None = None  # an adaptive policy (budget.allocation), which spends samples_per_problem x problems
    store: str
    samples: int
    prompt_tokens: int
    generated_tokens: int
    flops: float | None  # None: the model's size is unknown (API models)
    dollars: float | None  # None: no price table
    truncation_rate: float  # the share of samples cut by max_new_tokens


class SamplingSection(Record):
    budget: Budget
    models: dict[str, SamplingCost]  # by sampler role
    realised_flops_ratio_wc_over_se: float | None
    realised_dollar_ratio_wc_over_se: float | None


class JudgeAgreement(Record):
    kept_wrong: int
    dropped_right: int


class FilterCounts(Record):
    verified: int
    correct: int
    truncated: int  # cut by max_new_tokens (finish_reason "length"): never kept unless kept_truncated
    kept_truncated: bool
    kept_for_training: int
    kept_false_positives: Rate | None = None  # right answer, wrong reasoning, among the kept samples whose reasoning was checked
    decontaminated: int | None = None  # kept samples overlapping validation/test (dropped unless decontaminate.drop=false)
    decontaminated_transfer: int | None = None  # kept samples overlapping the transfer set's test: counted, not dropped
    status: dict[str, int]
    judge: JudgeAgreement | None = None  # label-free filtering: how the judge compared with the truth


class FilterSection(Record):
    method: str
    mode: str
    models: dict[str, FilterCounts]


class DataQuality(Record):
    """Coverage@k, diversity@k and FPR of one model's samples (one group of problems)."""

    k: int
    n_problems: int
    n_samples: int
    n_correct: int
    accuracy: float
    coverage: float
    solved: float | None = None  # problems with any correct sample: coverage of an adaptive allocation
    diversity: float  # under the first uniqueness rule
    diversity_by_rule: dict[str, float]
    fpr: Rate


class DataMetrics(DataQuality):
    coverage_curve: dict[str, float]  # coverage@k for k = 1, 2, 4, ..., the budget
    per_level: dict[str, DataQuality]
    per_subject: dict[str, DataQuality]
    per_problem_table: str  # <run_dir>/metrics/<role>.problems.jsonl
    steps_judged_table: str | None = None  # <run_dir>/metrics/<role>.steps_judged.jsonl: the steps judge's verdicts (None: none ran)


class Composition(Record):
    rows: int
    by_source: dict[str, int]


class TrainResult(Record):
    train_loss: float
    steps: int
    n_examples: int
    train_seconds: float
    tokens_per_second: float
    mfu: float | None
    world_size: int
    attn_implementation: str | None = None  # what the trained model was loaded with
    gradient_checkpointing: bool = False
    optimizer: str | None = None  # e.g. AdamW, DeepSpeedCPUAdam
    data: Composition
    dir: str  # the finetune's artifact: metrics.json (loss_history), checkpoints/, model/
    learning_rate: float | None = None
    grid: list[TrainResult] | None = None  # trainer.lr_grid: every rate's finetune (the first is the one above)

    def at(self, rate: float | None) -> TrainResult:
        """The finetune at ``rate`` (this one without a grid or a rate)."""
        return next((run for run in self.grid or [] if run.learning_rate == rate), self)


class EvalResult(Record):
    """A model's scores on one split: pass@1 (greedy, or the mean of several samples), maj@k,
    per level and subject, and the FPR of its correct answers."""

    n: int
    n_problems: int
    pass_at_1: float = Field(alias="pass@1")
    pass_at_1_interval: tuple[float, float] = Field(alias="pass@1_interval")
    maj: dict[str, float] = {}  # maj@k by k
    per_level: dict[str, Rate]
    per_subject: dict[str, Rate]
    fpr: Rate
    status: dict[str, int]
    ifeval: dict[str, float | int | None] | None = None  # IFEval's prompt/instruction-level strict/loose accuracies (pass@1: prompt strict)
    dir: str  # its artifact: samples.jsonl, verdicts.jsonl, result.json


class Scored(EvalResult):
    """Test scores, and the same model's scores on the transfer set when one is configured."""

    transfer: TransferResult | None = None


class TransferResult(EvalResult):
    name: str


class ModelInfo(Record):
    name: str
    params: float | None
    base: Scored | None = None  # the model before finetuning, when it was evaluated (few-shot if the prompt has shots)
    base_zero_shot: EvalResult | None = None  # the same, zero-shot (only when the prompt has shots)


class CheckpointScore(Record):
    step: int
    path: str
    validation_pass_at_1: float | None = Field(default=None, alias="validation_pass@1")
    learning_rate: float | None = None  # the finetune's rate (trainer.lr_grid: the candidates span rates)


class Selection(Record):
    best: CheckpointScore
    checkpoints: list[CheckpointScore]
    reason: str | None = None  # why the final weights were taken (no checkpoints / no validation split)


class ArmResult(Scored):
    paradigm: str | None
    checkpoint_selection: Selection


class FinetuneSection(Record):
    setup: str
    setup_label: str  # the paper's name for the finetuned model: Student-LM, WC-LM, SE-LM
    target: str
    target_model: str
    base_pass_at_1: float = Field(alias="base_pass@1")  # the target before finetuning, as sampled (few-shot)
    base_zero_shot_pass_at_1: float | None = Field(default=None, alias="base_zero_shot_pass@1")  # for reference
    arms: dict[str, ArmResult]
    best_arm: str | None
    wc_minus_se_pass_at_1: float | None = Field(alias="wc_minus_se_pass@1")
    wc_minus_se_transfer_pass_at_1: float | None = Field(default=None, alias="wc_minus_se_transfer_pass@1")


class RunInfo(Record):
    model_pair: str
    dataset: str
    setup: str
    budget: str
    seed: int  # the run's seed (finetuning and evaluation draws): repeats of a cell differ only here
    run_dir: str
    cache_dir: str
    stages: list[str]


class ArtifactEvent(Record):
    stage: str
    label: str
    path: str
    cached: bool
    seconds: float | None = None


class LabelAgreement(Record):
    n: int  # items both the human and the judge labelled
    accuracy: float | None
    kappa: float | None  # Cohen's; None when chance agreement is 1
    human_wrong_judge_right: int
    human_right_judge_wrong: int


class LabelReport(Record):
    """One sampler role's human-labelled FPR check (wcse.label)."""

    rows: int
    labelled: int
    unlabelled: int
    judges: list[str]  # what gave the judge verdicts: "exact" (the step checker), a judge model
    human_fpr: Rate  # wrong reasoning among the labelled correct solutions, with its Wilson interval
    judge_fpr: Rate  # the judge's, on the items both labelled
    agreement: LabelAgreement


class LabelsSection(Record):
    file: str  # the labelled CSV/JSONL it was read from
    roles: dict[str, LabelReport]


class RunSummary(Record):
    version: int = VERSION
    run: RunInfo | None = None
    dataset: DatasetSection | None = None
    pretrain: dict[str, dict[str, Any]] | None = None  # each rung's pretrain.json
    sampling: SamplingSection | None = None
    filter: FilterSection | None = None
    data: dict[str, DataMetrics] | None = None  # by sampler role
    train: dict[str, TrainResult] | None = None  # by arm
    models: dict[str, ModelInfo] | None = None  # by role
    finetune: FinetuneSection | None = None
    labels: LabelsSection | None = None  # added by `python -m wcse.label import --run RUN_DIR` after the run
    timing_seconds: dict[str, float] = {}
    artifacts: list[ArtifactEvent] = []

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(by_alias=True, indent=2))

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        """A summary from disk; another version or a malformed file is an error naming the file."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable summary ({err})") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Any, where: str = "summary") -> RunSummary:
        version = raw.get("version") if isinstance(raw, dict) else None
        if version != VERSION:
            raise ValueError(
                f"{where}: summary version {version or 1}, this wcse reads version {VERSION}; "
                "rerun the job (its cached stages are reused) to rewrite it"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise ValueError(f"{where}: not a wcse run summary:\n{err}") from None


for _model in (DatasetSection, Scored, ModelInfo, ArmResult, FinetuneSection, RunSummary):
    _model.model_rebuild()  # resolve the forward references (TransferResult is defined after Scored)
